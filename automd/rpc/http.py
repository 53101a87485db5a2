"""HTTP/1.1 on the Unix socket: POST /rpc carries JSON-RPC; socket hygiene lives here.

HTTP statuses describe the transport (413, 408, 415, 405, 503); any reply that holds a
JSON-RPC body, including parse and validation errors, is HTTP 200 (204 when empty).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
import weakref
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler, RequestPayloadError

from automd.api.codes import RPC_PATH, STREAM_CONTENT_TYPE
from automd.config import ServerSettings
from automd.errors import (
    AutomdError,
    HttpMethodNotAllowed,
    InvalidRequest,
    RequestTimeout,
    RequestTooLarge,
    ServerBusy,
    UnsupportedMediaType,
)
from automd.peer import PeerCredentials, read_peer_credentials
from automd.rpc.context import CallContext
from automd.rpc.protocol import Dispatcher, StreamReply, encode, error_reply
from automd.trace import parse_traceparent

log = logging.getLogger(__name__)

_JSON = "application/json"
_REFUSAL_LOG_INTERVAL = 1.0  # seconds between "refusing connections" lines


#: Prometheus metrics, served on the API socket and on the optional TCP listener.
METRICS_PATH = "/metrics"
#: Renders the metrics page: (body, content type).
MetricsPage = Callable[[], Awaitable[tuple[bytes, str]]]


class _BodyTooLarge(Exception):
    pass


async def metrics_response(request: web.BaseRequest, page: MetricsPage) -> web.Response:
    if request.method not in ("GET", "HEAD"):
        return web.Response(status=405, headers={"Allow": "GET, HEAD"}, text="use GET\n")
    body, content_type = await page()
    # content_type carries its own charset parameter; aiohttp wants it whole in the header.
    return web.Response(body=body, headers={"Content-Type": content_type})


class MetricsServer:
    """The optional TCP listener (automd-metrics.socket): GET /metrics and nothing else, so
    the JSON-RPC API never leaves the Unix socket, where callers have kernel credentials."""

    def __init__(self, page: MetricsPage, idle_timeout: float) -> None:
        self._page = page
        self._web = web.Server(self._handle, keepalive_timeout=idle_timeout, access_log=None)
        self._server: asyncio.Server | None = None

    async def start(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._web, sock=sock, backlog=socket.SOMAXCONN)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        await self._web.shutdown(1.0)

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        if request.path != METRICS_PATH:
            return web.Response(status=404, text="not found: metrics are served at /metrics\n")
        return await metrics_response(request, self._page)


def _error_response(status: int, error: AutomdError, *, close: bool = False) -> web.Response:
    response = web.Response(
        status=status, body=encode(error_reply(None, error)), content_type=_JSON
    )
    if status == 405:
        response.headers["Allow"] = "POST"
    if close:
        # The rest of the request was not read, so the connection cannot be reused.
        response.force_close()
    return response


def _too_large(limit: int) -> web.Response:
    return _error_response(413, RequestTooLarge(data={"max_body_bytes": limit}), close=True)


def _busy_reply() -> bytes:
    body = encode(error_reply(None, ServerBusy()))
    head = (
        "HTTP/1.1 503 Service Unavailable\r\n"
        f"Content-Type: {_JSON}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


class _RefuseConnection(asyncio.Protocol):
    """Answers a connection over the cap with a 503 JSON-RPC error and hangs up."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.WriteTransport)
        transport.write(_busy_reply())
        transport.close()


