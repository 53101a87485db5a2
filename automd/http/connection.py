"""HTTP/1.1 framing on one connection: llhttp (httptools) parses, replies are framed by hand.

What to answer is the site's business (sites.py). This module owns what any HTTP server
must get right whatever it serves: the parser's limits, the header and body deadlines, replies
in request order under pipelining, and backpressure both ways (a client that sends faster than
it reads is stopped being read; a reply stream waits for a slow reader).

Deadlines are plain timestamps checked by the site's sweeper (`check_deadline`): no timer is
armed or cancelled per request, which aiohttp did twice per request.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass, field
from email.utils import formatdate
from http import HTTPStatus
from typing import Protocol

import httptools

from automd.peer import PeerCredentials

log = logging.getLogger(__name__)

#: Longest request target, and longest header (name and value): aiohttp's limits, kept.
MAX_LINE_BYTES = 8190
MAX_HEADERS = 128
#: What llhttp may buffer of one request head before it is refused: it holds a header
#: internally until the header completes, so the per-header limit alone bounds nothing.
MAX_HEAD_BYTES = 64 * 1024
#: Complete requests queued behind the one being answered; beyond this reading pauses.
MAX_PIPELINED = 16
#: After a reply that ends a request not read to its end (413, 408, 400...), what the client
#: still sends is read and dropped for this long before the socket closes: closing a socket
#: with unread data resets it, and the client would lose the reply (lingering close).
LINGER_SECONDS = 5.0


class Request:
    """One request, as much as automd reads of it: header names are lowercased, and the lines
    of a field sent more than once are joined with ", "."""

    __slots__ = ("body", "headers", "keep_alive", "method", "path", "refusal")

    def __init__(self, method: str, path: bytes, headers: dict[bytes, bytes], keep_alive: bool):
        self.method = method
        self.path = path
        self.headers = headers
        self.body = b""
        self.keep_alive = keep_alive
        #: The site's answer from the head alone (the body, if any, was skipped).
        self.refusal: Reply | None = None


@dataclass(slots=True)
class Reply:
    """A whole reply. `close`: the connection cannot be reused (e.g. a body left unread)."""

    status: int
    body: bytes = b""
    content_type: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    close: bool = False


@dataclass(slots=True)
class StreamedReply:
    """A 200 whose body is sent as it is produced (chunked), each part once the client has
    taken the previous ones; `parts` is closed when the client goes away."""

    content_type: str
    parts: AsyncGenerator[bytes, None]
    headers: tuple[tuple[str, str], ...] = field(default=())


def plain_reply(status: int, text: str, *, close: bool = False) -> Reply:
    return Reply(status, text.encode(), "text/plain; charset=utf-8", close=close)


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


class _Stop(Exception):
    """Raised in a parser callback to stop parsing: the reply that ends the connection is queued."""


class _Clock:
    """The Date header, formatted once a second."""

    second = -1
    value = b""

    @classmethod
    def date(cls) -> bytes:
        now = int(time.time())
        if now != cls.second:
            cls.value = formatdate(now, usegmt=True).encode("ascii")
            cls.second = now
        return cls.value


_REASONS = {status.value: status.phrase.encode("ascii") for status in HTTPStatus}


def _head(status: int, headers: list[bytes], keep_alive: bool) -> bytes:
    lines = [b"HTTP/1.1 %d %s" % (status, _REASONS.get(status, b"Unknown")),
             b"Date: " + _Clock.date(), *headers]  # fmt: skip
    if not keep_alive:
        lines.append(b"Connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n"


def _extra(headers: tuple[tuple[str, str], ...]) -> list[bytes]:
    return [f"{name}: {value}".encode("latin-1") for name, value in headers]


class HttpConnection(asyncio.Protocol):
    """One client connection: parses its requests, answers them in order, enforces limits."""

    def __init__(self, site: Site) -> None:
        self._site = site
        self._parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        #: Set by the site when the connection is made (SO_PEERCRED is fixed at connect()).
        self.peer: PeerCredentials | None = None
        #: When `_on_deadline` runs: 408 for a body, closing for an idle connection.
        self.deadline: float | None = None
        self._on_deadline: Callable[[], None] = self._close
        # The request being parsed.
        self._in_head = False
        self._in_body = False
        self._head_bytes = 0  # read while a head was incomplete (llhttp buffers a header)
        self._head_size = 0  # the parsed part of the head
        self._url: list[bytes] = []
        self._url_size = 0
        self._headers: dict[bytes, bytes] = {}
        self._body: list[bytes] = []
        self._body_size = 0
        self._request: Request | None = None
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
        if self._in_head:
            # Counted only for data that arrives while a head is incomplete: at most one read
            # (256 KiB) more than the limit is ever buffered.
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD_BYTES:
                self._fail(400, f"request head larger than {MAX_HEAD_BYTES} bytes")
                return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(400, "protocol upgrades are not supported")
        except httptools.HttpParserCallbackError as exc:
            # httptools wraps what a callback raised; _Stop means its reply is queued already.
            if not isinstance(exc.__context__, _Stop):
                log.error("HTTP request handling failed", exc_info=exc.__context__)
                self._fail(500, "internal error")
        except httptools.HttpParserError as exc:
            self._fail(400, f"bad request: {exc}")

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

    # --- httptools callbacks ---------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._in_head = True
        self._head_bytes = 0
        self._head_size = 0
        self._url = []
        self._url_size = 0
        self._headers = {}
        self._body = []
        self._body_size = 0

    def on_url(self, url: bytes) -> None:
        self._url_size += len(url)
        if self._url_size > MAX_LINE_BYTES:
            self._fail(400, f"request target longer than {MAX_LINE_BYTES} bytes")
            raise _Stop
        self._url.append(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        if len(self._headers) >= MAX_HEADERS:
            self._fail(400, f"more than {MAX_HEADERS} headers")
            raise _Stop
        size = len(name) + len(value)
        if size > MAX_LINE_BYTES:
            self._fail(400, f"header longer than {MAX_LINE_BYTES} bytes")
            raise _Stop
        self._head_size += size
        if self._head_size > MAX_HEAD_BYTES:
            self._fail(400, f"request head larger than {MAX_HEAD_BYTES} bytes")
            raise _Stop
        name = name.lower()
        earlier = self._headers.get(name)
        # A field sent twice is one list (RFC 9110, 5.3), not the last line: two
        # Idempotency-Keys or Content-Types must not silently become the second one.
        self._headers[name] = value if earlier is None else earlier + b", " + value

    def on_headers_complete(self) -> None:
        self._in_head = False
        parser = self._parser
        if parser.should_upgrade():  # e.g. WebSocket or h2c: this is HTTP/1.1 only
            self._fail(400, "protocol upgrades are not supported")
            raise _Stop
        target = b"".join(self._url)
        request = Request(
            parser.get_method().decode("ascii"),
            target.partition(b"?")[0],
            self._headers,
            # HTTP/1.0 is answered and closed; keep-alive there needs headers of its own.
            parser.should_keep_alive() and parser.get_http_version() == "1.1",
        )
        self._request = request
        refusal = self._site.refuse(request)
        if refusal is not None:
            if refusal.close:  # the body is not read: the connection cannot be reused
                self._queue_reply(refusal)
                self._stop_reading()
                raise _Stop
            request.refusal = refusal
            return
        self._in_body = True
        self._arm(self._site.read_timeout, self._time_out_body)
        expect = self._headers.get(b"expect")
        if expect is not None and expect.lower() == b"100-continue" and self._responder is None:
            assert self.transport is not None
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        if not self._in_body:  # refused from its head: skipped
            return
        self._body_size += len(body)
        if self._body_size > self._site.max_body_bytes:
            self._queue_reply(self._site.too_large())
            self._stop_reading()
            raise _Stop
        self._body.append(body)

    def on_message_complete(self) -> None:
        request, self._request = self._request, None
        self._in_body = False
        self.deadline = None
        if request is None:
            return
        if request.refusal is None:
            body = self._body
            request.body = body[0] if len(body) == 1 else b"".join(body)
        self._queue_reply(request)

    # --- answering -------------------------------------------------------------------------

    @property
    def busy(self) -> bool:
        """A request is being received or answered (drain lets it finish)."""
        return self._in_body or self._responder is not None or bool(self._queue)

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
        self._in_body = False
        self._request = None
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
        elif not self._in_body:
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
        # A 204 has no body, and must not say it has one of length 0 (RFC 9110, 8.6).
        headers = [] if reply.status == 204 else [b"Content-Length: %d" % len(reply.body)]
        if reply.content_type is not None:
            headers.append(b"Content-Type: " + reply.content_type.encode("latin-1"))
        if reply.headers:
            headers += _extra(reply.headers)
        head = _head(reply.status, headers, keep_alive)
        if request is not None and request.method == "HEAD":
            self.transport.write(head)
        else:
            self.transport.write(head + reply.body)
        if not keep_alive:
            self._end()

    async def _stream(self, reply: StreamedReply, request: Request) -> None:
        assert self.transport is not None
        keep_alive = self._keep_alive(reply, request)
        headers = [b"Content-Type: " + reply.content_type.encode("latin-1"),
                   b"Transfer-Encoding: chunked", *_extra(reply.headers)]  # fmt: skip
        self.transport.write(_head(200, headers, keep_alive))
        self._streaming = True
        parts = reply.parts
        try:
            async for part in parts:
                if self._lost:
                    return
                self.transport.write(b"%x\r\n%s\r\n" % (len(part), part))
                if self._write_paused:
                    await self._wait_writable()
                    if self._lost:
                        return
            self.transport.write(b"0\r\n\r\n")
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
