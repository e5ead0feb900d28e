"""TLS over a plain socket stream, with no more work per call than TLS needs.

:class:`trio.SSLStream` is correct and general: it works over any stream,
lets several tasks race for its handshake, renegotiation and ``unwrap``, and
pays for that on every call -- conflict detectors, a lock around every
transport write, a lock and a counter around every transport read, and a
retry loop written for all of OpenSSL's calls at once.  Measured on an HTTPS
keep-alive hello world, its Python is a fifth of the server's CPU time.

:class:`TLSSocketStream` is the same protocol work -- OpenSSL does it all,
through :class:`ssl.SSLObject` over two memory BIOs -- with the shuttling
written for the one case mhd2 has: a server side over
:class:`~mhd2.plain_stream.PlainSocketStream`, one receiving task and one
sending task at most (the HTTP/2 reader and writer run at once).  It keeps
the guarantees trio's stream gives:

* every call is a checkpoint, and a cancelled :meth:`~TLSSocketStream.receive_some`
  loses nothing (bytes read from the socket stay in the incoming BIO);
* a cancelled write of TLS records leaves the stream broken, as a write cut
  between records would corrupt it (:exc:`trio.BrokenResourceError` after);
* what OpenSSL writes leaves in the order it was written: one task writes
  to the socket at a time, and a task that finds another writing waits its
  turn before it takes the BIO's bytes;
* TLS 1.3 session tickets, written by OpenSSL when the handshake ends, go
  out with the first response rather than alone (as trio does: a client
  that never reads them would get a reset instead of the response);
* ``close_notify`` is sent on close, without waiting for the client's;
* an end of input without ``close_notify`` ("ragged EOF") is
  :exc:`trio.BrokenResourceError` from the ``SSLEOFError``, a clean one
  ``b""``, and an OpenSSL error is :exc:`trio.BrokenResourceError` from the
  :exc:`ssl.SSLError` (so ``__cause__.reason == "HTTP_REQUEST"`` still names
  a plain HTTP request sent to a TLS port).

Renegotiation does not exist in TLS 1.3 and a server context made by
:func:`mhd2.tls.server_context` refuses it on TLS 1.2.
"""

from __future__ import annotations

import ssl
from typing import Final

import trio

from .plain_stream import PlainSocketStream

__all__ = ["TLSSocketStream"]

#: Bytes asked of the socket per read (several records of up to 16 KiB).
RECV_SIZE: Final = 65536
#: Plaintext returned per :meth:`TLSSocketStream.receive_some` when the caller sets no bound.
DEFAULT_MAX_BYTES: Final = 65536


