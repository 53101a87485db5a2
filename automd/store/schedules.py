"""Schedule rows: each firing once (schedule_firings), and the jobs a schedule created.

Plain storage: what a firing does (its overlap policy) is decided in automd.jobs.schedules.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, fields

from automd.store import jobs as job_rows
from automd.store.db import Store
from automd.store.jobs import JobRecord


@dataclass(frozen=True)
class FiringRecord:
    definition: str
    schedule: str
    trigger_usec: int
    at: float
    #: "created" (job_id names the job) or "skipped" (the previous job was unfinished).
    outcome: str
    job_id: str | None
    detail: str | None


_FIRING_COLUMNS = ", ".join(f.name for f in fields(FiringRecord))
_JOB_COLUMNS = ", ".join(f.name for f in fields(JobRecord))
_UNFINISHED = "state IN ('queued', 'starting', 'running', 'waiting_retry')"


def load_firing(
    conn: sqlite3.Connection, definition: str, schedule: str, trigger_usec: int
) -> FiringRecord | None:
    row = conn.execute(
        f"SELECT {_FIRING_COLUMNS} FROM schedule_firings "
        "WHERE definition = ? AND schedule = ? AND trigger_usec = ?",
        (definition, schedule, trigger_usec),
    ).fetchone()
    return None if row is None else FiringRecord(*row)


def insert_firing(conn: sqlite3.Connection, firing: FiringRecord) -> None:
    values = [getattr(firing, f.name) for f in fields(FiringRecord)]
    conn.execute(
        f"INSERT INTO schedule_firings ({_FIRING_COLUMNS}) VALUES ({', '.join('?' * len(values))})",
        values,
    )


def purge_firings(conn: sqlite3.Connection, definition: str, schedule: str, before: int) -> None:
    """Forget the schedule's firings triggered before `before` (usec): a duplicate delivery
    comes seconds after the first, never a day."""
    conn.execute(
        "DELETE FROM schedule_firings WHERE definition = ? AND schedule = ? AND trigger_usec < ?",
        (definition, schedule, before),
    )


def unfinished_of_schedule(
    conn: sqlite3.Connection, definition: str, schedule: str
) -> list[JobRecord]:
    """The schedule's jobs not yet in a final state, oldest first (in the writer)."""
    rows = conn.execute(
        f"SELECT {_JOB_COLUMNS} FROM jobs INDEXED BY jobs_by_schedule "
        f"WHERE definition = ? AND schedule = ? AND schedule IS NOT NULL AND {_UNFINISHED} "
        "ORDER BY id",
        (definition, schedule),
    ).fetchall()
    return [job_rows.job_from_row(row) for row in rows]


def oldest_unfinished_per_schedule(conn: sqlite3.Connection) -> dict[tuple[str, str], str]:
    """(definition, schedule) -> the id of its oldest unfinished job: the only one of the
    schedule the dispatcher may start (a schedule's jobs run one after the other)."""
    rows = conn.execute(
        "SELECT definition, schedule, min(id) FROM jobs INDEXED BY jobs_unfinished "
        f"WHERE {_UNFINISHED} AND schedule IS NOT NULL GROUP BY definition, schedule"
    )
    return {(str(d), str(s)): str(job_id) for d, s, job_id in rows}


async def last_jobs(store: Store) -> dict[tuple[str, str], JobRecord]:
    """(definition, schedule) -> the newest job each schedule created."""
    rows = await store.fetch_all(
        f"SELECT {_JOB_COLUMNS} FROM jobs WHERE id IN (SELECT max(id) FROM jobs "
        "INDEXED BY jobs_by_schedule WHERE schedule IS NOT NULL GROUP BY definition, schedule)"
    )
    jobs = [job_rows.job_from_row(row) for row in rows]
    return {(job.definition, str(job.schedule)): job for job in jobs}


async def skipped_counts(store: Store) -> dict[tuple[str, str], int]:
    """(definition, schedule) -> firings skipped, among those still kept (the last day)."""
    rows = await store.fetch_all(
        "SELECT definition, schedule, count(*) FROM schedule_firings WHERE outcome = 'skipped' "
        "GROUP BY definition, schedule"
    )
    return {(str(d), str(s)): int(n) for d, s, n in rows}
