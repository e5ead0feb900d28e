"""largepost — the tutorial's ``largepost.c`` (appendix C.6, chapter 7), on mhd2.

A GET gets an upload form that tells how many clients are uploading right now;
a multipart POST of the ``file`` field is stored under its file name in the
upload directory. The file streams to disk piece by piece through
:func:`mhd2.action_parse_post`'s stream reader -- it is never held whole in
memory, however large. At most ``--max-clients`` uploads run at once; while
that many are in progress every request gets the busy page
(``503 Service Unavailable``). Pages and status codes follow the C program:

* upload stored: 200 "The upload has been completed."
* a file of that name exists (or is being uploaded): 403 "This file already exists."
* a field other than ``file``, or an unusable file name: 400 "Invalid request."
* the disk write failed: 500 "IO error writing to disk."
* the form could not be parsed: 500 "Error processing POST data"
* another method: 400 "This doesn't seem to be right."

Two deliberate differences from C: file names are reduced to their last path
component and may not start with a dot (the tutorial's own "Remarks" ask for
this), and the file is created with ``O_EXCL``, which closes the race between
the C program's two ``fopen`` calls. An upload that does not complete (the
client went away) leaves no partial file behind.

Writes are plain blocking ``write`` calls on a local disk, which is fast
enough for an example; a server writing to slow storage would hand them to a
thread (``trio.to_thread.run_sync``) from an ``async`` stream reader::

    python examples/largepost.py [UPLOAD_DIR] [--max-clients N] [--host H] [--port P]
    curl -F file=@picture.png http://127.0.0.1:8888/filepost
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from _runner import parse_args, run

import mhd2

POSTBUFFERSIZE = 512
MAXCLIENTS = 2

ASKPAGE = (
    "<html><body>\n"
    "Upload a file, please!<br>\n"
    "There are {} clients uploading at the moment.<br>\n"
    '<form action="/filepost" method="post" enctype="multipart/form-data">\n'
    '<input name="file" type="file">\n'
    '<input type="submit" value=" Send "></form>\n'
    "</body></html>"
)
BUSYPAGE = b"<html><body>This server is busy, please try again later.</body></html>"
COMPLETEPAGE = b"<html><body>The upload has been completed.</body></html>"
ERRORPAGE = b"<html><body>This doesn't seem to be right.</body></html>"
SERVERERRORPAGE = b"<html><body>Invalid request.</body></html>"
FILEEXISTSPAGE = b"<html><body>This file already exists.</body></html>"
FILEIOERROR = b"<html><body>IO error writing to disk.</body></html>"
POSTPROCERROR = (
    b"<html><head><title>Error</title></head><body>Error processing POST data</body></html>"
)


def send_page(request: mhd2.Request, page: bytes, status: int) -> mhd2.Response:
    response = mhd2.Response.from_buffer_static(status, page)
    response.add_header("Content-Type", "text/html")
    return response


@dataclass
class Upload:
    """What C keeps in ``struct connection_info_struct`` for a POST."""

    fd: int | None = None
    path: Path | None = None
    answer: bytes | None = None  # the page to send; None: undecided
    status: int = 0
    complete: bool = False


class LargePost:
    """The daemon's callbacks, sharing the count of uploading clients."""

    def __init__(self, upload_dir: Path, max_clients: int = MAXCLIENTS) -> None:
        self.upload_dir = upload_dir
        self.max_clients = max_clients
        self.uploading = 0  # nr_of_uploading_clients

    # -- the request callback ----------------------------------------------------------

    def answer_to_connection(self, request: mhd2.Request) -> mhd2.Action:
        if self.uploading >= self.max_clients:
            return mhd2.action_from_response(
                request, send_page(request, BUSYPAGE, mhd2.HTTPStatus.SERVICE_UNAVAILABLE)
            )
        if request.method == "GET":
            page = ASKPAGE.format(self.uploading).encode()
            response = mhd2.Response.from_buffer_copy(mhd2.HTTPStatus.OK, page)
            response.add_header("Content-Type", "text/html")
            return mhd2.action_from_response(request, response)
        if request.method == "POST":
            request.app_context = Upload()
            self.uploading += 1
            return mhd2.action_parse_post(
                request,
                POSTBUFFERSIZE,
                0,  # stream every non-empty value: nothing is collected in memory
                mhd2.PostEncoding.OTHER,
                self.iterate_post,
                self.post_done,
            )
        return mhd2.action_from_response(
            request, send_page(request, ERRORPAGE, mhd2.HTTPStatus.BAD_REQUEST)
        )

    # -- the form parser's callbacks ---------------------------------------------------

    def iterate_post(
        self,
        request: mhd2.Request,
        name: str,
        filename: str | None,
        content_type: str | None,
        encoding: str | None,
        data: bytes,
        offset: int,
        final: bool,
    ) -> mhd2.UploadAction:
        """The stream reader: each piece of a field, in order."""
        upload: Upload = request.app_context
        if upload.answer is not None:  # the answer is known: skip the rest
            return mhd2.upload_action_continue(request)
        if name != "file":
            upload.answer, upload.status = SERVERERRORPAGE, mhd2.HTTPStatus.BAD_REQUEST
            return mhd2.upload_action_continue(request)
        if upload.fd is None and not self._open(upload, filename):
            return mhd2.upload_action_continue(request)
        assert upload.fd is not None
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(upload.fd, view) :]
            if final:
                os.close(upload.fd)
                upload.fd = None
                upload.complete = True
        except OSError:
            upload.answer, upload.status = FILEIOERROR, mhd2.HTTPStatus.INTERNAL_SERVER_ERROR
        return mhd2.upload_action_continue(request)

    def _open(self, upload: Upload, filename: str | None) -> bool:
        safe = Path(filename or "").name
        if not safe or safe.startswith("."):
            upload.answer, upload.status = SERVERERRORPAGE, mhd2.HTTPStatus.BAD_REQUEST
            return False
        path = self.upload_dir / safe
        try:
            upload.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        except FileExistsError:
            upload.answer, upload.status = FILEEXISTSPAGE, mhd2.HTTPStatus.FORBIDDEN
            return False
        except OSError:
            upload.answer, upload.status = FILEIOERROR, mhd2.HTTPStatus.INTERNAL_SERVER_ERROR
            return False
        upload.path = path
        return True

    def post_done(self, request: mhd2.Request, result: mhd2.PostParseResult) -> mhd2.UploadAction:
        """The body is parsed (or parsing failed): send the page decided on."""
        upload: Upload = request.app_context
        if upload.answer is None:
            if result.is_ok:
                upload.answer, upload.status = COMPLETEPAGE, mhd2.HTTPStatus.OK
            else:
                upload.answer = POSTPROCERROR
                upload.status = mhd2.HTTPStatus.INTERNAL_SERVER_ERROR
        return mhd2.upload_action_from_response(
            request, send_page(request, upload.answer, upload.status)
        )

    # -- request_completed -------------------------------------------------------------

    def request_completed(self, request: mhd2.Request, code: mhd2.RequestEndedCode) -> None:
        upload = request.app_context
        if not isinstance(upload, Upload):
            return
        self.uploading -= 1
        if upload.fd is not None:
            os.close(upload.fd)
            upload.fd = None
        stored = upload.complete and upload.status == mhd2.HTTPStatus.OK
        if upload.path is not None and not (stored and code is mhd2.RequestEndedCode.COMPLETED_OK):
            # an upload that did not complete leaves nothing behind
            upload.path.unlink(missing_ok=True)
        request.app_context = None


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "upload_dir", nargs="?", default="uploads",
        help="where uploaded files are stored (created if missing; default: %(default)s)",
    )
    parser.add_argument(
        "--max-clients", type=int, default=MAXCLIENTS,
        help="concurrent uploads before the busy page (default: %(default)s)",
    )


def main() -> int:
    args = parse_args("Upload files into a directory.", extra=_arguments)
    upload_dir = Path(args.upload_dir)
    upload_dir.mkdir(parents=True, exist_ok=True)
    app = LargePost(upload_dir, args.max_clients)
    return run("largepost", app.answer_to_connection, args,
               notify_request_ended=app.request_completed)


if __name__ == "__main__":
    sys.exit(main())
