"""A stand-in automd for automctl's unit tests: JSON-RPC over HTTP on a Unix socket, with
canned answers per method, in a thread. Fast, and no systemd; the real daemon is for
tests/integration."""

from __future__ import annotations

import json
import socketserver
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any


class Refuse(Exception):
    """Raised by a method of the fake: becomes a JSON-RPC error reply."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.error = {"code": code, "message": message}
        if data is not None:
            self.error["data"] = data


Method = Callable[[dict[str, Any]], Any]


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    methods: dict[str, Method]
    calls: list[tuple[str, dict[str, Any]]]


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self) -> None:
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        method, params = request["method"], request["params"]
        self.server.calls.append((method, params))
        reply: dict[str, Any] = {"jsonrpc": "2.0", "id": request["id"]}
        try:
            reply["result"] = self.server.methods[method](params)
        except Refuse as refused:
            reply["error"] = refused.error
        body = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def fake_automd(
    path: Path, methods: dict[str, Method]
) -> Iterator[list[tuple[str, dict[str, Any]]]]:
    """Serve `methods` at `path` until the block ends; yields the calls received, in order."""
    server = _Server(str(path), _Handler)
    server.methods = methods
    server.calls = []
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server.calls
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def job_view(job_id: str = "0" * 26, state: str = "queued", **fields: Any) -> dict[str, Any]:
    """A JobView (docs/api.md) with the fields automctl reads."""
    job: dict[str, Any] = {
        "id": job_id, "definition": "hello", "state": state, "params": {},
        "created_at": "2026-11-22T12:00:00+00:00", "finished_at": None, "attempts": 1,
        "max_attempts": 1, "next_attempt_at": None, "result": None, "exit_code": None,
        "signal": None, "unit": None, "cancel_requested": False, "idempotency_key": None,
    }  # fmt: skip
    job.update(fields)
    return job