class TLSSocketStream(trio.abc.Stream):
    """The server side of a TLS connection over a plain socket stream.

    Args:
        plain: the connection's socket stream; owned from now on.
        context: the server's TLS context (ALPN, SNI callback, client
            certificates: whatever it is set up for).

    Attributes:
        transport_stream: the socket stream under the TLS layer.
        ssl_object: the TLS session (ALPN protocol, peer certificate, the
            SNI name mhd2.tls's callback records).

    Resource handling:
        :meth:`aclose` sends ``close_notify`` when the stream is sound and
        closes the socket, once; :meth:`close` closes it at once.

    Error handling:
        A broken connection, an OpenSSL error or a write cut by a
        cancellation raise :exc:`trio.BrokenResourceError` (then and ever
        after); use after close raises :exc:`trio.ClosedResourceError`.
    """

    __slots__ = ("_broken", "_closed", "_delayed", "_handshaking", "_handshook", "_incoming",
                 "_outgoing", "_receiving", "_sending", "_write_turn", "_writing",
                 "ssl_object", "transport_stream")

    def __init__(self, plain: PlainSocketStream, context: ssl.SSLContext) -> None:
        self.transport_stream = plain
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self.ssl_object = context.wrap_bio(self._incoming, self._outgoing, server_side=True)
        self._handshook = False
        self._handshaking = False
        self._broken = False
        self._closed = False
        # TLS 1.3 session tickets held back to go out with the first response.
        self._delayed = b""
        # A task is writing records to the socket; others wait their turn.
        self._writing = False
        self._write_turn = trio.lowlevel.ParkingLot()
        # One receiving and one sending task at a time (as trio's streams).
        self._receiving = False
        self._sending = False

    # -- the handshake ---------------------------------------------------------------

    async def do_handshake(self) -> None:
        """Do the TLS handshake, if not done yet.

        Error handling:
            :exc:`trio.BrokenResourceError` from the :exc:`ssl.SSLError` (or
            from the end of input) when it fails; the stream is then broken.
        """
        self._check()
        if self._handshook:
            await trio.lowlevel.checkpoint()
            return
        if self._handshaking:
            raise trio.BusyResourceError("another task is doing this stream's handshake")
        self._handshaking = True
        obj = self.ssl_object
        try:
            while True:
                try:
                    obj.do_handshake()
                except ssl.SSLWantReadError:
                    await self._write_out()
                    await self._read_in()
                    continue
                except (ssl.SSLError, ssl.CertificateError) as exc:
                    self._broken = True
                    # The alert that says why, when OpenSSL wrote one (best effort).
                    await self._write_out_quietly()
                    raise trio.BrokenResourceError(f"TLS handshake failed: {exc}") from exc
                break
        except BaseException:
            self._broken = True
            raise
        finally:
            self._handshaking = False
        self._handshook = True
        if obj.version() == "TLSv1.3":
            # The client's Finished was the last message read; what OpenSSL
            # wrote since is the session tickets: they wait for the first response.
            self._delayed = self._outgoing.read()
        else:
            await self._write_out()

    # -- receiving -------------------------------------------------------------------

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        """Up to *max_bytes* of plaintext; ``b""`` once the client sent ``close_notify``."""
        if self._receiving:
            raise trio.BusyResourceError("another task is receiving on this stream")
        self._check()
        if max_bytes is None:
            max_bytes = DEFAULT_MAX_BYTES
        elif max_bytes < 1:
            raise ValueError("max_bytes must be >= 1")
        if not self._handshook:
            await self.do_handshake()
        self._receiving = True
        try:
            await trio.lowlevel.checkpoint_if_cancelled()
            obj = self.ssl_object
            waited = False
            if not self._incoming.pending and not obj.pending():
                # Nothing buffered to decrypt: read the socket first rather
                # than have OpenSSL say so with an exception.
                await self._read_in()
                waited = True
            while True:
                try:
                    data = obj.read(max_bytes)
                except ssl.SSLWantReadError:
                    # A record cut by the network, or a post-handshake
                    # message (a KeyUpdate) that may want an answer.
                    if self._outgoing.pending:
                        await self._write_out()
                    await self._read_in()
                    waited = True
                    continue
                except ssl.SSLZeroReturnError:
                    data = b""  # close_notify
                except (ssl.SSLError, ssl.CertificateError) as exc:
                    self._broken = True
                    raise trio.BrokenResourceError(str(exc)) from exc
                break
            if self._outgoing.pending:
                await self._write_out()
                waited = True
            if not waited:
                await trio.lowlevel.cancel_shielded_checkpoint()
            return data
        finally:
            self._receiving = False

    async def _read_in(self) -> None:
        """Move what the socket has into the incoming BIO (its end of input too)."""
        data = await self.transport_stream.receive_some(RECV_SIZE)
        if data:
            self._incoming.write(data)
        else:
            # OpenSSL then reads close_notify (SSLZeroReturnError) or calls it
            # a ragged end (SSLEOFError).
            self._incoming.write_eof()

    # -- sending ---------------------------------------------------------------------

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        """Encrypt *data* and send all of it.

        Error handling:
            Cancelled while its records were being written, the stream is
            broken: the client could not tell where a cut record ends.
        """
        if self._sending:
            raise trio.BusyResourceError("another task is sending on this stream")
        self._check()
        if not self._handshook:
            await self.do_handshake()
        self._sending = True
        try:
            if not data:
                await trio.lowlevel.checkpoint()
                return
            try:
                self.ssl_object.write(data)
            except (ssl.SSLError, ssl.CertificateError) as exc:
                self._broken = True
                raise trio.BrokenResourceError(str(exc)) from exc
            await self._write_out()
        finally:
            self._sending = False

    async def wait_send_all_might_not_block(self) -> None:
        """Wait until the socket can take more."""
        self._check()
        await self.transport_stream.wait_send_all_might_not_block()

    async def _write_out(self) -> None:
        """Write what OpenSSL produced to the socket, in order, one task at a time."""
        while self._writing:
            await self._write_turn.park()
        out = self._outgoing.read()
        if not out:
            return
        if self._delayed:
            out = self._delayed + out
            self._delayed = b""
        self._writing = True
        try:
            await self.transport_stream.send_all(out)
        except BaseException:
            # Records cut in the middle (or a broken socket): nothing more
            # can be sent that the client could read.
            self._broken = True
            raise
        finally:
            self._writing = False
            if self._write_turn:
                self._write_turn.unpark()

    async def _write_out_quietly(self) -> None:
        try:
            await self._write_out()
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass

    # -- closing ---------------------------------------------------------------------

    def _check(self) -> None:
        if self._closed:
            raise trio.ClosedResourceError("the TLS stream was closed")
        if self._broken:
            raise trio.BrokenResourceError("the TLS stream is broken")

    def close(self) -> None:
        """Close the socket now, without ``close_notify``."""
        self._closed = True
        self.transport_stream.close()

    async def aclose(self) -> None:
        """Send ``close_notify`` (not waiting for the client's) and close the socket.

        A broken stream, one whose handshake never ended, or one another
        task is writing to right now is closed without it.
        """
        if self._closed:
            await trio.lowlevel.checkpoint()
            return
        sound = self._handshook and not self._broken and not self._writing
        self._closed = True
        try:
            if sound:
                try:
                    # The first call sends close_notify; OpenSSL would then
                    # wait for the client's, which is not waited for.
                    self.ssl_object.unwrap()
                except ssl.SSLError:
                    pass
                await self._write_out_quietly()
        finally:
            await self.transport_stream.aclose()
