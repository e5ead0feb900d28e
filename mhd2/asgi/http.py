"""One HTTP request served by an ASGI app: the ``receive`` / ``send`` channels.

The app runs as its own task (``app(scope, receive, send)``); the daemon's
task for the request meets it only through mhd2's public actions:

* the request callback **suspends** (``action_suspend``) until the app asks
  for the body or has a response; meanwhile the daemon watches the client
  and notices it going;
* the body is read with ``action_process_upload_inc``: each piece is handed
  to the app's ``receive()``.  While the app keeps up (it has taken the last
  piece), the daemon reads on; a piece that arrives while the one before is
  still untaken is kept and the upload callback **suspends** until the app
  has taken that one -- an app that reads slowly has at most two pieces
  waiting for it, and the rest of the upload stays in the kernel and on the
  client (TCP / HTTP/2 flow control is the backpressure);
* a response whose body comes in one ``http.response.body`` is a buffer
  response; a streamed one (``more_body``, trailers) is a ``from_callback``
  response whose content creator takes one chunk at a time, **suspending**
  until the app sends the next: the app's ``send()`` returns once its chunk
  is taken;
* ``mhd2.request_on_end`` says when the request is over (completed, client
  gone, timeout, daemon stopping): ``receive()`` then answers
  ``http.disconnect``.

Error handling: an app that raises (or returns) before ``http.response.start``
gets ``500``; after it, the connection is closed (an HTTP/2 stream reset).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Coroutine
from typing import Any

from .. import (
    Action,
    DCCAction,
    DCCContext,
    Request,
    RequestEndedCode,
    Response,
    UploadAction,
    action_abort_request,
    action_from_response,
    action_process_upload_inc,
    action_suspend,
    dcc_action_abort,
    dcc_action_continue_zc,
    dcc_action_finish,
    dcc_action_suspend,
    request_resume,
    request_send_early_hints,
    upload_action_abort_request,
    upload_action_continue,
    upload_action_from_response,
    upload_action_suspend,
)
from .cycle import ClientDisconnected, Cycle, Message, Shared
from .responses import file_response, split_headers, text_pairs, whole_response, with_headers

__all__ = ["HTTPCycle"]

logger = logging.getLogger("mhd2.asgi")

_DISCONNECT: dict[str, Any] = {"type": "http.disconnect"}
_INTERNAL_ERROR = b"Internal Server Error\n"


class HTTPCycle(Cycle):
    """The meeting point of the daemon's task and the app's task for one request.

    Args:
        request: the request.
        scope: its ASGI scope.
    """

    __slots__ = (
        "_chunks",
        "_declared",
        "_final_given",
        "_first",
        "_given",
        "_listening",
        "_reading",
        "_slow",
        "_start",
        "_taken",
        "_trailers",
        "_want_body",
        "body_done",
        "body_piece",
        "failed",
        "finished",
        "next_piece",
        "response",
        "stepping",
    )

    def __init__(self, request: Request, scope: dict[str, Any], shared: Shared) -> None:
        # Cycle.__init__ (and Changes.__init__) written out: one per request.
        self._waiters = None
        self.request = request
        self.scope = scope
        self.shared = shared
        self.app_done = False
        self.end_code = None
        #: A piece of the body the daemon has read and the app not taken yet.
        self.body_piece: bytes | None = None
        #: A piece read while ``body_piece`` was not taken yet (the daemon has
        #: suspended the upload until the app takes ``body_piece``).
        self.next_piece: bytes | None = None
        #: Body bytes handed to the app.
        self._given = 0
        #: The daemon has read the whole body.
        self.body_done = request.upload_size == 0
        self._final_given = False
        self._want_body = False
        self._reading = False
        #: The request callback has not waited for the app yet.
        self._first = True
        #: The app waits in receive() for nothing but the end of the request.
        self._listening = False
        #: The app has not made its first step within PARK_AFTER seconds.
        self._slow = False
        #: ``http.response.start`` (status, headers, trailers) until the response is made.
        self._start: Message | None = None
        #: The response handed to the daemon (``None`` until it is ready).
        self.response: Response | None = None
        self._declared: int | None = None
        #: Body chunks the app sent and the daemon has not taken (made when streaming).
        self._chunks: deque[bytes] | None = None
        self._taken = 0
        self._trailers: list[tuple[str, str]] | None = None
        #: The app has sent the last body message (and trailers, if announced).
        self.finished = False
        #: The app failed after ``http.response.start``: abort.
        self.failed = False
        #: The app's first step runs in the request callback (nothing of the
        #: daemon's side is suspended: no resume is needed); the bridge clears
        #: it once that step is over.
        self.stepping = True
        # The creator calls watch_end() once the app's first step is over
        # (an app done by then needs no word of the end).


    def watch_end(self) -> None:
        """Be told when the request ends; call after the app's first step, if it goes on.

        An app whose call ended within its first step (the common case: it
        answered at once) has nothing left to tell of the end, so the hook
        is not even set then.
        """
        self._watch_end()

    # -- waking the other side -------------------------------------------------------

    def _ended(self, code: RequestEndedCode) -> None:
        super()._ended(code)
        self.notify()

    def too_slow(self) -> None:
        """The request callback has waited long enough: suspend the request."""
        self._slow = True
        self.notify()

    def _resume(self) -> None:
        """Wake the daemon's side: suspended (resume it) or waiting in a callback."""
        self.notify()
        if self.end_code is None and not self.stepping:
            request_resume(self.request)

    # -- the daemon's side ------------------------------------------------------------

    def next_action(self) -> Action:
        """The action for the request callback (called again after each resume)."""
        request = self.request
        if self.response is not None:
            return action_from_response(request, self.response)
        if self.failed:
            return action_abort_request(request)
        if self._want_body and not self._reading:
            self._reading = True
            return action_process_upload_inc(request, self._on_upload)
        if self.shared.stopping:
            return self._awaited_action()  # type: ignore[return-value]
        if self._first and not self._listening:
            self._first = False
            return self._awaited_action(True)  # type: ignore[return-value]
        return action_suspend(request)

    async def _awaited_action(self, first: bool = False) -> Action:
        """Wait for the app's next step in the callback (suspend if it is slow to come).

        Waiting here, not suspended, costs no watch of the connection (the
        common case: the app answers at once) and a graceful stop leaves the
        request alone.  An app that only waits for ``http.disconnect``, or
        makes no step within about :data:`PARK_AFTER` seconds, gets the
        request suspended instead: then the client leaving is noticed, and
        the connection's inactivity timeout does not apply.
        """
        shared = self.shared
        if first:
            shared.fresh.add(self)
        try:
            while (self.response is None and not self.failed and self.end_code is None
                   and not (self._want_body and not self._reading)
                   and (shared.stopping or not (self._listening or self._slow))):
                await self.wait()
        finally:
            if first:
                shared.fresh.discard(self)
                shared.stale.discard(self)
        return self.next_action()

    def _on_upload(self, request: Request, data: bytes) -> UploadAction:
        if self.response is not None:
            return upload_action_from_response(request, self.response)
        if self.failed:
            return upload_action_abort_request(request)
        if self.shared.stopping or self.next_piece is not None:
            return self._awaited_upload(request, data)  # type: ignore[return-value]
        if not data:
            self.body_done = True
            self.notify()
            return upload_action_suspend(request)  # until the app has a response
        self.notify()
        if self.body_piece is None:
            # The app has taken everything: read on while it takes this piece.
            self.body_piece = data
            return upload_action_continue(request)
        # The app is behind: keep this piece and read nothing more until it
        # has taken the one before (receive() resumes the request).
        self.next_piece = data
        return upload_action_suspend(request)

    async def _awaited_upload(self, request: Request, data: bytes) -> UploadAction:
        """As :meth:`_on_upload`, waiting instead of suspending (graceful stop)."""
        while ((self.body_piece is not None or self.next_piece is not None)
               and self.response is None and not self.failed):
            await self.wait()  # the pieces before this one are not taken yet
        if data and self.response is None:
            self.body_piece = data
        elif not data:
            self.body_done = True
        self.notify()
        while self.response is None and not self.failed and (
                self.body_piece is not None if data else True):
            await self.wait()
        if self.response is not None:
            return upload_action_from_response(request, self.response)
        if self.failed:
            return upload_action_abort_request(request)
        return upload_action_continue(request)

    def _creator(self, ctx: DCCContext, pos: int, buf: memoryview) -> DCCAction:
        if self.failed:
            return dcc_action_abort(ctx)
        chunks = self._chunks
        if chunks:  # (None or empty: nothing to take)
            chunk = chunks.popleft()
            self._taken += 1
            self.notify()
            return dcc_action_continue_zc(ctx, 0, [chunk])
        if self.finished:
            return dcc_action_finish(ctx, self._trailers)
        if self.shared.stopping:
            return self._awaited_chunk(ctx, pos, buf)  # type: ignore[return-value]
        return dcc_action_suspend(ctx)

    async def _awaited_chunk(self, ctx: DCCContext, pos: int, buf: memoryview) -> DCCAction:
        while not (self._chunks or self.finished or self.failed):
            await self.wait()
        return self._creator(ctx, pos, buf)

    # -- the app's side ---------------------------------------------------------------

    async def receive(self) -> Message:
        """ASGI ``receive``: the body in pieces, then ``http.disconnect`` once the request is over."""
        while True:
            if self.end_code is not None:
                return _DISCONNECT
            piece = self.body_piece
            if piece is not None:
                following = self.next_piece
                self.body_piece = following
                self.next_piece = None
                self._given += len(piece)
                size = self.request.upload_size
                last = size is not None and self._given >= size
                if last:
                    self._final_given = True
                if following is not None:
                    self._resume()  # the daemon suspended after reading `following`
                else:
                    self.notify()
                return {"type": "http.request", "body": piece, "more_body": not last}
            if self.body_done and not self._final_given:
                self._final_given = True
                return {"type": "http.request", "body": b"", "more_body": False}
            if not self._final_given:
                if not self._want_body:
                    # The body is read only now that the app asks for it (so
                    # that "Expect: 100-continue" is answered only then).
                    self._want_body = True
                    self._resume()
                    self.notify()
            elif not self._listening:
                # Only the end is left to hear of: the daemon had better watch
                # the connection (a suspended request's is watched).
                self._listening = True
                self.notify()
            await self.wait()

    async def send(self, message: Message) -> None:
        """ASGI ``send`` for ``http.response.*`` messages.

        Raises:
            ClientDisconnected: the client has gone (or the request ended otherwise).
            RuntimeError: a message out of order or of an unknown type.
        """
        kind = message["type"]
        if kind == "http.response.body":
            # (no coroutine of its own unless the chunk has to be waited for)
            waiting = self._send_body(message)
            if waiting is not None:
                await waiting
        elif kind == "http.response.start":
            if self._start is not None or self.response is not None:
                raise RuntimeError("http.response.start sent twice")
            self._start = message
        elif kind == "http.response.trailers":
            self._send_trailers(message)
        elif kind == "http.response.pathsend":
            self._send_path(message)
        elif kind == "http.response.early_hint":
            await self._send_early_hint(message)
        else:
            raise RuntimeError(f"unexpected ASGI message {kind!r} in an http scope")

    async def _send_early_hint(self, message: Message) -> None:
        """``103 Early Hints`` with one ``Link`` line per entry of ``links``.

        Sent only before ``http.response.start`` (after it the hint would
        arrive with the response: dropped); on HTTP/1.0 nothing is sent (the
        extension is not advertised there).
        """
        if self._gone() or self._start is not None or self.response is not None:
            return
        links = [("Link", (link if type(link) is bytes else bytes(link)).decode("latin-1"))
                 for link in message.get("links", ())]
        if links:
            await request_send_early_hints(self.request, links)

    def _gone(self) -> bool:
        code = self.end_code
        if code is None:
            return False
        if code is RequestEndedCode.COMPLETED_OK:
            return True  # e.g. a HEAD reply: the body is not wanted, drop it quietly
        raise ClientDisconnected(f"the request has ended ({code.name})")

    def _send_body(self, message: Message) -> Coroutine[Any, Any, None] | None:
        """Take an ``http.response.body`` message.

        Returns:
            What ``send()`` must await before it returns (a streamed chunk
            being taken), or ``None``.
        """
        if self.end_code is not None and self._gone():  # (no call while the request runs)
            return None
        body = message.get("body", b"")
        more = message.get("more_body", False)
        if self.response is None:
            start = self._start
            if start is None:
                raise RuntimeError("http.response.body before http.response.start")
            status = start["status"]
            headers = start.get("headers", ())
            if not more and not start.get("trailers", False):
                if body or self.request.method != "HEAD":
                    response = whole_response(status, headers, body)
                else:
                    pairs, declared = split_headers(headers)
                    if declared:
                        # HEAD: the app declared the GET body's size and sent none;
                        # the daemon sends the headers of that size and no body.
                        response = Response.from_callback(status, declared, self._creator)
                    else:
                        response = Response.from_buffer(status, b"")
                    response = with_headers(response, pairs)  # (raises for a bad header)
                self.finished = True
                self.response = response
                if not self.stepping:  # (in the first step, nothing waits for it)
                    self._resume()
                return None
            pairs, declared = split_headers(headers)
            self._declared = declared
            self._ready(with_headers(Response.from_callback(status, declared, self._creator),
                                      pairs))
        if self.finished:
            raise RuntimeError("http.response.body after the response was complete")
        if not more and not (self._start or {}).get("trailers", False):
            self.finished = True
        if body:
            chunks = self._chunks
            if chunks is None:
                chunks = self._chunks = deque()
            chunks.append(bytes(body))
            mark = self._taken + len(chunks)
            self._resume()
            return self._until_taken(mark)
        self._resume()
        return None

    async def _until_taken(self, mark: int) -> None:
        """Wait until the daemon has taken *mark* chunks (or the request is over)."""
        while self._taken < mark:
            if self._gone():
                return
            await self.wait()

    def _send_trailers(self, message: Message) -> None:
        if self._gone():
            return
        if not (self._start or {}).get("trailers", False) or self.response is None:
            raise RuntimeError("http.response.trailers needs http.response.start with "
                               "trailers=True and the body sent first")
        trailers = self._trailers if self._trailers is not None else []
        trailers.extend(text_pairs(message.get("headers", ())))
        self._trailers = trailers
        if not message.get("more_trailers", False):
            self.finished = True
            self._resume()

    def _send_path(self, message: Message) -> None:
        if self._gone():
            return
        start = self._start
        if start is None or self.response is not None:
            raise RuntimeError("http.response.pathsend must follow http.response.start "
                               "and replace the body")
        response = file_response(start["status"], start.get("headers", ()), message["path"])
        self.finished = True
        self._ready(response)

    def _ready(self, response: Response) -> None:
        self.response = response
        self._resume()

    def app_returned(self, error: BaseException | None) -> None:
        """The app's call has ended (with *error* if it raised): end the response."""
        self.app_done = True
        if self.end_code is not None:
            return
        if self._start is None and self.response is None:
            if error is None:
                logger.error("mhd2.asgi: the app returned without a response to %s %s",
                             self.request.method, self.request.uri)
            response = Response.from_buffer_static(500, _INTERNAL_ERROR)
            response.add_header("Content-Type", "text/plain; charset=utf-8")
            self._ready(response)
        elif not self.finished:
            if error is None:
                logger.error("mhd2.asgi: the app returned before its response to %s %s "
                             "was complete", self.request.method, self.request.uri)
            self.failed = True
            self._resume()
        self.notify()

    def app_finished(self, error: Exception | None) -> None:
        """The app's call has ended (it raised *error*): log, end the response."""
        if error is None:
            if self.finished:  # (the common end: the response is complete)
                self.app_done = True
                if self._waiters:
                    self.notify()
                return
        elif not isinstance(error, ClientDisconnected):
            logger.error("mhd2.asgi: the app failed on %s %s", self.request.method,
                         self.request.uri, exc_info=error)
        self.app_returned(error)

    def app_ended(self, error: BaseException | None) -> None:
        """The app's call, handed to a runner, has ended: as :meth:`app_finished`, and
        count it out of ``shared.running``."""
        shared = self.shared
        try:
            if error is None or isinstance(error, Exception):
                self.app_finished(error)
        finally:
            shared.running -= 1
            if not shared.running and shared.idle is not None:
                shared.idle.set()
