"""A store holding months of history, built through the store's own write functions."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from automd.jobs.ids import new_job_id
from automd.jobs.states import JobState
from automd.store import jobs as rows
from automd.store.jobs import AttemptRecord, JobRecord

_PLAN = '{"argv":["/bin/true"],"retry":{"max_attempts":1}}'


def add_finished_jobs(
    conn: sqlite3.Connection,
    count: int,
    *,
    finished_at: float,
    state: str = JobState.SUCCEEDED,
    spread: float = 0.0,
    key_prefix: str | None = None,
    plan: str = _PLAN,
) -> list[str]:
    """`count` jobs that finished in `state`, the i-th at finished_at + i * spread / count,
    each with one attempt, its three events and (with `key_prefix`) an idempotency key;
    `plan`: the stored RunPlan JSON (a real one is about 1.2 KB, the default 50 bytes)."""
    ids = []
    for i in range(count):
        at = finished_at + i * spread / max(count, 1)
        job_id = new_job_id()
        key = None if key_prefix is None else f"{key_prefix}{i}"
        rows.insert_job(conn, _job(job_id, state, at, key, plan=plan))
        rows.insert_attempt(conn, _attempt(job_id, at))
        for offset, event in ((-2.0, JobState.QUEUED), (-1.0, JobState.RUNNING), (0.0, state)):
            rows.insert_event(conn, job_id, at + offset, event, attempt=1, detail="bench")
        if key is not None:
            rows.put_idempotency_key(
                conn, caller_uid=1000, key=key, job_id=job_id, fingerprint="f", at=at - 2.0
            )
        ids.append(job_id)
    return ids


def add_unfinished_jobs(conn: sqlite3.Connection, states: Sequence[str], created_at: float) -> None:
    for state in states:
        rows.insert_job(conn, _job(new_job_id(), state, None, None, created_at=created_at))


def _job(
    job_id: str,
    state: str,
    at: float | None,
    key: str | None,
    *,
    created_at: float | None = None,
    plan: str = _PLAN,
) -> JobRecord:
    created = created_at if at is None else at - 2.0
    assert created is not None
    return JobRecord(
        id=job_id, definition="bench", params={"n": 1}, plan=plan, state=state,
        caller_uid=1000, caller_pid=1, idempotency_key=key, created_at=created,
        updated_at=at or created, attempts=0 if at is None else 1, max_attempts=1,
        next_attempt_at=None, cancel_requested=False, result=None if at is None else "success",
        exit_code=None if at is None else 0, signal=None, finished_at=at,
        outcome=None if at is None else "bench",
    )  # fmt: skip


def _attempt(job_id: str, at: float) -> AttemptRecord:
    return AttemptRecord(
        job_id=job_id, number=1, unit=f"automd-bench-{job_id}-1.service", invocation_id=None,
        state="finished", result="success", exit_code=0, signal=None,
        outcome_source="bench", started_at=at - 1.0, finished_at=at, retry_reason=None,
    )  # fmt: skip
