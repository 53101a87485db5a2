"""A blocking JSON-RPC 2.0 client for automd, on http.client, over a transport (transport.py)."""

from __future__ import annotations

import http.client
import itertools
import json
import select
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import IO, Any

from automd.api.codes import RPC_PATH, STREAM_CONTENT_TYPE
from automd.ctl.errors import (
    WHY_NOT_ANSWERING,
    ClientError,
    ConnectPermissionDenied,
    DaemonFailed,
    DaemonUnreachable,
    HostUnreachable,
    NoAnswer,
    ProtocolError,
    RemoteError,
)
from automd.ctl.interrupt import raise_if_interrupted
from automd.ctl.transport import Transport, UnixTransport

# The errors were defined here before errors.py; verbs and tests import them from here.
__all__ = [
    "WHY_NOT_ANSWERING",
    "ClientError",
    "ConnectPermissionDenied",
    "DaemonFailed",
    "DaemonUnreachable",
    "HostUnreachable",
    "NoAnswer",
    "ProtocolError",
    "RemoteError",
    "RpcClient",
]


class _PartFailed(ClientError):
    """Carries an exception of the caller's on_part through the transport error handling."""

    def __init__(self, original: Exception) -> None:
        super().__init__(str(original))
        self.original = original


class _TransportConnection(http.client.HTTPConnection):
    """http.client over whatever stream the transport opens (a Unix socket, or ssh's pipes)."""

    def __init__(self, transport: Transport, timeout: float) -> None:
        super().__init__("automd", timeout=timeout)
        self._transport = transport
        self._timeout = timeout

    def connect(self) -> None:
        self.sock = self._transport.connect(self._timeout)

    def dropped(self) -> bool:
        """Whether a kept connection was closed by automd (idle) since its last answer: it
        then reads as end of file, where a live one has nothing to read."""
        if self.sock is None:
            return False
        readable, _, _ = select.select([self.sock], [], [], 0)
        return bool(readable)


def _result_of(reply: Any, status: int) -> Any:
    if not isinstance(reply, dict):
        raise ProtocolError(f"unexpected reply from automd (HTTP {status})")
    error = reply.get("error")
    if isinstance(error, dict):
        raise RemoteError(
            int(error.get("code", 0)), str(error.get("message", "")), error.get("data")
        )
    if "result" not in reply:
        raise ProtocolError(f"reply without result (HTTP {status})")
    return reply["result"]


def _decode(body: bytes, status: int) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        raise ProtocolError(f"unexpected reply from automd (HTTP {status})") from None


def _translated(exc: Exception, path: str, timeout: float) -> ClientError:
    """What a failure to reach automd (or to hear its answer) means, for the person."""
    if isinstance(exc, FileNotFoundError):
        return DaemonUnreachable(f"{path}: no such socket (is automd.socket running?)")
    if isinstance(exc, ConnectionRefusedError):
        return DaemonUnreachable(f"{path}: connection refused (is automd running?)")
    if isinstance(exc, PermissionError):
        return ConnectPermissionDenied(
            f"{path}: permission denied (are you root or in group automd?)"
        )
    if isinstance(exc, TimeoutError):
        # The socket exists and took the connection: automd is busy, or systemd keeps
        # restarting it (a bad configuration) while the call waits in the backlog.
        return NoAnswer(
            f"{path}: no answer within {timeout:g}s: automd is busy or cannot start;"
            f" {WHY_NOT_ANSWERING}"
        )
    if isinstance(exc, ConnectionResetError | BrokenPipeError | http.client.RemoteDisconnected):
        # Closed before an answer: the automd that held the connection exited (a failed
        # start closes the connections systemd passed to it).
        return DaemonFailed(
            f"{path}: automd closed the connection without answering: it failed to start "
            f"or stopped; {WHY_NOT_ANSWERING}"
        )
    return DaemonUnreachable(f"{path}: {exc}")


