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


class Revisions:
    """A definition's revisions as automd 0.8.0 keeps them, for definition.get (with a
    revision), definition.history, definition.rollback and definition.list: `models` by
    revision number, the status as given, the roles and rollbacks derived from it."""

    def __init__(
        self,
        name: str,
        models: dict[int, dict[str, Any]],
        *,
        active: int,
        file: int | None = None,
        canary: int | None = None,
        events: list[dict[str, Any]] | None = None,
        **status: Any,
    ) -> None:
        self.name, self.models, self.events = name, models, events or []
        self.status: dict[str, Any] = {
            "active": active, "file": active if file is None else file, "canary": canary,
            "diverged": False, "canary_percent": None, "canary_succeeded": 0,
            "canary_failed": 0, "promote_after_successes": None, "max_failure_rate": None,
        }  # fmt: skip
        self.status.update(status)
        self.previous = active - 1 if active > 1 else None

    def role(self, number: int) -> str:
        if number == self.status["active"]:
            return "active"
        return "canary" if number == self.status["canary"] else "inactive"

    def revision(self, number: int) -> dict[str, Any]:
        return {
            "number": number, "hash": f"{number:x}" * 64, "source": "reload by SIGHUP",
            "created_at": f"2026-12-{number:02d}T10:00:00Z", "role": self.role(number),
        }  # fmt: skip

    def _known(self, params: dict[str, Any]) -> None:
        if params["name"] != self.name:
            raise Refuse(1001, "No such job definition", {"definition": params["name"]})

    def get(self, params: dict[str, Any]) -> dict[str, Any]:
        self._known(params)
        number = params.get("revision", self.status["active"])
        if number not in self.models:
            raise Refuse(1010, "No such revision", {"definition": self.name, "revision": number})
        return {"name": self.name, "description": "Back up a directory", "sandbox": None,
                "params_schema": {"properties": {}}, "model": self.models[number],
                "revision": self.revision(number), "status": dict(self.status)}  # fmt: skip

    def history(self, params: dict[str, Any]) -> dict[str, Any]:
        self._known(params)
        revisions = [self.revision(n) | {"jobs": 10 * n} for n in sorted(self.models)[::-1]]
        return {"definition": self.name, "status": dict(self.status), "revisions": revisions,
                "events": self.events}  # fmt: skip

    def rollback(self, params: dict[str, Any]) -> dict[str, Any]:
        self._known(params)
        number = params.get("revision", self.previous)
        if number is None:
            raise Refuse(1010, "No such revision", {"definition": self.name, "revision": None,
                         "reason": "no revision was active before 1"})  # fmt: skip
        if number not in self.models:
            raise Refuse(1010, "No such revision", {"definition": self.name, "revision": number})
        was = self.status["active"]
        self.status.update(active=number, diverged=number != self.status["file"])
        return {"definition": self.name, "active": number, "previous": was,
                "file": self.status["file"], "diverged": self.status["diverged"]}  # fmt: skip

    def list(self, params: dict[str, Any]) -> dict[str, Any]:
        summary = {"name": self.name, "description": "Back up a directory",
                   "parameters": ["source"], "revision": self.status["active"],
                   "diverged": self.status["diverged"]}  # fmt: skip
        return {"definitions": [summary], "errors": []}

    def methods(self) -> dict[str, Method]:
        return {"definition.get": self.get, "definition.history": self.history,
                "definition.rollback": self.rollback, "definition.list": self.list}  # fmt: skip
