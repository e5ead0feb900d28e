"""The tutorial ports in ``examples/``, run as the user would run them."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
import trio

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
LISTENING = re.compile(r"^(?P<name>\w+): listening on https?://127\.0\.0\.1:(?P<port>\d+)/ ")


class Example:
    def __init__(self, process: trio.Process) -> None:
        assert process.stdout is not None and process.stderr is not None
        self.process = process
        self.stdout = process.stdout
        self.stderr = process.stderr
        self._stdin = process.stdin
        self.buffer = b""
        self.err_buffer = b""
        self.port = 0
        self.first_line = ""

    @property
    def stdin(self) -> trio.abc.SendStream:
        assert self._stdin is not None, "started without a stdin pipe"
        return self._stdin

    async def line(self) -> str:
        while b"\n" not in self.buffer:
            chunk = await self.stdout.receive_some(65536)
            if not chunk:
                raise EOFError(self.buffer.decode(errors="replace"))
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line.decode("utf-8", "backslashreplace")

    async def err_line(self) -> str:
        """The next line on stderr (bound the wait with trio.fail_after)."""
        while b"\n" not in self.err_buffer:
            chunk = await self.stderr.receive_some(65536)
            if not chunk:
                raise EOFError(self.err_buffer.decode(errors="replace"))
            self.err_buffer += chunk
        line, _, self.err_buffer = self.err_buffer.partition(b"\n")
        return line.decode("utf-8", "backslashreplace")

    async def lines_until(self, last: str, timeout: float = 10) -> list[str]:
        """Output lines up to and including the first one equal to *last*
        (ignoring case)."""
        out = []
        with trio.fail_after(timeout):
            while True:
                out.append(await self.line())
                if out[-1].lower() == last.lower():
                    return out

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@asynccontextmanager
async def example(script: str, *args: str, cwd: Path | None = None,
                  stdin: int = subprocess.PIPE) -> AsyncIterator[Example]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    process = await trio.lowlevel.open_process(
        [sys.executable, str(EXAMPLES / script), "--port", "0", *args],
        stdin=stdin,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=cwd,
    )
    ex = Example(process)
    try:
        with trio.fail_after(20):
            first = await ex.line()
        match = LISTENING.match(first)
        assert match is not None, first
        ex.port = int(match["port"])
        ex.first_line = first
        yield ex
    finally:
        if process.returncode is None:
            process.kill()
        with trio.fail_after(10):
            await process.wait()


async def fetch(url: str, headers: Sequence[tuple[str, str]] = ()) -> httpx.Response:
    with trio.fail_after(10):
        async with httpx.AsyncClient() as client:
            return await client.get(url, headers=list(headers))


async def test_hellobrowser() -> None:
    async with example("hellobrowser.py") as ex:
        for path in ("/", "/anything/else?x=1"):
            r = await fetch(ex.url + path)
            assert r.status_code == 200
            assert r.content == b"<html><body>Hello, browser!</body></html>"
        # Enter stops it, like the C program's getchar()
        await ex.stdin.send_all(b"\n")
        with trio.fail_after(15):
            assert await ex.process.wait() == 0


async def test_hellobrowser_stops_on_sigint() -> None:
    async with example("hellobrowser.py") as ex:
        assert (await fetch(ex.url)).status_code == 200
        ex.process.send_signal(signal.SIGINT)
        with trio.fail_after(15):
            assert await ex.process.wait() == 0


async def test_logging_prints_request_and_headers() -> None:
    async with example("logging_example.py") as ex:
        # The C callback returns MHD_NO: the request is aborted, no reply comes.
        with pytest.raises(httpx.TransportError):
            await fetch(ex.url + "/some/path?q=1", [("X-First", "1"), ("X-Custom", "Value 1")])
        lines = await ex.lines_until("X-Custom: Value 1")
        assert "New GET request for /some/path using version HTTP/1.1" in lines
        start = lines.index("New GET request for /some/path using version HTTP/1.1")
        header_lines = [line.lower() for line in lines[start + 1 :]]
        assert f"host: 127.0.0.1:{ex.port}" in header_lines
        assert "user-agent: python-httpx/" + httpx.__version__ in header_lines
        assert header_lines[-2:] == ["x-first: 1", "x-custom: value 1"]  # arrival order
        await ex.stdin.send_all(b"\n")
        with trio.fail_after(15):
            assert await ex.process.wait() == 0


async def test_logging_raw_request_gets_no_answer() -> None:
    async with example("logging_example.py") as ex:
        with trio.fail_after(10):
            stream = await trio.open_tcp_stream("127.0.0.1", ex.port)
            async with stream:
                await stream.send_all(b"HEAD /x HTTP/1.0\r\nFoo: bar\r\n\r\n")
                answer = b""
                try:
                    while chunk := await stream.receive_some(65536):
                        answer += chunk
                except trio.BrokenResourceError:
                    pass  # a reset is a fine way to say nothing
        assert answer == b""
        lines = await ex.lines_until("Foo: bar")
        assert "New HEAD request for /x using version HTTP/1.0" in lines


async def test_responseheaders_serves_file_with_content_type(tmp_path: Path) -> None:
    picture = tmp_path / "picture.png"
    payload = b"\x89PNG\r\n\x1a\n" + os.urandom(200_000)
    picture.write_bytes(payload)
    # no FILE argument: picture.png in the current directory, as in the C program
    async with example("responseheaders.py", cwd=tmp_path) as ex:
        for _ in range(2):  # each request opens the file again
            r = await fetch(ex.url + "/")
            assert r.status_code == 200
            assert r.headers["content-type"] == "image/png"
            assert r.headers["content-length"] == str(len(payload))
            assert r.content == payload


async def test_responseheaders_missing_file_is_500_and_says_why(tmp_path: Path) -> None:
    missing = tmp_path / "nope.png"
    async with example("responseheaders.py", str(missing)) as ex:
        with trio.fail_after(10):  # at startup: the file to serve is not there
            said = await ex.err_line()
        assert said.startswith(f"responseheaders: {missing} not found"), said
        r = await fetch(ex.url + "/")
        assert r.status_code == 500
        assert b"An internal server error has occurred!" in r.content
        with trio.fail_after(10):  # and at each 500: why
            said = await ex.err_line()
        assert said == (f"responseheaders: cannot open {missing}: No such file or directory;"
                        " answering 500")
        # the file appears: the next request is served from it
        (tmp_path / "nope.png").write_bytes(b"now here")
        r = await fetch(ex.url + "/")
        assert (r.status_code, r.content) == (200, b"now here")


async def test_responseheaders_other_file_and_mime(tmp_path: Path) -> None:
    doc = tmp_path / "notes.txt"
    doc.write_bytes(b"some notes\n")
    async with example("responseheaders.py", str(doc), "--mime", "text/plain") as ex:
        r = await fetch(ex.url + "/")
        assert (r.status_code, r.content) == (200, b"some notes\n")
        assert r.headers["content-type"] == "text/plain"
        with trio.fail_after(10):
            async with httpx.AsyncClient() as client:
                with pytest.raises(httpx.TransportError):
                    await client.post(ex.url + "/", content=b"x")  # only GET is answered


# -- how an example stops: signals always, stdin only where reading it is harmless


async def test_example_with_devnull_stdin_keeps_serving_until_sigterm() -> None:
    # nohup or a script's `cmd &` gives /dev/null: end of file at once is no "Enter".
    async with example("hellobrowser.py", stdin=subprocess.DEVNULL) as ex:
        for _ in range(3):
            assert (await fetch(ex.url)).status_code == 200
        assert ex.process.returncode is None
        assert ex.first_line.endswith("(Ctrl-C or SIGTERM stops it)")
        ex.process.send_signal(signal.SIGTERM)
        with trio.fail_after(15):
            assert await ex.process.wait() == 0


#: Session leader on a new pseudo-terminal (its stdin), which it makes its
#: controlling terminal; runs the example in the terminal's foreground ("fg")
#: or in a process group of its own, i.e. in the background ("bg"), as a shell
#: does for `cmd` and `cmd &`.  It reports the example's pid on stderr and
#: exits with its status, or with 3 if the example was stopped (SIGTTIN).
PTY_SHELL = r"""
import fcntl, os, signal, subprocess, sys, termios
os.setsid()
fcntl.ioctl(0, termios.TIOCSCTTY, 0)
where, argv = sys.argv[1], sys.argv[2:]
child = subprocess.Popen(argv, process_group=0 if where == "bg" else None)
print(f"pid {child.pid}", file=sys.stderr, flush=True)
while True:
    _, status = os.waitpid(child.pid, os.WUNTRACED)
    if os.WIFSTOPPED(status):
        print(f"stopped by signal {os.WSTOPSIG(status)}", file=sys.stderr, flush=True)
        os.kill(child.pid, signal.SIGKILL)
        os.waitpid(child.pid, 0)
        sys.exit(3)
    sys.exit(os.waitstatus_to_exitcode(status))
