"""The ``serve`` sub-command: the files of a directory (:class:`mhd2.static.StaticFiles`).

``python -m mhd2 serve [DIR] [--index NAME]... [--no-listing] [--dotfiles allow|deny]
[--cache-control VALUE] [--listing-page-size N]``; the arguments are checked
here, the daemon is run by :mod:`mhd2._cli.running`.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..daemon import Daemon

from .options import _tls_context, daemon_options
from .running import _chain, _execute, _Plan, _with_workers

__all__ = ["serve_arguments", "serve_files"]


def _directory(text: str) -> str:
    return text  # checked after parsing, so that an unknown option is reported first


def serve_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "directory",
        type=_directory,
        nargs="?",
        default=".",
        metavar="DIR",
        help="directory to serve (default: the current directory)",
    )
    parser.add_argument(
        "--index",
        action="append",
        type=_index_name,
        metavar="NAME",
        help="file served for a directory; repeat for several, first match wins "
        "(default: index.html)",
    )
    parser.add_argument(
        "--no-listing",
        dest="listing",
        action="store_false",
        help="no generated listing for a directory without an index file (404 instead)",
    )
    parser.add_argument(
        "--dotfiles",
        choices=("allow", "deny"),
        default="deny",
        help="serve and list names starting with '.' (default: %(default)s: 404, not listed)",
    )
    parser.add_argument(
        "--cache-control",
        type=_cache_control,
        default="no-cache",
        metavar="VALUE",
        help="Cache-Control header for files, e.g. 'public, max-age=3600', '' for none "
        "(default: %(default)s: caches revalidate every time)",
    )
    parser.add_argument(
        "--listing-page-size",
        type=_page_size,
        default=1000,
        metavar="N",
        help="entries on one page of a directory listing; further pages are ?page=2, ... "
        "(default: %(default)s)",
    )


def _index_name(text: str) -> str:
    if not text or "/" in text or text in (".", ".."):
        raise argparse.ArgumentTypeError(f"an index is a plain file name, not {text!r}")
    return text


def _page_size(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or len(text) > 9 or int(text) < 1:
        raise argparse.ArgumentTypeError(f"a page size is a whole number >= 1, not {text!r}")
    return int(text)


def _cache_control(text: str) -> str:
    if text == "":
        return text  # no header
    if not text.strip() or not all(c == "\t" or " " <= c <= "~" for c in text):
        raise argparse.ArgumentTypeError(f"not a printable ASCII header value: {text!r}")
    return text


def _static_options(args: argparse.Namespace) -> dict[str, Any]:
    """The :class:`~mhd2.static.StaticFiles` options given by :func:`serve_arguments`."""
    from ..static import ListingLimits

    return {
        "index": args.index if args.index is not None else "index.html",
        "listing": args.listing,
        "dotfiles": args.dotfiles,
        "cache_control": args.cache_control or None,
        "listing_limits": ListingLimits(page_size=args.listing_page_size),
    }


def serve_files(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    from .. import Daemon
    from ..static import StaticFiles

    if not os.path.isdir(args.directory):
        parser.error(f"argument DIR: not a directory: {args.directory!r}")
    tls = _tls_context(parser, args)
    root = os.path.realpath(args.directory)

    @asynccontextmanager
    async def open_app(options: dict[str, Any]) -> AsyncIterator[Daemon]:
        files = StaticFiles(args.directory, **_static_options(args))
        options = dict(options)
        options["notify_request_ended"] = _chain(files.request_ended,
                                                 options.get("notify_request_ended"))
        async with Daemon(files.handle, **options) as daemon:
            yield daemon

    options = daemon_options(args, tls)
    plan = _Plan(
        open_app, options,
        lambda url, n: f"mhd2: serving {root} on {url}{_with_workers(n)} (Ctrl-C to stop)",
        args.graceful_timeout, args.max_requests, args.max_requests_jitter)
    return _execute(parser, args, plan, "https" if tls else "http")
