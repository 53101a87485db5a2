"""A blocking JSON-RPC 2.0 client for automd's Unix socket, on http.client."""

from __future__ import annotations

import http.client
import itertools
import json
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import IO, Any

from automd.api.codes import RPC_PATH, STREAM_CONTENT_TYPE


class ClientError(Exception):
    """Base of everything automctl reports instead of a traceback."""


class DaemonUnreachable(ClientError):
    pass


class NoAnswer(DaemonUnreachable):
    """Connected, but no answer within --timeout: automd may be busy, so worth a retry."""


class DaemonFailed(DaemonUnreachable):
    """The connection was closed before any answer: automd accepted it (or systemd held it for
    automd) but exited, typically because it cannot start (a bad automd.toml)."""


#: Where an administrator reads why automd is not answering (its unit's state and journal).
WHY_NOT_ANSWERING = "systemctl status automd and journalctl -u automd say why"


class ConnectPermissionDenied(ClientError):
    pass


class ProtocolError(ClientError):
    """The daemon answered, but not with a JSON-RPC reply we understand."""


class RemoteError(ClientError):
    """The daemon answered with a JSON-RPC error object."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        self.code = code
        self.message = message
        self.data = data
        #: The call that failed (set by RpcClient): messages.py words the error with it.
        self.method = ""
        self.params: dict[str, Any] = {}
        super().__init__(f"{message} ({code})" + (f": {_describe(data)}" if data else ""))

    def to_json(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return error


def _describe(data: Any) -> str:
    if isinstance(data, dict) and "field" in data and "reason" in data:
        return f"{data['field']}: {data['reason']}" if data["field"] else str(data["reason"])
    return data if isinstance(data, str) else json.dumps(data)


class _PartFailed(ClientError):
    """Carries an exception of the caller's on_part through the transport error handling."""

    def __init__(self, original: Exception) -> None:
        super().__init__(str(original))
        self.original = original


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("automd", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


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


class RpcClient:
    def __init__(
        self, socket_path: str, *, timeout: float = 30.0, trace: IO[str] | None = None
    ) -> None:
        self.socket_path = socket_path
        self.timeout = timeout
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
                    message = _decode(line, response.status)
                    if isinstance(message, dict) and "method" in message and "id" not in message:
                        try:
                            on_part(message.get("params"))
                        except Exception as exc:  # e.g. BrokenPipeError: not the daemon's
                            raise _PartFailed(exc) from exc
                        continue
                    return _result_of(message, response.status)
                raise DaemonUnreachable(f"{self.socket_path}: the stream ended without a reply")
        except _PartFailed as failed:
            raise failed.original from None

    @contextmanager
    def _exchange(self, method: str, params: dict[str, Any] | None) -> Iterator[Any]:
        """Send one request; yields the HTTP response, translating transport failures."""
        request = {"jsonrpc": "2.0", "method": method, "params": params or {},
                   "id": next(self._ids)}  # fmt: skip
        body = json.dumps(request).encode()
        started = time.monotonic()
        if self._trace:
            print(f"automctl: -> {self.socket_path} {body.decode()}", file=self._trace)
        path = self.socket_path
        conn = _UnixHTTPConnection(path, self.timeout)
        try:
            conn.request("POST", RPC_PATH, body, headers={"Content-Type": "application/json"})
            response = conn.getresponse()
            yield response
            if self._trace:
                took = (time.monotonic() - started) * 1000
                print(f"automctl: <- HTTP {response.status} in {took:.1f} ms", file=self._trace)
        except FileNotFoundError:
            raise DaemonUnreachable(f"{path}: no such socket (is automd.socket running?)") from None
        except ConnectionRefusedError:
            raise DaemonUnreachable(f"{path}: connection refused (is automd running?)") from None
        except PermissionError:
            raise ConnectPermissionDenied(
                f"{path}: permission denied (are you root or in group automd?)"
            ) from None
        except TimeoutError:
            # The socket exists and took the connection: automd is busy, or systemd keeps
            # restarting it (a bad configuration) while the call waits in the backlog.
            raise NoAnswer(
                f"{path}: no answer within {self.timeout:g}s: automd is busy or cannot start;"
                f" {WHY_NOT_ANSWERING}"
            ) from None
        except (ConnectionResetError, BrokenPipeError, http.client.RemoteDisconnected):
            # Closed before an answer: the automd that held the connection exited (a failed
            # start closes the connections systemd passed to it).
            raise DaemonFailed(
                f"{path}: automd closed the connection without answering: it failed to start "
                f"or stopped; {WHY_NOT_ANSWERING}"
            ) from None
        except RemoteError as error:
            error.method, error.params = method, params or {}
            raise
        except (http.client.HTTPException, OSError) as exc:
            raise DaemonUnreachable(f"{path}: {exc}") from None
        finally:
            conn.close()
