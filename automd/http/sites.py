"""What automd's listeners serve: the API socket POST /rpc (JSON-RPC) and GET /metrics, with
admission (the connection caps); the optional TCP listener GET /metrics only; and what both
share, the deadline sweeper and drain. HTTP framing and deadlines are connection.py's, the
parser limits request.py's; the accept loop is accept.py's, who may connect admission.py's.

HTTP statuses describe the transport (413, 408, 415, 405, 503); any reply that holds a
JSON-RPC body, including parse and validation errors, is HTTP 200 (204 when empty).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import replace

from automd.api.codes import IDEMPOTENCY_KEY_HEADER, RPC_PATH, STREAM_CONTENT_TYPE
from automd.audit import AuditLog
from automd.config import ServerSettings
from automd.errors import (
    AutomdError,
    HttpMethodNotAllowed,
    InternalError,
    InvalidRequest,
    RequestTimeout,
    RequestTooLarge,
    ServerBusy,
    UnsupportedMediaType,
)
from automd.fdbudget import METRICS_CONNECTIONS
from automd.http.accept import Acceptor
from automd.http.admission import Connections, Limits, Refusal, Refusals
from automd.http.connection import HttpConnection
from automd.http.reply import Reply, StreamedReply, plain_reply
from automd.http.request import Request
from automd.peer import PeerCredentials, process_name, read_peer_credentials
from automd.rpc.context import CallContext
from automd.rpc.protocol import Dispatcher, StreamReply, encode, error_reply
from automd.trace import parse_traceparent

log = logging.getLogger(__name__)

_JSON = "application/json"
_TEXT = "text/plain; charset=utf-8"


#: Prometheus metrics, served on the API socket and on the optional TCP listener.
METRICS_PATH = "/metrics"
_METRICS_PATH = METRICS_PATH.encode()
_RPC_PATH = RPC_PATH.encode()
_IDEMPOTENCY_KEY = IDEMPOTENCY_KEY_HEADER.lower().encode()
#: Renders the metrics page: (body, content type).
MetricsPage = Callable[[], Awaitable[tuple[bytes, str]]]
# What both listeners answer to a metrics request that is not GET or HEAD.
_METRICS_METHODS = ("GET", "HEAD")
_METRICS_ALLOW = ", ".join(_METRICS_METHODS)
_METRICS_METHOD_TEXT = "use GET\n"


def _error_reply(
    status: int,
    error: AutomdError,
    *,
    close: bool = False,
    headers: tuple[tuple[str, str], ...] = (),
) -> Reply:
    body = encode(error_reply(None, error))
    return Reply(status, body, _JSON, headers=headers, close=close)


def _busy_reply() -> bytes:
    body = encode(error_reply(None, ServerBusy()))
    head = (
        "HTTP/1.1 503 Service Unavailable\r\n"
        f"Content-Type: {_JSON}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


#: The refusal of a connection over a cap, written the moment it is accepted.
BUSY_REPLY = _busy_reply()


_NOT_FOUND = plain_reply(404, "not found: JSON-RPC is served at POST /rpc\n")
_RPC_POST_ONLY = _error_reply(405, HttpMethodNotAllowed(), headers=(("Allow", "POST"),))
_METRICS_GET_ONLY = Reply(
    405, _METRICS_METHOD_TEXT.encode(), _TEXT, headers=(("Allow", _METRICS_ALLOW),)
)
_METRICS_ONLY = plain_reply(404, "not found: metrics are served at /metrics\n")
_METRICS_BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
)


class Listener:
    """What both listeners share (and connection.Site asks of them): deadlines and size limits from
    the server settings, the accept loop, the deadline sweeper, and drain."""

    connections: Iterable[HttpConnection]

    def __init__(self, settings: ServerSettings) -> None:
        self.settings = settings
        self.draining = False
        self._acceptor: Acceptor | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._attaching: set[asyncio.Task[None]] = set()

    async def start(self, sock: socket.socket) -> None:
        self._acceptor = Acceptor(sock, self._accepted, self._refuse_unserved)
        self._acceptor.start()
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep_deadlines())

    def _accepted(self, sock: socket.socket) -> None:
        raise NotImplementedError

    def _refuse_unserved(self, sock: socket.socket) -> None:
        raise NotImplementedError

    # --- connection.Site -------------------------------------------------------------------------

    @property
    def max_body_bytes(self) -> int:
        return self.settings.max_body_bytes

    @property
    def read_timeout(self) -> float:
        return self.settings.read_timeout_seconds

    @property
    def idle_timeout(self) -> float:
        return self.settings.idle_timeout_seconds

    def connection_made(self, connection: HttpConnection) -> None:
        pass  # counted when it was accepted

    def connection_lost(self, connection: HttpConnection) -> None:
        self._forget(connection)

    # --- serving ---------------------------------------------------------------------------

    def _serve(self, connection: HttpConnection, sock: socket.socket) -> None:
        """Serve an accepted socket on `connection`, already counted in self.connections."""
        task = asyncio.get_running_loop().create_task(self._attach(connection, sock))
        self._attaching.add(task)  # held until done: the loop keeps only weak references
        task.add_done_callback(self._attaching.discard)

    async def _attach(self, connection: HttpConnection, sock: socket.socket) -> None:
        try:
            await asyncio.get_running_loop().connect_accepted_socket(lambda: connection, sock)
        except Exception:  # e.g. the socket went bad meanwhile: nothing to serve
            self._forget(connection)
            sock.close()

    def _forget(self, connection: HttpConnection) -> None:
        raise NotImplementedError

    async def _sweep_deadlines(self) -> None:
        """Cuts off connections past their deadline; a tenth of the shorter timeout late at most
        (clamped to 50 ms..1 s), instead of a timer armed and cancelled per request."""
        while True:
            settings = self.settings
            shortest = min(settings.read_timeout_seconds, settings.idle_timeout_seconds)
            await asyncio.sleep(min(1.0, max(0.05, shortest / 10)))
            now = time.monotonic()
            for connection in list(self.connections):
                connection.check_deadline(now)

    async def drain(self) -> None:
        """Stop accepting, let in-flight requests finish within the bound, close the rest.

        Idle connections are closed at once; a busy one (body arriving, or being answered)
        finishes, and its reply carries Connection: close.
        """
        self.draining = True
        if self._acceptor is not None:
            self._acceptor.close()
        for connection in list(self.connections):
            connection.close()
        try:
            async with asyncio.timeout(self.settings.shutdown_timeout_seconds):
                # Polled only while draining: no bookkeeping per request for it.
                while any(connection.busy for connection in self.connections):  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
        except TimeoutError:
            busy = [connection for connection in self.connections if connection.busy]
            log.warning("drain: %d requests still in progress, cutting them off", len(busy))
            for connection in busy:
                connection.abort()
        if self._sweeper is not None:
            self._sweeper.cancel()


class RpcServer(Listener):
    """The API socket: serves the Dispatcher until drained (a connection.Site)."""

    connections: Connections

    def __init__(
        self,
        dispatcher: Dispatcher,
        settings: ServerSettings,
        *,
        metrics: MetricsPage | None = None,
        audit: AuditLog | None = None,
    ) -> None:
        super().__init__(settings)
        self._dispatcher = dispatcher
        self._metrics = metrics
        # Counted from the moment a connection is accepted, before its transport exists.
        self.connections = Connections()
        self.limits = Limits.configured(settings)
        self.refusals = Refusals(audit, self._describe)
        self.requests_total = 0

    def apply_settings(self, settings: ServerSettings, limits: Limits | None = None) -> None:
        """Take new settings on reload: limits and deadlines apply from the next request, the
        idle deadline from the next time a connection falls idle. `limits`: the connection
        caps in force when the open-file check lowered them."""
        self.settings = settings
        self._dispatcher.max_batch_size = settings.max_batch_size
        self.limits = limits or Limits.configured(settings)

    @property
    def connection_count(self) -> int:
        return len(self.connections)

    def refused_by_reason(self) -> Mapping[str, int]:
        return self.refusals.by_reason

    # --- connection.Site -------------------------------------------------------------------------

    def refuse(self, request: Request) -> Reply | None:
        """The transport-level error for a request that must not reach the dispatcher, if any."""
        if request.path == _METRICS_PATH and self._metrics is not None:
            return None if request.method in _METRICS_METHODS else _METRICS_GET_ONLY
        if request.path != _RPC_PATH:
            return _NOT_FOUND
        if request.method != "POST":
            return _RPC_POST_ONLY
        return self._refuse_body(request.headers)

    def _refuse_body(self, headers: dict[bytes, bytes]) -> Reply | None:
        media_type = headers.get(b"content-type", b"").partition(b";")[0].strip().lower()
        if media_type != b"application/json":
            error = UnsupportedMediaType(data={"content_type": media_type.decode("latin-1")})
            return _error_reply(415, error, close=True)
        encoding = headers.get(b"content-encoding", b"identity").strip().lower()
        if encoding != b"identity":
            # Never inflated: a 1 MiB deflate bomb took the event loop ~2 s (docs/security.md).
            reason = f"Content-Encoding {encoding.decode('latin-1')!r} is not supported"
            return _error_reply(400, InvalidRequest(data=reason), close=True)
        length = headers.get(b"content-length")  # llhttp has checked it is one number
        if length is not None and int(length) > self.settings.max_body_bytes:
            return self.too_large()
        return None

    def too_large(self) -> Reply:
        limit = self.settings.max_body_bytes
        return _error_reply(413, RequestTooLarge(data={"max_body_bytes": limit}), close=True)

    def timed_out(self) -> Reply:
        timeout = self.settings.read_timeout_seconds
        error = RequestTimeout(data={"read_timeout_seconds": timeout})
        return _error_reply(408, error, close=True)

    async def respond(self, request: Request, connection: HttpConnection) -> Reply | StreamedReply:
        try:
            if request.path == _METRICS_PATH:
                assert self._metrics is not None  # refuse() lets /metrics through only then
                body, content_type = await self._metrics()
                return Reply(200, body, content_type)
            return await self._dispatch(request, connection)
        except Exception:
            # The dispatcher answers every error itself: this is a bug in automd.
            log.exception("request failed")
            return _error_reply(500, InternalError(), close=True)

    # --- serving ---------------------------------------------------------------------------

    async def _dispatch(
        self, request: Request, connection: HttpConnection
    ) -> Reply | StreamedReply:
        self.requests_total += 1
        headers = request.headers
        traceparent = headers.get(b"traceparent")
        idempotency_key = headers.get(_IDEMPOTENCY_KEY)
        ctx = CallContext(
            peer=connection.peer,
            streaming=True,
            trace=None if traceparent is None else parse_traceparent(traceparent.decode("latin-1")),
            idempotency_key=None if idempotency_key is None else idempotency_key.decode("latin-1"),
        )
        reply = await self._dispatcher.handle(request.body, ctx)
        if reply is None:
            return Reply(204)
        if isinstance(reply, StreamReply):
            return StreamedReply(STREAM_CONTENT_TYPE, reply.lines())
        return Reply(200, reply, _JSON)

    # --- admission -------------------------------------------------------------------------

    def _accepted(self, sock: socket.socket) -> None:
        """A new connection: refused at once over a cap, else served. SO_PEERCRED is fixed at
        connect(): read once per connection, here, before anything else is spent on it."""
        peer = read_peer_credentials(sock, with_process=False)
        reason = self.connections.refusal(peer, self.limits)
        if reason is not None:
            self._refuse(sock, peer, reason)
            sock.close()
            return
        connection = HttpConnection(self)
        if peer is not None:
            peer = replace(peer, process=process_name(peer.pid))
        connection.peer = peer
        self.connections.add(connection)
        self._serve(connection, sock)

    def _forget(self, connection: HttpConnection) -> None:
        self.connections.discard(connection)

    def _refuse_unserved(self, sock: socket.socket) -> None:
        """A connection accepted on the accept loop's spare descriptor: refused."""
        self._refuse(sock, read_peer_credentials(sock, with_process=False), Refusal.OPEN_FILES)

    def _refuse(self, sock: socket.socket, peer: PeerCredentials | None, reason: Refusal) -> None:
        # A fresh socket's send buffer is empty: the whole reply fits without waiting. The
        # caller closes the socket right after.
        with contextlib.suppress(OSError):
            sock.send(BUSY_REPLY)
        self.refusals.note(peer, reason, len(self.connections))

    def _describe(self, reason: Refusal) -> str:
        if reason is Refusal.MAX_CONNECTIONS:
            return f"{self.limits.connections} connections open (server.max_connections)"
        if reason is Refusal.MAX_CONNECTIONS_PER_USER:
            return (
                f"the user holds {self.limits.per_user} connections "
                "(server.max_connections_per_user)"
            )
        return "no file descriptor free (the open-file limit)"

    async def drain(self) -> None:
        self.refusals.close()
        await super().drain()