class _CountingServer(web.Server):
    """web.Server that counts a connection from the moment its protocol is created.

    web.Server registers a connection only in connection_made, which asyncio runs a loop
    iteration after accepting, and asyncio accepts a whole burst of connects in one go; counting
    registered connections alone let 1723 of 2000 simultaneous connects past a cap of 256.
    """

    def __init__(self, handler: Any, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self.pending: set[RequestHandler] = set()

    def __call__(self) -> RequestHandler:
        handler = super().__call__()
        self.pending.add(handler)
        return handler

    def connection_made(self, handler: RequestHandler, transport: asyncio.Transport) -> None:
        self.pending.discard(handler)
        super().connection_made(handler, transport)

    def connection_lost(self, handler: RequestHandler, exc: BaseException | None = None) -> None:
        self.pending.discard(handler)
        super().connection_lost(handler, exc)

    @property
    def open_count(self) -> int:
        return len(self.connections) + len(self.pending)


class RpcServer:
    """Serves the Dispatcher on a listening socket until drained."""

    def __init__(
        self,
        dispatcher: Dispatcher,
        settings: ServerSettings,
        *,
        metrics: MetricsPage | None = None,
    ) -> None:
        self._dispatcher = dispatcher
        self.settings = settings
        self._metrics = metrics
        self._draining = False
        self._web: _CountingServer | None = None
        self._server: asyncio.Server | None = None
        # Connections with a request in progress (body still arriving, or being answered).
        self._busy: dict[object, asyncio.Task[object]] = {}
        self._idle = asyncio.Event()
        self._idle.set()
        # SO_PEERCRED is fixed at connect(): read once per connection, not per request.
        self._peers: weakref.WeakKeyDictionary[asyncio.BaseTransport, PeerCredentials | None] = (
            weakref.WeakKeyDictionary()
        )
        self.requests_total = 0
        self.refused_total = 0
        self._refusal_logged_at = -_REFUSAL_LOG_INTERVAL

    def apply_settings(self, settings: ServerSettings) -> None:
        """Take new settings on reload; idle_timeout_seconds applies to new connections only."""
        self.settings = settings
        self._dispatcher.max_batch_size = settings.max_batch_size

    async def start(self, sock: socket.socket) -> None:
        self._web = _CountingServer(
            self._handle,
            # aiohttp arms this timer at connect and re-arms it after each reply; it closes a
            # connection that is idle or whose request headers never complete (slow clients).
            keepalive_timeout=self.settings.idle_timeout_seconds,
            access_log=None,
            # Compressed bodies are refused (_refuse): inflating a 1 MiB deflate bomb took the
            # event loop ~2 s, stalling every other client. Never decompress at all.
            auto_decompress=False,
        )
        loop = asyncio.get_running_loop()
        # asyncio calls listen() again: keep the kernel's maximum backlog, not asyncio's 100,
        # so a burst of connects queues instead of failing with EAGAIN.
        self._server = await loop.create_server(
            self._make_protocol, sock=sock, backlog=socket.SOMAXCONN
        )

    @property
    def connection_count(self) -> int:
        return 0 if self._web is None else self._web.open_count

    def _make_protocol(self) -> asyncio.BaseProtocol:
        assert self._web is not None
        if self.connection_count >= self.settings.max_connections:
            self._note_refusal()
            return _RefuseConnection()
        return self._web()

    def _note_refusal(self) -> None:
        # One line per refused connection let a flood write thousands of lines a second, until
        # journald's rate limit dropped automd's lines, audit entries included: at most one a
        # second, counting the refusals it stands for.
        self.refused_total += 1
        now = time.monotonic()
        if now - self._refusal_logged_at >= _REFUSAL_LOG_INTERVAL:
            log.warning(
                "refusing connections: %d open (server.max_connections); %d refused so far",
                self.connection_count,
                self.refused_total,
            )
            self._refusal_logged_at = now

    async def drain(self) -> None:
        """Stop accepting, let in-flight requests finish within the bound, close the rest.

        aiohttp's own shutdown stops reading from busy connections, so a request whose body
        is still arriving could never finish; hence idle connections are closed here and busy
        ones are left to complete (each reply then carries Connection: close).
        """
        self._draining = True
        if self._server is not None:
            self._server.close()
        if self._web is None:
            return
        for connection in self._web.connections:
            if connection not in self._busy:
                connection.close()
        try:
            async with asyncio.timeout(self.settings.shutdown_timeout_seconds):
                await self._idle.wait()
        except TimeoutError:
            log.warning("drain: %d requests still in progress, cutting them off", len(self._busy))
            for task in self._busy.values():
                task.cancel()
        await self._web.shutdown(1.0)

    def _refuse(self, request: web.BaseRequest) -> web.Response | None:
        """The transport-level error for a request that must not reach the dispatcher, if any."""
        if request.path != RPC_PATH:
            return web.Response(status=404, text="not found: JSON-RPC is served at POST /rpc\n")
        if request.method != "POST":
            return _error_response(405, HttpMethodNotAllowed())
        if request.content_type != _JSON:
            return _error_response(
                415, UnsupportedMediaType(data={"content_type": request.content_type}), close=True
            )
        encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
        if encoding != "identity":
            return _error_response(
                400,
                InvalidRequest(data=f"Content-Encoding {encoding!r} is not supported"),
                close=True,
            )
        limit = self.settings.max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            return _too_large(limit)
        return None

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        connection = request.protocol
        task = asyncio.current_task()
        assert task is not None
        self._busy[connection] = task
        self._idle.clear()
        try:
            response = await self._answer(request)
        finally:
            del self._busy[connection]
            if not self._busy:
                self._idle.set()
        if self._draining:
            response.force_close()
        return response

    async def _answer(self, request: web.BaseRequest) -> web.StreamResponse:
        if request.path == METRICS_PATH and self._metrics is not None:
            return await metrics_response(request, self._metrics)
        refusal = self._refuse(request)
        if refusal is not None:
            return refusal
        body = await self._body(request)
        if isinstance(body, web.Response):
            return body
        return await self._dispatch(request, body)

    async def _body(self, request: web.BaseRequest) -> bytes | web.Response:
        """The request body, or the error reply for one too large, too slow or malformed."""
        limit = self.settings.max_body_bytes
        if request.content.is_eof():
            # The whole body came with the headers (nearly every request): no timer to arm,
            # nothing to wait for. A chunked body has no declared length to have checked.
            body = request.content.read_nowait()
            return _too_large(limit) if len(body) > limit else body
        try:
            async with asyncio.timeout(self.settings.read_timeout_seconds):
                return await self._read_body(request, limit)
        except TimeoutError:
            timeout = self.settings.read_timeout_seconds
            return _error_response(
                408, RequestTimeout(data={"read_timeout_seconds": timeout}), close=True
            )
        except _BodyTooLarge:
            return _too_large(limit)
        except RequestPayloadError as exc:
            return _error_response(400, InvalidRequest(data=f"malformed body: {exc}"), close=True)

    async def _dispatch(self, request: web.BaseRequest, body: bytes) -> web.StreamResponse:
        self.requests_total += 1
        ctx = CallContext(
            peer=self._peer(request),
            streaming=True,
            trace=parse_traceparent(request.headers.get("traceparent")),
        )
        reply = await self._dispatcher.handle(body, ctx)
        if reply is None:
            return web.Response(status=204)
        if isinstance(reply, StreamReply):
            return await self._stream(request, reply)
        return web.Response(body=reply, content_type=_JSON)

    async def _stream(self, request: web.BaseRequest, reply: StreamReply) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": STREAM_CONTENT_TYPE})
        response.enable_chunked_encoding()
        await response.prepare(request)
        lines = reply.lines()
        try:
            async for line in lines:
                await response.write(line)
            await response.write_eof()
        except (ConnectionError, RuntimeError) as exc:
            # The client went away mid-stream (aiohttp raises ClientConnectionResetError, a
            # ConnectionResetError, or RuntimeError on a closed transport): just stop.
            log.debug("streamed reply cut short: %s", exc)
            response.force_close()
        finally:
            await lines.aclose()
        return response

    def _peer(self, request: web.BaseRequest) -> PeerCredentials | None:
        transport = request.transport
        if transport is None:  # the client already hung up
            return None
        if transport not in self._peers:
            sock = transport.get_extra_info("socket")
            self._peers[transport] = None if sock is None else read_peer_credentials(sock)
        return self._peers[transport]

    @staticmethod
    async def _read_body(request: web.BaseRequest, limit: int) -> bytes:
        # Read incrementally so a chunked body without Content-Length still meets the cap.
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.content.iter_any():
            size += len(chunk)
            if size > limit:
                raise _BodyTooLarge
            chunks.append(chunk)
        return b"".join(chunks)
