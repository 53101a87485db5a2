"""A plain FastAPI + uvicorn JSON-RPC server for job.submit and job.get: the yardstick."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import fields
from pathlib import Path
from typing import Any, Literal

import aiosqlite
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from automd.api.jobs import JobGetResult, JobIdParams, JobState, JobSubmitParams, JobSubmitResult
from automd.api.model import Result
from automd.definitions.loader import load_definitions
from automd.definitions.render import InvalidJobParameter, validate_params
from automd.jobs import views
from automd.jobs.records import Caller, new_job_record, request_fingerprint
from automd.store.db import migrate
from automd.store.jobs import AttemptRecord, EventRecord, JobRecord

DB_FILENAME = "reference.db"
IDEMPOTENCY_WINDOW_SECONDS = 86400.0
# uvicorn does not expose the socket's SO_PEERCRED to the app, so callers are not identified.
UNKNOWN_CALLER = -1

_JOB_FIELDS = [f.name for f in fields(JobRecord)]
_JOB_COLUMNS = ", ".join(_JOB_FIELDS)
_ATTEMPT_COLUMNS = ", ".join(f.name for f in fields(AttemptRecord))
_EVENT_COLUMNS = ", ".join(f.name for f in fields(EventRecord))


class RpcRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    jsonrpc: Literal["2.0"]
    method: str
    params: dict[str, Any] = Field(default_factory=dict)
    id: int | str | None = None


class RpcError(Exception):
    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data


def _reply(request_id: Any, *, result: Any = None, error: RpcError | None = None) -> JSONResponse:
    if error is None:
        return JSONResponse({"jsonrpc": "2.0", "result": result, "id": request_id})
    wire: dict[str, Any] = {"code": error.code, "message": error.message}
    if error.data is not None:
        wire["data"] = error.data
    return JSONResponse({"jsonrpc": "2.0", "error": wire, "id": request_id})


def _job_from_row(row: sqlite3.Row | tuple[Any, ...]) -> JobRecord:
    values = dict(zip(_JOB_FIELDS, row, strict=True))
    values["params"] = json.loads(values["params"])
    values["cancel_requested"] = bool(values["cancel_requested"])
    return JobRecord(**values)


# Deliberately the straightforward design (one fsynced commit per submit, no group commit),
# sharing automd's models, validation and schema so that only the architecture differs.
class ReferenceService:
    """job.submit and job.get over SQLite: a write connection behind a lock, a read connection."""

    def __init__(self, state_dir: Path, definitions_dir: Path) -> None:
        self.path = state_dir / DB_FILENAME
        self.definitions = load_definitions(definitions_dir).definitions
        # One thread owns the write connection, so submits never interleave in a transaction.
        self._write_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ref-writer")
        self._writer: sqlite3.Connection | None = None
        self._reader: aiosqlite.Connection | None = None

    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # The same schema as automd, created by automd's own migrations.
        setup = sqlite3.connect(self.path, isolation_level=None)
        try:
            setup.execute("PRAGMA journal_mode = WAL")
            migrate(setup)
        finally:
            setup.close()
        # check_same_thread=False: opened here, then only ever used by the writer thread.
        self._writer = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        # FULL: a commit is on disk before the submit is acknowledged, as in automd.
        self._writer.execute("PRAGMA synchronous = FULL")
        self._writer.execute("PRAGMA foreign_keys = ON")
        self._writer.execute("PRAGMA busy_timeout = 5000")
        self._reader = await aiosqlite.connect(f"file:{self.path}?mode=ro", uri=True)

    async def close(self) -> None:
        if self._reader is not None:
            await self._reader.close()
        self._write_thread.shutdown()
        if self._writer is not None:
            self._writer.close()

    async def submit(self, raw: dict[str, Any]) -> JobSubmitResult:
        assert self._writer is not None
        params = JobSubmitParams.model_validate(raw)
        definition = self.definitions.get(params.definition)
        if definition is None:
            raise RpcError(1001, "Unknown definition", {"definition": params.definition})
        try:
            values = validate_params(definition, params.params)
        except InvalidJobParameter as exc:
            raise RpcError(
                -32602, "Invalid params", {"field": exc.field, "reason": exc.reason}
            ) from None
        now = time.time()
        caller = Caller(uid=UNKNOWN_CALLER, pid=UNKNOWN_CALLER)
        job = new_job_record(definition, values, caller, params.idempotency_key, now)
        fingerprint = request_fingerprint(definition.name, values)
        row = [
            json.dumps(getattr(job, name), separators=(",", ":"), sort_keys=True)
            if name == "params"
            else getattr(job, name)
            for name in _JOB_FIELDS
        ]
        # One transaction, and so one fsync, per submit, run whole in the writer thread.
        loop = asyncio.get_running_loop()
        stored, replayed = await loop.run_in_executor(
            self._write_thread, self._write_submit, job, row, fingerprint
        )
        return JobSubmitResult(job=views.job_view(stored), replayed=replayed)

    def _write_submit(
        self, job: JobRecord, row: list[Any], fingerprint: str
    ) -> tuple[JobRecord, bool]:
        assert self._writer is not None
        conn = self._writer
        key = job.idempotency_key
        conn.execute("BEGIN IMMEDIATE")
        try:
            if key is not None:
                found = conn.execute(
                    "SELECT job_id, fingerprint FROM idempotency_keys "
                    "WHERE caller_uid = ? AND key = ? AND created_at >= ?",
                    (UNKNOWN_CALLER, key, job.created_at - IDEMPOTENCY_WINDOW_SECONDS),
                ).fetchone()
                if found is not None:
                    if found[1] != fingerprint:
                        raise RpcError(
                            1004, "Idempotency conflict", {"idempotency_key": key, "job": found[0]}
                        )
                    earlier = conn.execute(
                        f"SELECT {_JOB_COLUMNS} FROM jobs WHERE id = ?", (found[0],)
                    ).fetchone()
                    conn.execute("ROLLBACK")
                    return _job_from_row(earlier), True
            placeholders = ", ".join("?" * len(row))
            conn.execute(f"INSERT INTO jobs ({_JOB_COLUMNS}) VALUES ({placeholders})", row)
            if key is not None:
                conn.execute(
                    "INSERT OR REPLACE INTO idempotency_keys "
                    "(caller_uid, key, job_id, fingerprint, created_at) VALUES (?, ?, ?, ?, ?)",
                    (UNKNOWN_CALLER, key, job.id, fingerprint, job.created_at),
                )
            conn.execute(
                "INSERT INTO job_events (job_id, at, attempt, state, detail) "
                "VALUES (?, ?, NULL, ?, ?)",
                (job.id, job.created_at, JobState.QUEUED.value, "submitted"),
            )
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return job, False

    async def get(self, raw: dict[str, Any]) -> JobGetResult:
        assert self._reader is not None
        params = JobIdParams.model_validate(raw)
        job = await self._load_job(self._reader, params.id)
        if job is None:
            raise RpcError(1002, "Job not found", {"id": params.id})
        attempts = await self._reader.execute_fetchall(
            f"SELECT {_ATTEMPT_COLUMNS} FROM attempts WHERE job_id = ? ORDER BY number",
            (params.id,),
        )
        events = await self._reader.execute_fetchall(
            f"SELECT {_EVENT_COLUMNS} FROM job_events WHERE job_id = ? ORDER BY at, rowid",
            (params.id,),
        )
        return JobGetResult(
            job=views.job_view(job),
            attempts=[views.attempt_view(AttemptRecord(*a)) for a in attempts],
            events=[views.event_view(EventRecord(*e)) for e in events],
        )

    @staticmethod
    async def _load_job(conn: aiosqlite.Connection, job_id: str) -> JobRecord | None:
        cursor = await conn.execute(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE id = ?", (job_id,))
        row = await cursor.fetchone()
        return None if row is None else _job_from_row(row)


def create_app(state_dir: Path | None = None, definitions_dir: Path | None = None) -> FastAPI:
    """The app; without arguments the directories come from BENCH_STATE_DIR/_DEFINITIONS_DIR."""
    service = ReferenceService(
        state_dir or Path(os.environ["BENCH_STATE_DIR"]),
        definitions_dir or Path(os.environ["BENCH_DEFINITIONS_DIR"]),
    )
    methods: dict[str, Callable[[dict[str, Any]], Awaitable[Result]]] = {
        "job.submit": service.submit,
        "job.get": service.get,
    }

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await service.open()
        yield
        await service.close()

    app = FastAPI(lifespan=lifespan, openapi_url=None, docs_url=None, redoc_url=None)

    @app.exception_handler(RequestValidationError)
    async def invalid_envelope(request: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI would answer 422; a JSON-RPC client expects -32600 in a 200 reply.
        return _reply(None, error=RpcError(-32600, "Invalid Request"))

    @app.post("/rpc")
    async def rpc(call: RpcRequest) -> JSONResponse:
        method = methods.get(call.method)
        if method is None:
            return _reply(call.id, error=RpcError(-32601, "Method not found"))
        try:
            result = await method(call.params)
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            field = ".".join(str(part) for part in first["loc"]) or None
            error = RpcError(-32602, "Invalid params", {"field": field, "reason": first["msg"]})
            return _reply(call.id, error=error)
        except RpcError as exc:
            return _reply(call.id, error=exc)
        return _reply(call.id, result=result.model_dump(mode="json"))

    return app
