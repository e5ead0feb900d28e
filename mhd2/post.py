"""The POST form parser action (``MHD_action_parse_post``).

:func:`action_parse_post` reads the body through the public
:func:`~mhd2.action_process_upload_inc` and runs one of the sans-IO parsers of
:mod:`mhd2._post` over it:

* a field whose value stays within *max_nonstream_size* bytes is collected
  (its bytes counted against the daemon's shared ``large_pool_size``) and
  appended to the request's POST values, readable with
  ``request.get_values(ValueKind.POSTDATA)`` /
  ``request.get_value(ValueKind.POSTDATA, name)``;
* a longer one streams to ``stream_reader`` in pieces — never held whole;
* at the end, ``done_cb(request, result)`` answers.

As in MHD2 the choice is by size alone (a small file field is collected like
any other field), and a field is only streamed once it has outgrown
*max_nonstream_size*: what was collected so far is then handed over as the
first piece, at ``offset`` 0.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import trio

from ._post import (
    FieldData,
    FieldEnd,
    FieldStart,
    FormParser,
    MultipartParser,
    TextPlainParser,
    UrlencodedParser,
    detect_encoding,
)
from ._post.events import DEFAULT_MAX_FIELDS, Event
from .actions import (
    Action,
    UploadAction,
    action_process_upload_inc,
    upload_action_abort_request,
    upload_action_continue,
)
from .callbacks import warn_returned_none
from .enums import PostEncoding, PostParseResult, ValueKind
from .errors import UsageError
from .exchange import exchange_of
from .post_field import PostField

if TYPE_CHECKING:
    from .pool import LargePool
    from .request import Request

__all__ = ["PostDataFinished", "PostDataReader", "action_parse_post"]

#: ``stream_reader(request, name, filename, content_type, encoding, data, offset, final)``
#: → upload action (or an awaitable of one).
PostDataReader = Callable[..., Any]
#: ``done_cb(request, result)`` → upload action (or an awaitable of one).
PostDataFinished = Callable[..., Any]

#: The usage error when a reader or done callback returns something other than
#: the upload action it made (see :meth:`mhd2.actions.Slot.call_async`).
_MISUSE = "{callback!r} must return an upload action (upload_action_continue, …), not {result!r}"


def action_parse_post(
    request: Request,
    buffer_size: int,
    max_nonstream_size: int,
    encoding: PostEncoding,
    stream_reader: PostDataReader | None,
    done_cb: PostDataFinished,
    *,
    max_fields: int = DEFAULT_MAX_FIELDS,
) -> Action:
    """Parse the body as an HTML form (``MHD_action_parse_post``).

    Args:
        request: the request, as given to the request callback.
        buffer_size: the most bytes the parser buffers for one field's
            metadata (a part's header block, a field name) and the most bytes
            of a value that is collected while it cannot be streamed (no
            *stream_reader*).  Over it: ``FAILED_NO_LARGE_BUF_MEM``.
        max_nonstream_size: values up to this many (decoded) bytes are
            collected into the request's ``POSTDATA`` values; longer ones are
            streamed to *stream_reader* (if there is one).
        encoding: a :class:`~mhd2.PostEncoding`; ``OTHER`` detects it from
            the request's ``Content-Type``.  ``MULTIPART_FORMDATA`` needs that
            header anyway, for its ``boundary``.
        stream_reader: ``stream_reader(request, name, filename, content_type,
            encoding, data, offset, final)`` for long values, or ``None``.
            ``data`` is the next piece (``bytes``), ``offset`` its position in
            the value, ``final`` is ``True`` once, on a last call with
            ``data == b""``.  ``filename``, ``content_type`` and ``encoding``
            (the part's ``Content-Transfer-Encoding``) are ``None`` unless a
            multipart part sent them.  It returns an upload action:
            :func:`~mhd2.upload_action_continue`,
            :func:`~mhd2.upload_action_suspend` (the parser stops until
            :func:`~mhd2.request_resume`), or
            :func:`~mhd2.upload_action_from_response` /
            :func:`~mhd2.upload_action_abort_request`, which end the request
            at once (*done_cb* is then not called).
        done_cb: ``done_cb(request, result)`` with the
            :class:`~mhd2.PostParseResult`, once: when the body has been
            parsed, or at once when parsing fails (the rest of the body is then
            not parsed).  It returns :func:`~mhd2.upload_action_from_response`
            (or :func:`~mhd2.upload_action_abort_request`).
        max_fields: the most fields (parts) of one body; more end parsing with
            ``FAILED_NO_POOL_MEM`` (an mhd2 addition: MHD2's limit is its
            connection memory pool).

    Both callbacks may be plain functions or ``async def``; a blocking one
    blocks the whole daemon.

    Returns:
        The action for the request callback to return.

    Raises:
        UsageError: bad sizes, or a callback that is not callable.
    """
    for label, size in (("buffer_size", buffer_size), ("max_nonstream_size", max_nonstream_size),
                        ("max_fields", max_fields)):
        if isinstance(size, bool) or not isinstance(size, int) or size < (1 if label == "max_fields" else 0):
            raise UsageError(f"action_parse_post: {label} {size!r} must be an int >= 0")
    if not isinstance(encoding, PostEncoding):
        raise UsageError(f"action_parse_post: encoding {encoding!r} must be a PostEncoding")
    if stream_reader is not None and not callable(stream_reader):
        raise UsageError("action_parse_post: stream_reader must be callable or None")
    if not callable(done_cb):
        raise UsageError("action_parse_post: done_cb must be callable")
    state = _PostState(request, buffer_size, max_nonstream_size, encoding, stream_reader,
                       done_cb, max_fields)
    return action_process_upload_inc(request, state.upload_cb)


def _release(pool: LargePool, held: list[int]) -> None:
    if held[0]:
        pool.release(held[0])
        held[0] = 0


class _PostState:
    """One request's form parsing: the parser, the current field, the pool share."""

    def __init__(
        self,
        request: Request,
        buffer_size: int,
        max_nonstream_size: int,
        encoding: PostEncoding,
        stream_reader: PostDataReader | None,
        done_cb: PostDataFinished,
        max_fields: int,
    ) -> None:
        self._buffer_size = buffer_size
        self._max_nonstream = max_nonstream_size
        self._reader = stream_reader
        self._done_cb = done_cb
        self._parser: FormParser | None = None
        self._result: PostParseResult | None = None
        detected = detect_encoding(request.get_value(ValueKind.HEADER, "Content-Type"), encoding)
        limit = max(buffer_size, 1)
        if isinstance(detected, PostParseResult):
            self._result = detected
        elif detected[0] is PostEncoding.MULTIPART_FORMDATA:
            assert detected[1] is not None
            self._parser = MultipartParser(detected[1], max_header_size=limit, max_fields=max_fields)
        elif detected[0] is PostEncoding.TEXT_PLAIN:
            self._parser = TextPlainParser(max_name_size=limit, max_fields=max_fields)
        else:
            self._parser = UrlencodedParser(max_name_size=limit, max_fields=max_fields)
        self._pending: deque[Event] = deque()
        self._closed = False  # the parser has seen the end of the body
        self._done = False  # done_cb was called, or a reader ended the request
        self._body_bytes = 0
        # the current field
        self._field: FieldStart | None = None
        self._value = bytearray()
        self._streaming = False
        self._offset = 0
        # Bytes reserved from the daemon's large pool for collected values; given
        # back after done_cb, or when the request ends in any other way (the
        # client went away, a callback raised ...).
        exchange = exchange_of(request)
        self._pool: LargePool = exchange.shared.large_pool
        self._held = [0]
        # ``large_pool_fill_time``: once values are collected from the pool,
        # the body must end by this deadline (else FAILED_NO_LARGE_BUF_MEM),
        # so that a trickled form cannot hold its share of the pool for hours.
        self._fill_time = exchange.shared.options.large_pool_fill_time
        self._hold_deadline = math.inf
        exchange.add_end_hook(lambda: _release(self._pool, self._held))

    # -- the upload callback ---------------------------------------------------------

    async def upload_cb(self, request: Request, data: bytes) -> UploadAction:
        """Feed one piece of the body (``b""``: the end) through the parser."""
        try:
            return await self._upload(request, data)
        except BaseException:
            _release(self._pool, self._held)
            raise

    async def _upload(self, request: Request, data: bytes) -> UploadAction:
        if self._done:
            # done_cb already answered (early, on an error) without ending the
            # request: ignore the rest of the body.
            if data:
                return self._continue(request)
            exchange_of(request).upload_slot.take()
            return upload_action_abort_request(request)
        if self._result is not None:
            return await self._finish(request)  # Content-Type refused: nothing to parse
        if data and self._held[0] and trio.current_time() >= self._hold_deadline:
            # Checked as each piece arrives: a client that stops sending meets
            # `timeout` / `min_body_rate` instead.
            self._result = PostParseResult.FAILED_NO_LARGE_BUF_MEM
            return await self._finish(request)
        parser = self._parser
        assert parser is not None
        # Events left over from a suspension come first.
        action = await self._run_events(request)
        if action is not None:
            if data and not self._done:
                self._feed(parser, data)  # its events wait for the resume
            return action
        if data:
            self._feed(parser, data)
        elif not self._closed:
            self._closed = True
            self._pending.extend(parser.close())
        action = await self._run_events(request)
        if action is not None:
            return action
        if parser.result is not None and (self._closed or not parser.result.is_ok):
            result = parser.result
            if self._closed and self._body_bytes == 0:
                result = PostParseResult.REQUEST_EMPTY
            self._result = result
            return await self._finish(request)
        return self._continue(request)

    def _feed(self, parser: FormParser, data: bytes) -> None:
        self._body_bytes += len(data)
        self._pending.extend(parser.feed(data))

    async def _finish(self, request: Request) -> UploadAction:
        assert self._result is not None
        self._done = True
        self._pending.clear()
        self._value = bytearray()
        try:
            action = await self._callback(request, self._done_cb, request, self._result)
        finally:
            _release(self._pool, self._held)
        return self._own(request, action)

    # -- events -----------------------------------------------------------------------

    async def _run_events(self, request: Request) -> UploadAction | None:
        """Handle pending events; return an action that stops the loop (suspend, answer)."""
        pending = self._pending
        while pending:
            event = pending.popleft()
            action: UploadAction | None = None
            if type(event) is FieldData:
                action = await self._data(request, event.data)
            elif type(event) is FieldStart:
                self._field = event
                self._value = bytearray()
                self._streaming = False
                self._offset = 0
            elif type(event) is FieldEnd:
                action = await self._end(request)
            if self._result is not None:
                return await self._finish(request)
            if action is not None and action.kind != "continue":
                if action.kind != "suspend":
                    self._done = True
                    pending.clear()
                    _release(self._pool, self._held)
                return self._own(request, action)
        return None

    async def _data(self, request: Request, data: bytes) -> UploadAction | None:
        if self._streaming:
            return await self._stream(request, data, False)
        if self._reader is not None and len(self._value) + len(data) > self._max_nonstream:
            # The value outgrew max_nonstream_size: what was collected so far
            # becomes the first streamed piece.
            collected = bytes(self._value) + data
            self._unhold(len(self._value))
            self._value = bytearray()
            self._streaming = True
            return await self._stream(request, collected, False)
        if len(self._value) + len(data) > self._buffer_size or not self._pool.try_reserve(len(data)):
            self._result = PostParseResult.FAILED_NO_LARGE_BUF_MEM
            return None
        if not self._held[0] and self._fill_time is not None:
            self._hold_deadline = trio.current_time() + self._fill_time
        self._held[0] += len(data)
        self._value += data
        return None

    async def _end(self, request: Request) -> UploadAction | None:
        if self._streaming:
            action = await self._stream(request, b"", True)
            self._streaming = False
            return action
        field = self._field
        assert field is not None
        exchange_of(request).add_post_field(PostField(
            field.name, self._value.decode("utf-8", "surrogateescape"), field.filename,
            field.content_type, field.transfer_encoding))
        self._value = bytearray()
        # The value now lives in the request's POST values; its share of the
        # pool stays reserved until done_cb has run.
        return None

    async def _stream(self, request: Request, data: bytes, final: bool) -> UploadAction:
        field = self._field
        assert field is not None and self._reader is not None
        offset = self._offset
        self._offset += len(data)
        return await self._callback(
            request, self._reader, request, field.name, field.filename, field.content_type,
            field.transfer_encoding, data, offset, final,
        )

    def _unhold(self, nbytes: int) -> None:
        if nbytes:
            self._pool.release(nbytes)
            self._held[0] -= nbytes

    # -- the one-upload-action-per-call rule ----------------------------------------------

    async def _callback(self, request: Request, cb: Callable[..., Any], *args: Any) -> UploadAction:
        """Call an application callback that answers with an upload action.

        The parser may call the reader many times within one call of its own
        upload callback; each of those calls is a call of the request's upload
        slot of its own (:meth:`~mhd2.actions.Slot.call_async`): it must return
        the upload action it made, and the slot is spent afterwards.

        Raises:
            UsageError: it returned something else.
        """
        slot = exchange_of(request).upload_slot
        action = await slot.call_async(cb, *args, misuse=_MISUSE)
        if action is None:
            warn_returned_none(cb, "post-data callback", "return an upload action (e.g. "
                               "upload_action_continue), or upload_action_abort_request("
                               "request) to abort on purpose")
            slot.take()  # (an action made but not returned is dropped)
            action = upload_action_abort_request(request)
        return action  # type: ignore[no-any-return]

    @staticmethod
    def _continue(request: Request) -> UploadAction:
        exchange_of(request).upload_slot.take()  # (spent by a reader's call, or empty)
        return upload_action_continue(request)

    @staticmethod
    def _own(request: Request, action: UploadAction) -> UploadAction:
        """Make *action* (a reader's or the done callback's) the one this upload
        callback call returns."""
        return exchange_of(request).upload_slot.pass_on(action)