class RpcClient:
    def __init__(
        self, where: str | Transport, *, timeout: float = 30.0, trace: IO[str] | None = None
    ) -> None:
        """`where`: automd's socket path, or a transport (transport.py: ssh to a host)."""
        self.transport = UnixTransport(where) if isinstance(where, str) else where
        self.timeout = timeout
        #: The connection kept between calls, for a transport that keeps one (ssh).
        self._kept: _TransportConnection | None = None
        self._ids = itertools.count(1)
        #: -v: each request and the time its answer took, on this stream (stderr).
        self._trace = trace

    def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        with self._exchange(method, params) as response:
            return _result_of(_decode(response.read(), response.status), response.status)

    def stream(self, method: str, params: dict[str, Any], on_part: Callable[[Any], None]) -> Any:
        """Call a method whose reply may be streamed (docs/api.md, Following logs): each
        notification's params go to `on_part` as they arrive; returns the final result."""
        try:
            with self._exchange(method, params) as response:
                if response.getheader("Content-Type", "") != STREAM_CONTENT_TYPE:
                    return _result_of(_decode(response.read(), response.status), response.status)
                for line in response:
                    raise_if_interrupted()
                    message = _decode(line, response.status)
                    if isinstance(message, dict) and "method" in message and "id" not in message:
                        try:
                            on_part(message.get("params"))
                        except Exception as exc:  # e.g. BrokenPipeError: not the daemon's
                            raise _PartFailed(exc) from exc
                        continue
                    return _result_of(message, response.status)
                raise DaemonUnreachable(f"{self.transport.label}: the stream ended without a reply")
        except _PartFailed as failed:
            raise failed.original from None

    @contextmanager
    def _exchange(self, method: str, params: dict[str, Any] | None) -> Iterator[Any]:
        """Send one request; yields the HTTP response, translating transport failures."""
        raise_if_interrupted()  # a Ctrl-C swallowed since the last request (interrupt.py)
        request = {"jsonrpc": "2.0", "method": method, "params": params or {},
                   "id": next(self._ids)}  # fmt: skip
        body = json.dumps(request).encode()
        started = time.monotonic()
        if self._trace:
            print(f"automctl: -> {self.transport.label} {body.decode()}", file=self._trace)
        path = self.transport.label
        conn = self._connection()
        response: http.client.HTTPResponse | None = None
        try:
            try:
                conn.request("POST", RPC_PATH, body, headers={"Content-Type": "application/json"})
                response = conn.getresponse()
            except (ConnectionError, http.client.RemoteDisconnected):
                # The stream ended before an answer: over ssh, ssh's exit status says whether
                # the host, the bridge or automd failed.
                conn.close()
                if (failure := self.transport.failure()) is None:
                    raise
                raise failure from None
            yield response
            if self._trace:
                took = (time.monotonic() - started) * 1000
                print(f"automctl: <- HTTP {response.status} in {took:.1f} ms", file=self._trace)
        except RemoteError as error:
            error.method, error.params = method, params or {}
            raise
        except (http.client.HTTPException, OSError) as exc:
            raise _translated(exc, path, self.timeout) from None
        finally:
            # A connection is kept only after an answer read to its end (a streamed one may
            # not be) that did not close it.
            if not (self.transport.reuse and response is not None and response.isclosed()
                    and not response.will_close):  # fmt: skip
                conn.close()
                self._kept = None
            if response is not None:
                # Closed here, not as it is freed: a finalizer running Python code can
                # swallow a Ctrl-C (interrupt.py).
                response.close()

    def _connection(self) -> _TransportConnection:
        """The kept connection if automd still holds it, else a new one (opened on first use)."""
        kept = self._kept
        if kept is not None and not kept.dropped():
            return kept
        if kept is not None:
            kept.close()
        self._kept = _TransportConnection(self.transport, self.timeout)
        return self._kept

    def close(self) -> None:
        """Close a kept connection and let the transport end what it started (ssh)."""
        if self._kept is not None:
            self._kept.close()
            self._kept = None
        self.transport.close()