"""


@asynccontextmanager
async def example_on_terminal(where: str) -> AsyncIterator[tuple[Example, int, int]]:
    """hellobrowser.py on a pseudo-terminal: (example, its pid, the terminal's master fd)."""
    import pty

    master, slave = pty.openpty()
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    try:
        process = await trio.lowlevel.open_process(
            [sys.executable, "-c", PTY_SHELL, where,
             sys.executable, str(EXAMPLES / "hellobrowser.py"), "--port", "0"],
            stdin=slave, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    finally:
        os.close(slave)
    ex = Example(process)
    pid = 0
    try:
        with trio.fail_after(20):
            pid_line = await ex.err_line()
            first = await ex.line()
        assert pid_line.startswith("pid "), pid_line
        pid = int(pid_line.split()[1])
        match = LISTENING.match(first)
        assert match is not None, first
        ex.port = int(match["port"])
        ex.first_line = first
        yield ex, pid, master
    finally:
        if process.returncode is None:
            if pid:  # the example has a process group of its own: it outlives the wrapper
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            process.kill()
        with trio.fail_after(10):
            await process.wait()
        os.close(master)


async def test_example_in_background_of_terminal_is_not_stopped_by_tty_input() -> None:
    # `python examples/hellobrowser.py &`: reading the terminal would stop it
    # ("Stopped (tty input)"); it must keep serving and end on SIGTERM with 0.
    async with example_on_terminal("bg") as (ex, pid, _master):
        assert "(Ctrl-C or SIGTERM stops it)" in ex.first_line
        for _ in range(5):
            assert (await fetch(ex.url)).status_code == 200
        os.kill(pid, signal.SIGTERM)
        with trio.fail_after(15):
            status = await ex.process.wait()
        assert status == 0, (await ex.err_line()) if status == 3 else status


async def test_example_in_foreground_of_terminal_stops_on_enter() -> None:
    async with example_on_terminal("fg") as (ex, _pid, master):
        assert "(press Enter or Ctrl-C to stop)" in ex.first_line
        assert (await fetch(ex.url)).status_code == 200
        os.write(master, b"\n")  # Enter, typed on the terminal
        with trio.fail_after(15):
            assert await ex.process.wait() == 0



# -- the hello world of the README and the docs


def _python_blocks_rst(text: str) -> list[str]:
    """The ``.. code-block:: python`` blocks of a reST text, dedented."""
    blocks = []
    for match in re.finditer(r"^( *)\.\. code-block:: python\n\n((?:\1   .*\n|\n)+)", text, re.M):
        indent = len(match[1]) + 3
        blocks.append("".join(line[indent:] + "\n" for line in match[2].rstrip().split("\n")))
    return blocks


def hello_world() -> str:
    """The README's hello world, after checking the docs show the very same program."""
    readme = (REPO / "README.md").read_text()
    blocks = re.findall(r"^```python\n(.*?)^```", readme, re.M | re.S)
    hello: str = next(b for b in blocks if "Hello, browser!" in b)
    for doc in ("index.rst", "getting-started.rst"):
        shown = [b for b in _python_blocks_rst((REPO / "docs" / doc).read_text())
                 if "Hello, browser!" in b]
        assert shown == [hello], f"docs/{doc} shows another hello world than README.md"
    return hello


async def test_readme_hello_world_sends_content_type_and_stops_quietly_on_ctrl_c(
        tmp_path: Path) -> None:
    source = hello_world()
    assert "port=8888" in source
    script = tmp_path / "hello.py"
    script.write_text(source.replace("port=8888", "port=0"))  # any free port, for the test
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    process = await trio.lowlevel.open_process(
        [sys.executable, str(script)], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, env=env)
    ex = Example(process)
    try:
        with trio.fail_after(20):
            first = await ex.line()
        match = re.fullmatch(r"http://127\.0\.0\.1:(\d+)/ \(Ctrl-C to stop\)", first)
        assert match is not None, first
        ex.port = int(match[1])
        r = await fetch(ex.url + "/")
        assert r.status_code == 200
        assert r.headers["content-type"] == "text/html; charset=utf-8"
        assert r.content == b"<html><body>Hello, browser!</body></html>"
        process.send_signal(signal.SIGINT)  # Ctrl-C
        with trio.fail_after(15):
            assert await process.wait() == 0
        with trio.fail_after(10):
            rest = await process.stderr.receive_some(65536) if process.stderr else b""
        assert rest == b"", rest.decode(errors="replace")  # no traceback
    finally:
        if process.returncode is None:
            process.kill()
        with trio.fail_after(10):
            await process.wait()


async def _poke(url: str) -> None:
    try:
        await fetch(url)
    except httpx.HTTPError:
        pass  # the server may stop first: that is the point


async def test_ctrl_c_never_surfaces_inside_a_connection_task(tmp_path: Path) -> None:
    """SIGINT arriving while a connection task runs (not the main task) still
    reaches the main task as a plain KeyboardInterrupt: the daemon's tasks are
    protected, so no ExceptionGroup traceback and exit status 0, every time."""
    source = hello_world().replace("port=8888", "port=0")
    script = tmp_path / "hello.py"
    script.write_text(source)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    for _ in range(8):
        process = await trio.lowlevel.open_process(
            [sys.executable, str(script)], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, env=env)
        ex = Example(process)
        try:
            with trio.fail_after(20):
                match = re.search(r":(\d+)/", await ex.line())
            assert match is not None
            ex.port = int(match[1])
            # Keep connection tasks busy while the signal arrives.
            async with trio.open_nursery() as nursery:
                for _ in range(4):
                    nursery.start_soon(_poke, ex.url + "/")
                await trio.sleep(0.005)
                process.send_signal(signal.SIGINT)
            with trio.fail_after(15):
                assert await process.wait() == 0
            with trio.fail_after(10):
                rest = await process.stderr.receive_some(65536) if process.stderr else b""
            assert rest == b"", rest.decode(errors="replace")
        finally:
            if process.returncode is None:
                process.kill()
            with trio.fail_after(10):
                await process.wait()
