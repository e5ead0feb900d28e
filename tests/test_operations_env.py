"""``MHD2_*`` environment variables: one per option, listed by --help, the command line wins."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest
import trio
from test_cli import child_env, running, start

from mhd2._cli.environ import environment_arguments, variable_for
from mhd2.cli import SUBCOMMANDS, build_parser

APP = """
import mhd2

def handle(request):
    return mhd2.action_from_response(request, mhd2.Response.from_buffer_copy(200, b"env"))
"""


def subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("no sub-commands")


@pytest.mark.parametrize("command", list(SUBCOMMANDS))
def test_help_lists_a_variable_for_every_option(command: str) -> None:
    result = subprocess.run([sys.executable, "-m", "mhd2", command, "--help"],
                            capture_output=True, text=True, timeout=30, env=child_env())
    text = " ".join(result.stdout.split())
    options = [a for a in subparsers()[command]._actions
               if a.option_strings and a.dest not in ("help", "version")]
    assert len(options) > 30
    for action in options:
        assert f"[env: {variable_for(action)}]" in text, action.option_strings
    assert "MHD2_TLS_KEY_PASSWORD" in text and "MHD2_WORKERS" in text


def test_tokens_from_the_environment() -> None:
    run = subparsers()["run"]
    env = {"MHD2_PORT": "9000", "MHD2_ACCESS_LOG": "no", "MHD2_NO_HTTP2": "1",
           "MHD2_WORKERS": "3", "MHD2_LIMIT_CONCURRENCY": "5", "MHD2_UNRELATED_THING": "x"}
    tokens = environment_arguments(run, ["app:x", "--workers", "2"], env)
    assert sorted(tokens) == sorted(["--port=9000", "--no-access-log", "--no-http2",
                                     "--limit-concurrency=5"])
    args = build_parser().parse_args(["run", *tokens, "app:x", "--workers", "2"])
    assert (args.port, args.workers, args.access_log, args.connection_limit) == (9000, 2,
                                                                                 False, 5)


@pytest.mark.parametrize(("variable", "value"), [("MHD2_WORKERS", "many"),
                                                 ("MHD2_PARSER", "fastest"),
                                                 ("MHD2_NO_HTTP2", "perhaps")])
def test_a_bad_value_exits_2_naming_the_variable(tmp_path: Path, variable: str,
                                                 value: str) -> None:
    result = subprocess.run([sys.executable, "-m", "mhd2", "run", "x:y"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=30,
                            env={**child_env(), variable: value})
    assert result.returncode == 2
    assert f"environment variable {variable}" in result.stderr


async def test_a_real_process_configured_by_the_environment(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "env_app.py").write_text(APP)
    monkeypatch.setenv("MHD2_ACCESS_LOG_FORMAT", "json")
    monkeypatch.setenv("MHD2_PORT", "0")
    async with running(["run", "env_app:handle"], tmp_path) as (_process, stderr, port):
        from test_cli import get

        assert (await get(port, "/from-env")).text == "env"
        line = await stderr.until("/from-env")
    assert json.loads(line)["target"] == "/from-env"

    # the command line wins over the environment
    async with running(["run", "env_app:handle", "--access-log-format", "common"],
                       tmp_path) as (_process, stderr, port):
        from test_cli import get

        await get(port, "/cli")
        line = await stderr.until("/cli")
    assert line.startswith("127.0.0.1 - - [")


async def test_tls_key_password_from_the_environment(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    trustme = pytest.importorskip("trustme")
    serialization = pytest.importorskip("cryptography.hazmat.primitives.serialization")
    (tmp_path / "env_app.py").write_text(APP)
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "cert.pem"))
    key = serialization.load_pem_private_key(cert.private_key_pem.bytes(), None)
    (tmp_path / "key.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"s3cret")))
    monkeypatch.setenv("MHD2_TLS_KEY_PASSWORD", "s3cret")
    process, stderr = await start(["run", "env_app:handle", "-p", "0", "--tls-cert",
                                   str(tmp_path / "cert.pem"), "--tls-key",
                                   str(tmp_path / "key.pem")], cwd=tmp_path)
    try:
        line = await stderr.until("mhd2: running", timeout=30)
        assert "https://" in line
        assert "s3cret" not in repr(process.args)  # not on argv, where ps shows it
    finally:
        process.kill()
        with trio.fail_after(10):
            await process.wait()
