"""HTTP/1.1 on one connection: requests in (request.py), replies out (reply.py), in order.

What to answer is the site's business (sites.py). This module owns what any HTTP server
must get right whatever it serves: the header and body deadlines, replies in request order
under pipelining, backpressure both ways (a client that sends faster than it reads is stopped
being read; a reply stream waits for a slow reader) and lingering close.

Deadlines are plain timestamps checked by the site's sweeper (`check_deadline`): no timer is
armed or cancelled per request, which aiohttp did twice per request.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Protocol

import httptools

from automd.http.reply import (
    LAST_CHUNK,
    Reply,
    StreamedReply,
    chunk_bytes,
    plain_reply,
    reply_bytes,
    stream_head_bytes,
)
from automd.http.request import BadRequest, Request, RequestParser
from automd.peer import PeerCredentials

log = logging.getLogger(__name__)

#: Complete requests queued behind the one being answered; beyond this reading pauses.
MAX_PIPELINED = 16
#: After a reply that ends a request not read to its end (413, 408, 400...), what the client
#: still sends is read and dropped for this long before the socket closes: closing a socket
#: with unread data resets it, and the client would lose the reply (lingering close).
LINGER_SECONDS = 5.0


class Site(Protocol):
    """What the connection asks of the server it belongs to."""

    @property
    def draining(self) -> bool: ...

    @property
    def max_body_bytes(self) -> int: ...

    @property
    def read_timeout(self) -> float: ...

    @property
    def idle_timeout(self) -> float: ...

    def refuse(self, request: Request) -> Reply | None:
        """The reply for a request that must not be served, decided from its head alone."""

    def respond(
        self, request: Request, connection: HttpConnection
    ) -> Awaitable[Reply | StreamedReply]:
        """The reply for a complete request; must not raise."""

    def too_large(self) -> Reply:
        """The reply for a body over max_body_bytes (the connection is closed after it)."""

    def timed_out(self) -> Reply:
        """The reply for a body not received within read_timeout."""

    def connection_made(self, connection: HttpConnection) -> None: ...

    def connection_lost(self, connection: HttpConnection) -> None: ...


class HttpConnection(asyncio.Protocol):
    """One client connection: reads its requests, answers them in order, enforces deadlines."""

    def __init__(self, site: Site) -> None:
        self._site = site
        self._requests = RequestParser(self)
        self.transport: asyncio.Transport | None = None
        #: Set by the site when the connection is made (SO_PEERCRED is fixed at connect()).
        self.peer: PeerCredentials | None = None
        #: When `_on_deadline` runs: 408 for a body, closing for an idle connection.
        self.deadline: float | None = None
        self._on_deadline: Callable[[], None] = self._close
        # Replies owed, in order: requests to answer, or the reply that ends the connection.
        self._queue: deque[Request | Reply] = deque()
        self._responder: asyncio.Task[None] | None = None
        self._streaming = False
        self._reading_paused = False
        self._closing = False  # nothing more is parsed; the last queued reply closes
        self._unread = False  # a request was cut off: the client may still be sending it
        self._lost = False
        self._writable: asyncio.Future[None] | None = None
        self._write_paused = False

    # --- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self._arm(self._site.idle_timeout, self._close)
        self._site.connection_made(self)

    def data_received(self, data: bytes) -> None:
        if self._closing:
            return
        try:
            self._requests.feed(data)
        except BadRequest as exc:
            self._fail(400, str(exc))
        except httptools.HttpParserCallbackError as exc:
            # What one of the methods below (or the site under them) raised.
            log.error("HTTP request handling failed", exc_info=exc.__context__)
            self._fail(500, "internal error")

    def eof_received(self) -> bool | None:
        # The client finished sending; replies still owed are written, then the socket closes.
        self._unread = False
        if self._responder is None:
            self._close()
        else:
            self._closing = True
            if self._streaming:  # a follower's client hung up: nobody reads what would come
                self._responder.cancel()
        return True

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        self._wake_writer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self._closing = True
        self.deadline = None
        self._wake_writer()
        if self._streaming and self._responder is not None:
            self._responder.cancel()  # a follower waiting for output that nobody will read
        self._site.connection_lost(self)

    # --- request.RequestSink ---------------------------------------------------------------

    @property
    def max_body_bytes(self) -> int:
        return self._site.max_body_bytes

    def head_received(self, request: Request) -> bool:
        refusal = self._site.refuse(request)
        if refusal is not None:
            if refusal.close:  # the body is not read: the connection cannot be reused
                self._queue_reply(refusal)
                self._stop_reading()
            else:
                request.refusal = refusal
            return False
        self._arm(self._site.read_timeout, self._time_out_body)
        expect = request.headers.get(b"expect")
        if expect is not None and expect.lower() == b"100-continue" and self._responder is None:
            assert self.transport is not None
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        return True

    def body_too_large(self) -> None:
        self._queue_reply(self._site.too_large())
        self._stop_reading()

    def request_received(self, request: Request) -> None:
        self.deadline = None
        self._queue_reply(request)

    # --- answering -------------------------------------------------------------------------

    @property
    def busy(self) -> bool:
        """A request is being received or answered (drain lets it finish)."""
        return self._requests.reading_body or self._responder is not None or bool(self._queue)

    def check_deadline(self, now: float) -> None:
        if self.deadline is None or now < self.deadline:
            return
        self.deadline = None
        self._on_deadline()

    def _time_out_body(self) -> None:
        self._queue_reply(self._site.timed_out())
        self._stop_reading()

    def close(self) -> None:
        """Close now if idle; else after the reply being made (the site is draining)."""
        if not self.busy:
            self._close()

    def abort(self) -> None:
        if self._responder is not None:
            self._responder.cancel()
        if self.transport is not None:
            self.transport.abort()

    def _arm(self, seconds: float, action: Callable[[], None]) -> None:
        self.deadline = time.monotonic() + seconds
        self._on_deadline = action

    def _fail(self, status: int, text: str) -> None:
        """A request that cannot be parsed: say why, then close (its framing is lost)."""
        self._queue_reply(plain_reply(status, text + "\n", close=True))
        self._stop_reading()

    def _stop_reading(self) -> None:
        """Parse no more: what arrives from now on is dropped, until the connection closes."""
        self._closing = True
        self._unread = True
        self._requests.stop()
        self.deadline = None

    def _queue_reply(self, item: Request | Reply) -> None:
        self._queue.append(item)
        if self._responder is None:
            self._responder = asyncio.get_running_loop().create_task(self._answer_queued())
        elif len(self._queue) > MAX_PIPELINED and not self._reading_paused:
            assert self.transport is not None
            self.transport.pause_reading()
            self._reading_paused = True

    async def _answer_queued(self) -> None:
        try:
            while self._queue and not self._lost:
                item = self._queue.popleft()
                if self._reading_paused and not self._closing and len(self._queue) <= 1:
                    assert self.transport is not None
                    self._reading_paused = False
                    self.transport.resume_reading()
                if isinstance(item, Reply):
                    self._write(item, None)
                elif item.refusal is not None:
                    self._write(item.refusal, item)
                else:
                    reply = await self._site.respond(item, self)
                    if isinstance(reply, Reply):
                        self._write(reply, item)
                    else:
                        await self._stream(reply, item)
                if self._write_paused and not self._lost:
                    await self._wait_writable()
        except asyncio.CancelledError:
            self._close()  # a stream whose client left, or the end of a drain
            raise
        finally:
            self._responder = None
        if self._lost or (self._closing and not self._queue):
            self._end()
        elif not self._requests.reading_body:
            self._arm(self._site.idle_timeout, self._close)

    def _keep_alive(self, reply: Reply | StreamedReply, request: Request | None) -> bool:
        return (
            request is not None
            and request.keep_alive
            and not (isinstance(reply, Reply) and reply.close)
            and not self._site.draining
            and not (self._closing and not self._queue)
        )

    def _write(self, reply: Reply, request: Request | None) -> None:
        if self._lost:
            return
        assert self.transport is not None
        keep_alive = self._keep_alive(reply, request)
        head_only = request is not None and request.method == "HEAD"
        self.transport.write(reply_bytes(reply, keep_alive=keep_alive, head_only=head_only))
        if not keep_alive:
            self._end()

    async def _stream(self, reply: StreamedReply, request: Request) -> None:
        assert self.transport is not None
        keep_alive = self._keep_alive(reply, request)
        self.transport.write(stream_head_bytes(reply, keep_alive=keep_alive))
        self._streaming = True
        parts = reply.parts
        try:
            async for part in parts:
                if self._lost:
                    return
                self.transport.write(chunk_bytes(part))
                if self._write_paused:
                    await self._wait_writable()
                    if self._lost:
                        return
            self.transport.write(LAST_CHUNK)
        finally:
            self._streaming = False
            await parts.aclose()
        if not keep_alive:
            self._end()

    async def _wait_writable(self) -> None:
        self._writable = asyncio.get_running_loop().create_future()
        try:
            await self._writable
        finally:
            self._writable = None

    def _wake_writer(self) -> None:
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)

    def _end(self) -> None:
        """The last reply is written: close, lingering if the client may still be sending."""
        self._closing = True
        self._queue.clear()
        transport = self.transport
        if self._lost or transport is None or transport.is_closing():
            return
        if not self._unread or not transport.can_write_eof():
            self._close()
            return
        transport.write_eof()  # the client reads the reply and end of stream, then hangs up
        if self._reading_paused:
            self._reading_paused = False
            transport.resume_reading()
        self._arm(LINGER_SECONDS, self._close)

    def _close(self) -> None:
        self._closing = True
        self.deadline = None
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()
