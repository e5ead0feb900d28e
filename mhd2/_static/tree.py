"""The static server's view of its directory tree: what is under the root, and visible.

:class:`Tree` turns a request-target into path segments (``..``, NUL and
backslashes refused), decides whether a resolved path may be served (inside
the root; with ``dotfiles="deny"`` no dot-name below it, a symbolic link
included), opens regular files without following a last symbolic link or
hanging on a FIFO, finds the precompressed sidecars of a file, and says what
a directory listing shows of an entry.  No HTTP here: :mod:`mhd2.static`
answers with what it finds.
"""

from __future__ import annotations

import errno
import os
import stat
from typing import Literal
from urllib.parse import unquote_to_bytes

from . import listing
from .encodings import SIDECARS

__all__ = ["EXHAUSTED", "OPEN_FLAGS", "Tree", "segments"]

OPEN_FLAGS = (
    os.O_RDONLY
    | getattr(os, "O_NOFOLLOW", 0)
    | getattr(os, "O_CLOEXEC", 0)
    | getattr(os, "O_NONBLOCK", 0)  # never hang on a FIFO
)
#: errno values that mean "the server is short of resources", not "no such file".
EXHAUSTED = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS})


def segments(target: str) -> tuple[list[str], bool] | None:
    """The decoded, checked path segments of a request-target and whether it
    ends with a slash (``None``: 404)."""
    if target.startswith("/"):
        path = target
    elif target.startswith(("http://", "https://")):  # absolute-form
        slash = target.find("/", target.find("//") + 2)
        path = "/" if slash < 0 else target[slash:]
    else:
        return None
    for stop in "?#":
        cut = path.find(stop)
        if cut >= 0:
            path = path[:cut]
    decoded = os.fsdecode(unquote_to_bytes(path))
    if "\x00" in decoded or "\\" in decoded:
        return None
    parts = []
    for seg in decoded.split("/"):
        if seg in ("", "."):
            continue
        if seg == "..":
            return None
        parts.append(seg)
    return parts, decoded.endswith("/")


class Tree:
    """The files below *root* (resolved) that may be served.

    Args:
        root: the served directory, resolved (``os.path.realpath``).
        dotfiles: ``"deny"``: names starting with ``.`` are not served or listed.
        precompressed: look for ``.br``, ``.zst`` and ``.gz`` sidecar files.
    """

    __slots__ = ("dotfiles", "precompressed", "root")

    def __init__(self, root: str, dotfiles: Literal["allow", "deny"],
                 precompressed: bool) -> None:
        self.root = root
        self.dotfiles = dotfiles
        self.precompressed = precompressed

    def inside(self, real: str) -> bool:
        if real == self.root:
            return True
        try:
            return os.path.commonpath((self.root, real)) == self.root
        except ValueError:
            return False

    def visible(self, real: str) -> bool:
        """*real* (resolved) is inside the root and, with ``dotfiles="deny"``,
        no part of it below the root starts with ``.`` (a symbolic link to
        ``.git`` does not open it)."""
        if not self.inside(real):
            return False
        if self.dotfiles == "allow" or real == self.root:
            return True
        return not any(p.startswith(".") for p in os.path.relpath(real, self.root).split(os.sep))

    def entry(self, e: os.DirEntry[str]) -> listing.Entry | None:
        """What a listing shows for directory entry *e*: an entry for a name
        that would be served, ``None`` for others.

        Raises:
            OSError: the server is out of descriptors or memory.
        """
        if self.dotfiles == "deny" and e.name.startswith("."):
            return None
        try:
            if e.is_symlink():
                target = os.path.realpath(e.path)
                if not self.visible(target):
                    return None  # never show where a link out of the tree goes
                est = os.stat(target)
            else:
                est = e.stat(follow_symlinks=False)
        except OSError as exc:
            if exc.errno in EXHAUSTED:
                raise
            return None
        if stat.S_ISDIR(est.st_mode):
            return listing.Entry(e.name, True, None, int(est.st_mtime))
        if stat.S_ISREG(est.st_mode):
            return listing.Entry(e.name, False, est.st_size, int(est.st_mtime))
        return None

    def sidecars(self, real: str, st: os.stat_result) -> dict[str, str]:
        """``{coding: path}`` of the usable precompressed files next to *real*."""
        found: dict[str, str] = {}
        if not self.precompressed:
            return found
        for coding, suffix in SIDECARS.items():
            path = real + suffix  # *real* is resolved and visible, so is its directory
            try:
                sst = os.lstat(path)  # usually ENOENT: one system call
                if stat.S_ISLNK(sst.st_mode):
                    path = os.path.realpath(path)
                    if not self.visible(path):
                        continue
                    sst = os.stat(path)
            except (OSError, ValueError):
                continue
            # an older sidecar is a stale copy of an earlier version: never send it
            if stat.S_ISREG(sst.st_mode) and sst.st_mtime_ns >= st.st_mtime_ns:
                found[coding] = path
        return found

    def open(self, path: str) -> tuple[int, os.stat_result] | OSError | None:
        """``(fd, stat)`` of the regular file *path*, the error, or ``None`` (not regular)."""
        try:
            fd = os.open(path, OPEN_FLAGS)
        except OSError as exc:
            return exc
        try:
            st = os.fstat(fd)
            if stat.S_ISREG(st.st_mode):
                os.set_blocking(fd, True)
                return fd, st
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)
        return None
