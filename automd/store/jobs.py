"""Job rows: records, the write functions the group writer runs, and the async reads.

Plain storage: which transitions are allowed and why is decided in automd.jobs.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from typing import Any

from automd.store.db import Store, where_clause
from automd.store.writer import note_change


@dataclass(frozen=True)
class JobRecord:
    id: str
    definition: str
    params: dict[str, Any]
    #: The RunPlan frozen at submit, as stored: JSON text, parsed only where a job is started,
    #: judged or dispatched (reads for the API never need it).
    plan: str
    state: str
    caller_uid: int
    caller_pid: int
    idempotency_key: str | None
    created_at: float
    updated_at: float
    attempts: int
    max_attempts: int
    next_attempt_at: float | None
    cancel_requested: bool
    result: str | None
    exit_code: int | None
    signal: int | None
    finished_at: float | None
    traceparent: str | None = None
    #: How the job ended, in words (the verdict that finished it; None while unfinished).
    outcome: str | None = None
    #: The schedule of `definition` whose firing created the job, and its trigger time.
    schedule: str | None = None
    trigger_at: float | None = None
    #: Why automd cancelled the job for another (a schedule's overlap = replace).
    cancel_reason: str | None = None
    #: The definition's revision the job runs (None: recorded before revisions existed).
    revision: int | None = None


@dataclass(frozen=True)
class AttemptRecord:
    job_id: str
    number: int
    unit: str
    invocation_id: str | None
    state: str
    result: str | None
    exit_code: int | None
    signal: int | None
    outcome_source: str | None
    started_at: float
    finished_at: float | None
    retry_reason: str | None
    #: The definition's revision this attempt ran (its job's, frozen in its plan).
    revision: int | None = None


@dataclass(frozen=True)
class EventRecord:
    job_id: str
    at: float
    attempt: int | None
    state: str
    detail: str | None


# The unfinished jobs are read through the partial index jobs_unfinished (state, id). A query
# uses a partial index only when its WHERE holds the index's own term, literally (bound
# parameters cannot be proven to match), so these queries spell it out, narrow it with the
# states they want, and name the index (INDEXED BY: SQLite refuses the query rather than
# scan every job ever run if the index cannot serve it).
UNFINISHED = ("queued", "starting", "running", "waiting_retry")
HOLDING_SLOT = ("starting", "running")
_UNFINISHED = (
    "INDEXED BY jobs_unfinished WHERE state IN ('queued', 'starting', 'running', 'waiting_retry')"
)
_HOLDING_SLOT_WHERE = f"{_UNFINISHED} AND state IN ('starting', 'running')"

_JOB_NAMES = tuple(f.name for f in fields(JobRecord))
_JOB_COLUMNS = ", ".join(_JOB_NAMES)
_ATTEMPT_COLUMNS = ", ".join(f.name for f in fields(AttemptRecord))
_EVENT_COLUMNS = ", ".join(f.name for f in fields(EventRecord))
_JSON_COLUMNS = ("params",)


def _job(row: Sequence[Any]) -> JobRecord:
    values = dict(zip(_JOB_NAMES, row, strict=True))
    for column in _JSON_COLUMNS:
        values[column] = json.loads(values[column])
    values["cancel_requested"] = bool(values["cancel_requested"])
    return JobRecord(**values)


#: A row of every JobRecord column, in field order, as a JobRecord (for other store modules).
job_from_row = _job


def _attempt(row: Sequence[Any]) -> AttemptRecord:
    return AttemptRecord(*row)


def _event(row: Sequence[Any]) -> EventRecord:
    return EventRecord(*row)


# json.dumps would make a new encoder for these options on every call (every job written).
_JSON = json.JSONEncoder(separators=(",", ":"), sort_keys=True)


def _encode(column: str, value: Any) -> Any:
    if column in _JSON_COLUMNS:
        return _JSON.encode(value)
    if isinstance(value, bool):
        return int(value)
    return value


# --- writes: run inside the group writer's transaction -------------------------------------


_INSERT_JOB = f"INSERT INTO jobs ({_JOB_COLUMNS}) VALUES ({', '.join('?' * len(_JOB_NAMES))})"


def insert_job(conn: sqlite3.Connection, job: JobRecord) -> None:
    conn.execute(_INSERT_JOB, [_encode(name, getattr(job, name)) for name in _JOB_NAMES])
    note_change(conn, job.id)


def load_job(conn: sqlite3.Connection, job_id: str) -> JobRecord | None:
    row = conn.execute(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE id = ?", (job_id,)).fetchone()
    return None if row is None else _job(row)


def _check_columns(record: type[Any], changes: dict[str, Any]) -> None:
    # Column names are interpolated into SQL; only a record's own field names may be.
    unknown = set(changes) - {f.name for f in fields(record)}
    if unknown or not changes:
        raise ValueError(f"not columns of {record.__name__}: {sorted(unknown)}")


def update_job(conn: sqlite3.Connection, job_id: str, **changes: Any) -> JobRecord:
    _check_columns(JobRecord, changes)
    assignments = ", ".join(f"{column} = ?" for column in changes)
    values = [_encode(column, value) for column, value in changes.items()]
    conn.execute(f"UPDATE jobs SET {assignments} WHERE id = ?", [*values, job_id])
    note_change(conn, job_id)
    job = load_job(conn, job_id)
    assert job is not None, job_id
    return job


def insert_attempt(conn: sqlite3.Connection, attempt: AttemptRecord) -> None:
    values = [getattr(attempt, f.name) for f in fields(AttemptRecord)]
    placeholders = ", ".join("?" * len(values))
    conn.execute(f"INSERT INTO attempts ({_ATTEMPT_COLUMNS}) VALUES ({placeholders})", values)
    note_change(conn, attempt.job_id)


def update_attempt(conn: sqlite3.Connection, job_id: str, number: int, **changes: Any) -> None:
    _check_columns(AttemptRecord, changes)
    assignments = ", ".join(f"{column} = ?" for column in changes)
    conn.execute(
        f"UPDATE attempts SET {assignments} WHERE job_id = ? AND number = ?",
        [*changes.values(), job_id, number],
    )
    note_change(conn, job_id)


def delete_attempt(conn: sqlite3.Connection, job_id: str, number: int) -> None:
    conn.execute("DELETE FROM attempts WHERE job_id = ? AND number = ?", (job_id, number))
    note_change(conn, job_id)


def load_attempt(conn: sqlite3.Connection, job_id: str, number: int) -> AttemptRecord | None:
    row = conn.execute(
        f"SELECT {_ATTEMPT_COLUMNS} FROM attempts WHERE job_id = ? AND number = ?",
        (job_id, number),
    ).fetchone()
    return None if row is None else _attempt(row)


def insert_event(
    conn: sqlite3.Connection,
    job_id: str,
    at: float,
    state: str,
    *,
    attempt: int | None = None,
    detail: str | None = None,
) -> None:
    conn.execute(
        "INSERT INTO job_events (job_id, at, attempt, state, detail) VALUES (?, ?, ?, ?, ?)",
        (job_id, at, attempt, state, detail),
    )
    note_change(conn, job_id)


def find_idempotency_key(
    conn: sqlite3.Connection, caller_uid: int, key: str, not_before: float
) -> tuple[str, str] | None:
    """(job id, fingerprint) of a key still inside its window, else None."""
    row = conn.execute(
        "SELECT job_id, fingerprint FROM idempotency_keys "
        "WHERE caller_uid = ? AND key = ? AND created_at >= ?",
        (caller_uid, key, not_before),
    ).fetchone()
    return None if row is None else (str(row[0]), str(row[1]))


def put_idempotency_key(
    conn: sqlite3.Connection, *, caller_uid: int, key: str, job_id: str, fingerprint: str, at: float
) -> None:
    # REPLACE: an expired row for the same key may still be there until the next purge.
    conn.execute(
        "INSERT OR REPLACE INTO idempotency_keys "
        "(caller_uid, key, job_id, fingerprint, created_at) VALUES (?, ?, ?, ?, ?)",
        (caller_uid, key, job_id, fingerprint, at),
    )


def holding_slot_per_definition(conn: sqlite3.Connection) -> dict[str, int]:
    """How many jobs of each definition hold a run slot (starting or running)."""
    rows = conn.execute(
        f"SELECT definition, count(*) FROM jobs {_HOLDING_SLOT_WHERE} GROUP BY definition"
    )
    return {str(definition): int(count) for definition, count in rows}


def count_unfinished(conn: sqlite3.Connection) -> int:
    (count,) = conn.execute(f"SELECT count(*) FROM jobs {_UNFINISHED}").fetchone()
    return int(count)


def queued_after(conn: sqlite3.Connection, after_id: str, limit: int) -> list[JobRecord]:
    """A page of queued jobs, oldest first, after `after_id` ("" for the first page)."""
    rows = conn.execute(
        f"SELECT {_JOB_COLUMNS} FROM jobs {_UNFINISHED} AND state = 'queued' AND id > ? "
        "ORDER BY id LIMIT ?",
        (after_id, limit),
    ).fetchall()
    return [_job(row) for row in rows]


def purge_idempotency_keys(conn: sqlite3.Connection, older_than: float) -> int:
    return conn.execute("DELETE FROM idempotency_keys WHERE created_at < ?", (older_than,)).rowcount


# --- reads ---------------------------------------------------------------------------------


def job_detail(
    conn: sqlite3.Connection, job_id: str
) -> tuple[JobRecord, list[AttemptRecord], list[EventRecord]] | None:
    """A job with its attempts and events, for Store.lookup (one synchronous read)."""
    job = load_job(conn, job_id)
    if job is None:
        return None
    attempts = conn.execute(
        f"SELECT {_ATTEMPT_COLUMNS} FROM attempts WHERE job_id = ? ORDER BY number", (job_id,)
    ).fetchall()
    events = conn.execute(
        f"SELECT {_EVENT_COLUMNS} FROM job_events WHERE job_id = ? ORDER BY at, rowid", (job_id,)
    ).fetchall()
    return job, [_attempt(row) for row in attempts], [_event(row) for row in events]


def get_job(store: Store, job_id: str) -> JobRecord | None:
    """One committed job by id: a primary-key read on the loop (Store.lookup), no thread hop."""
    return store.lookup(lambda conn: load_job(conn, job_id))


async def list_jobs(
    store: Store,
    *,
    states: Iterable[str] | None = None,
    definition: str | None = None,
    schedule: str | None = None,
    since: float | None = None,
    until: float | None = None,
    before_id: str | None = None,
    caller_uid: int | None = None,
    limit: int = 50,
    oldest_first: bool = False,
) -> list[JobRecord]:
    """Newest first (ids sort by creation time); `before_id` continues a previous page."""
    where, args = where_clause([
        ("state IN (?)", None if states is None else list(states)),
        ("definition = ?", definition),
        ("schedule = ?", schedule),
        ("created_at >= ?", since),
        ("created_at < ?", until),
        ("id < ?", before_id),
        ("caller_uid = ?", caller_uid),
    ])  # fmt: skip
    order = "ASC" if oldest_first else "DESC"
    rows = await store.fetch_all(
        f"SELECT {_JOB_COLUMNS} FROM jobs {where} ORDER BY id {order} LIMIT ?", [*args, limit]
    )
    return [_job(row) for row in rows]


async def outcome_events(
    store: Store, after_rowid: int, states: Sequence[str], limit: int
) -> list[tuple[int, str, str, float, float | None]]:
    """Events into `states` after `after_rowid`, oldest first: (rowid, definition, state, at,
    the attempt's start), for the metrics' outcome counters."""
    rows = await store.fetch_all(
        f"""SELECT e.rowid, j.definition, e.state, e.at, a.started_at
            FROM job_events e
            JOIN jobs j ON j.id = e.job_id
            LEFT JOIN attempts a ON a.job_id = e.job_id AND a.number = e.attempt
            WHERE e.rowid > ? AND e.state IN ({", ".join("?" * len(states))})
            ORDER BY e.rowid LIMIT ?""",
        [after_rowid, *states, limit],
    )
    return [tuple(row) for row in rows]


async def unfinished_per_definition(store: Store) -> list[tuple[str, str, int]]:
    """(definition, state, count) of the unfinished jobs."""
    rows = await store.fetch_all(
        f"SELECT definition, state, count(*) FROM jobs {_UNFINISHED} GROUP BY definition, state"
    )
    return [(str(d), str(s), int(n)) for d, s, n in rows]


async def unfinished_jobs(store: Store) -> list[JobRecord]:
    """Every job not yet in a final state, oldest first."""
    return await _jobs_where(store, _UNFINISHED)


async def jobs_waiting_retry(store: Store) -> list[JobRecord]:
    return await _jobs_where(store, f"{_UNFINISHED} AND state = 'waiting_retry'")


async def jobs_holding_slot(store: Store) -> list[tuple[JobRecord, AttemptRecord | None]]:
    """Every job holding a run slot, oldest first, with its latest attempt (if any)."""
    jobs = await _jobs_where(store, _HOLDING_SLOT_WHERE)
    return [(job, await current_attempt(store, job)) for job in jobs]


async def _jobs_where(store: Store, where: str) -> list[JobRecord]:
    rows = await store.fetch_all(f"SELECT {_JOB_COLUMNS} FROM jobs {where} ORDER BY id")
    return [_job(row) for row in rows]


async def current_attempt(store: Store, job: JobRecord) -> AttemptRecord | None:
    if job.attempts == 0:
        return None
    row = await store.fetch_one(
        f"SELECT {_ATTEMPT_COLUMNS} FROM attempts WHERE job_id = ? AND number = ?",
        (job.id, job.attempts),
    )
    return None if row is None else _attempt(row)
