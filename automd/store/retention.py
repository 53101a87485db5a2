"""Deleting finished jobs: the rows of the expired ones, a batch at a time, and the counts."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence

from automd.store.db import BUSY_TIMEOUT_MS, Store
from automd.store.writer import note_change

# The finished jobs are read through the partial index jobs_finished (state, finished_at);
# INDEXED BY makes SQLite refuse a query the index cannot serve rather than read every job.
# finished_at is set exactly while a job is in a final state (automd.jobs.states.move).
_FINISHED = "jobs INDEXED BY jobs_finished"


def expired(
    conn: sqlite3.Connection, cutoffs: Mapping[str, float], limit: int
) -> list[tuple[float, str]]:
    """Up to `limit` jobs, oldest first, that finished in a state of `cutoffs` before that
    state's cutoff: (finished_at, id)."""
    found: list[tuple[float, str]] = []
    for state, cutoff in cutoffs.items():
        found += conn.execute(
            f"SELECT finished_at, id FROM {_FINISHED} "
            "WHERE state = ? AND finished_at < ? ORDER BY finished_at LIMIT ?",
            (state, cutoff, limit),
        ).fetchall()
    return sorted(found)[:limit]


def count_finished(conn: sqlite3.Connection) -> int:
    (count,) = conn.execute(
        f"SELECT count(*) FROM {_FINISHED} WHERE finished_at IS NOT NULL"
    ).fetchone()
    return int(count)


def oldest_finished(conn: sqlite3.Connection, states: Sequence[str]) -> float | None:
    """When the earliest-finished job kept finished (None: none is kept)."""
    known = []
    for state in states:  # one index probe per state
        (at,) = conn.execute(
            f"SELECT min(finished_at) FROM {_FINISHED} WHERE state = ? AND finished_at IS NOT NULL",
            (state,),
        ).fetchone()
        if at is not None:
            known.append(float(at))
    return min(known) if known else None


async def history(store: Store, states: Sequence[str]) -> tuple[int, float | None]:
    """(finished jobs kept, when the oldest of them finished), read off the event loop."""
    return await store.read(lambda conn: (count_finished(conn), oldest_finished(conn, states)))


def delete_jobs(conn: sqlite3.Connection, job_ids: Sequence[str]) -> int:
    """Delete jobs with their attempts, events and (expired) idempotency keys; but never the
    job of the newest event: job_events' rowid is the metrics' cursor (automd/metrics/),
    and SQLite numbers a new row max(rowid) + 1, so deleting the newest would hand its rowid
    to the next event, which the metrics would then never count."""
    newest = conn.execute("SELECT job_id FROM job_events ORDER BY rowid DESC LIMIT 1").fetchone()
    if newest is not None:
        job_ids = [job_id for job_id in job_ids if job_id != newest[0]]
    if not job_ids:
        return 0
    marks = ", ".join("?" * len(job_ids))
    keyed = conn.execute(
        f"SELECT caller_uid, idempotency_key, id FROM jobs "
        f"WHERE id IN ({marks}) AND idempotency_key IS NOT NULL",
        job_ids,
    ).fetchall()
    # By primary key; the key's row may since name a newer job: only this job's goes.
    conn.executemany(
        "DELETE FROM idempotency_keys WHERE caller_uid = ? AND key = ? AND job_id = ?", keyed
    )
    conn.execute(f"DELETE FROM job_events WHERE job_id IN ({marks})", job_ids)
    conn.execute(f"DELETE FROM attempts WHERE job_id IN ({marks})", job_ids)
    deleted = conn.execute(f"DELETE FROM jobs WHERE id IN ({marks})", job_ids).rowcount
    for job_id in job_ids:
        note_change(conn, job_id)
    return int(deleted)


def incremental_vacuum(conn: sqlite3.Connection, pages: int) -> int:
    """Give up to `pages` free pages back to the filesystem (outside a transaction: Python's
    execute() would step the pragma once, freeing one page); how many stay free."""
    conn.executescript(f"PRAGMA incremental_vacuum({int(pages)})")
    return int(conn.execute("PRAGMA freelist_count").fetchone()[0])


def checkpoint(conn: sqlite3.Connection) -> tuple[bool, int]:
    """Copy the WAL into the database and truncate it, unless a reader still needs it (no
    waiting: the writer must not stall); (done, WAL pages left)."""
    conn.execute("PRAGMA busy_timeout = 0")
    try:
        busy, log_pages, _copied = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    finally:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    return busy == 0, int(log_pages)
