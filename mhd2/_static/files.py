"""The parts of :mod:`mhd2.static` that touch files: validators, media types
and the ``multipart/byteranges`` body creator."""

from __future__ import annotations

import bisect
import email.utils
import mimetypes
import os
import time

from ..dcc import DCCAction, DCCContext, dcc_action_continue, dcc_action_finish
from .ranges import Multipart

__all__ = ["MultipartBody", "content_type", "etag_of", "http_date", "last_modified"]

_HAVE_PREADV = hasattr(os, "preadv")

_ENCODED = {
    "gzip": "application/gzip",
    "bzip2": "application/x-bzip2",
    "xz": "application/x-xz",
    "compress": "application/x-compress",
}


def etag_of(st: os.stat_result, coding: str | None = None) -> str:
    suffix = f"-{coding}" if coding else ""
    return f'"{st.st_ino:x}-{st.st_size:x}-{st.st_mtime_ns:x}{suffix}"'


def content_type(path: str) -> str:
    ctype, encoding = mimetypes.guess_type(path, strict=False)
    if encoding is not None:
        # ``x.tar.gz`` is gzip bytes: say so, rather than ask the client to unpack it
        return _ENCODED.get(encoding, "application/octet-stream")
    if ctype is None:
        return "application/octet-stream"
    if ctype.startswith("text/"):
        return ctype + "; charset=utf-8"
    return ctype


def last_modified(mtime: float) -> int:
    """A modification time fit for ``Last-Modified``: whole seconds, not
    before 1970 and not in the future.

    RFC 9110 §8.8.2.1: "An origin server with a clock MUST NOT generate a
    Last-Modified date that is later than the server's time of message
    origination (Date)." (A file can carry any time: ``touch -d 2999-01-01``.)
    """
    return max(0, min(int(mtime), int(time.time())))


def http_date(when: int) -> str:
    """*when* (POSIX seconds, see :func:`last_modified`) as an IMF-fixdate."""
    return email.utils.formatdate(when, usegmt=True)


class MultipartBody:
    """The dynamic content creator of a ``multipart/byteranges`` body.

    Literal segments are copied into ``buf``; file segments are read straight
    into it with ``os.preadv``. It owns *fd* and closes it in :meth:`free`.
    """

    def __init__(self, fd: int, body: Multipart) -> None:
        self.fd = fd
        self.segments = body.segments
        self.starts: list[int] = []
        pos = 0
        for seg in body.segments:
            self.starts.append(pos)
            pos += len(seg) if isinstance(seg, bytes) else seg[1]

    def __call__(self, ctx: DCCContext, pos: int, buf: memoryview) -> DCCAction:
        index = bisect.bisect_right(self.starts, pos) - 1
        if index >= len(self.segments) or len(buf) == 0:
            return dcc_action_finish(ctx)
        seg = self.segments[index]
        skip = pos - self.starts[index]
        if isinstance(seg, bytes):
            n = min(len(seg) - skip, len(buf))
            buf[:n] = seg[skip : skip + n]
        else:
            offset, length = seg
            want = min(length - skip, len(buf))
            if _HAVE_PREADV:
                n = os.preadv(self.fd, [buf[:want]], offset + skip)
            else:
                data = os.pread(self.fd, want, offset + skip)
                n = len(data)
                buf[:n] = data
            if n <= 0:  # the file shrank: end here (the daemon closes the connection)
                return dcc_action_finish(ctx)
        return dcc_action_continue(ctx, n)

    def free(self) -> None:
        os.close(self.fd)