class MetricsSite(Listener):
    """The optional TCP listener (automd-metrics.socket): GET /metrics and nothing else, so
    the JSON-RPC API never leaves the Unix socket, where callers have kernel credentials.
    Requests are refused as the API socket refuses them, under the same deadlines and drain."""

    def __init__(self, page: MetricsPage, settings: ServerSettings) -> None:
        super().__init__(settings)
        self._page = page
        self.connections: set[HttpConnection] = set()

    def refuse(self, request: Request) -> Reply | None:
        if request.path != _METRICS_PATH:
            return _METRICS_ONLY
        return None if request.method in _METRICS_METHODS else _METRICS_GET_ONLY

    async def respond(self, request: Request, connection: HttpConnection) -> Reply:
        try:
            body, content_type = await self._page()
        except Exception:
            log.exception("metrics page failed")
            return plain_reply(500, "internal error\n", close=True)
        return Reply(200, body, content_type)

    def too_large(self) -> Reply:
        return plain_reply(413, f"body over {self.settings.max_body_bytes} bytes\n", close=True)

    def timed_out(self) -> Reply:
        timeout = self.settings.read_timeout_seconds
        return plain_reply(408, f"request not received within {timeout:g} s\n", close=True)

    def _accepted(self, sock: socket.socket) -> None:
        if len(self.connections) >= METRICS_CONNECTIONS:
            # Counted in the open-file budget: a TCP client cannot take the API's descriptors.
            self._refuse_unserved(sock)
            sock.close()
            return
        connection = HttpConnection(self)
        self.connections.add(connection)
        self._serve(connection, sock)

    def _forget(self, connection: HttpConnection) -> None:
        self.connections.discard(connection)

    def _refuse_unserved(self, sock: socket.socket) -> None:
        with contextlib.suppress(OSError):
            sock.send(_METRICS_BUSY)
