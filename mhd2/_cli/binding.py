"""Binding the listening socket for the command line: TCP, ``--uds`` or ``--fd``."""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import socket
import stat
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    pass

from .options import (
    address_of,
    url_for,
)

# ---------------------------------------------------------------------- binding


#: The environment a SIGHUP re-exec hands the listening socket on in (internal).
LISTEN_FD_ENV = "_MHD2_LISTEN_FD"
LISTEN_URL_ENV = "_MHD2_LISTEN_URL"
LISTEN_UNIX_ENV = "_MHD2_LISTEN_UNIX_PATH"


def _inherited() -> _Listener | None:
    """The listening socket a SIGHUP re-exec of this program left, if this is one."""
    fd = os.environ.pop(LISTEN_FD_ENV, None)
    url = os.environ.pop(LISTEN_URL_ENV, "")
    unix_path = os.environ.pop(LISTEN_UNIX_ENV, "") or None
    if fd is None:
        return None
    try:
        sock = socket.socket(fileno=int(fd))
    except (ValueError, OSError):
        return None
    os.set_inheritable(sock.fileno(), False)
    return _Listener(sock, url, unix_path)


class _BindError(Exception):
    pass


@dataclass
class _Listener:
    sock: socket.socket
    url: str
    unix_path: str | None = None

    def close(self) -> None:
        self.sock.close()
        if self.unix_path is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.unix_path)


def _bind(args: argparse.Namespace, scheme: str) -> _Listener:
    """Bind the listening socket the command line asks for.

    Raises:
        _BindError: with the one-line message to print (exit status 1).
    """
    inherited = _inherited()
    if inherited is not None:
        return inherited
    if args.fd is not None:
        try:
            sock = socket.socket(fileno=args.fd)
        except OSError as exc:
            raise _BindError(f"--fd {args.fd} is not an open socket: {exc.strerror}") from None
        if not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
            sock.detach()
            raise _BindError(f"--fd {args.fd} is not a listening socket")
        name = sock.getsockname()
        if sock.family == socket.AF_UNIX:
            url = f"unix:{name}"
        else:
            url = url_for(str(name[0]), int(name[1]))
        return _Listener(sock, _scheme(url, scheme))
    if args.uds is not None:
        return _bind_unix(args.uds, scheme, getattr(args, "backlog", 1024))
    host, port = address_of(args)
    try:
        infos = socket.getaddrinfo(host or None, port, socket.AF_UNSPEC, socket.SOCK_STREAM,
                                   0, socket.AI_PASSIVE)
        family, type_, proto, _, address = infos[0]
        sock = socket.socket(family, type_, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.listen(getattr(args, "backlog", 1024))
        except BaseException:
            sock.close()
            raise
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise _BindError(f"cannot listen on {host} port {port}: {reason}") from None
    return _Listener(sock, _scheme(url_for(host, int(sock.getsockname()[1])), scheme))


def _bind_unix(path: str, scheme: str, backlog: int = 1024) -> _Listener:
    path = os.path.abspath(path)
    try:
        mode = os.lstat(path).st_mode
        if not stat.S_ISSOCK(mode):
            raise _BindError(f"cannot listen on {path}: it exists and is not a socket "
                             "(remove it or choose another path)")
        if stat.S_ISSOCK(mode):
            probe = socket.socket(socket.AF_UNIX)
            try:
                probe.connect(path)
            except OSError as exc:  # nobody listens: a stale file from an earlier run
                if exc.errno not in (errno.ECONNREFUSED, errno.ENOENT):
                    raise
                os.unlink(path)
            else:
                raise _BindError(f"cannot listen on {path}: another process listens there")
            finally:
                probe.close()
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise _BindError(f"cannot listen on {path}: {exc.strerror or exc}") from None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        os.chmod(path, 0o660)
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        raise _BindError(f"cannot listen on {path}: {exc.strerror or exc}") from None
    return _Listener(sock, f"unix:{path}", unix_path=path)


def _scheme(url: str, scheme: str) -> str:
    if scheme == "https" and url.startswith("http://"):
        return "https://" + url[len("http://"):]
    return url


