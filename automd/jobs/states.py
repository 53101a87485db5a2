"""Job and attempt states, the transitions allowed between them, and the one function that
changes a job's state.

The job states are the wire strings of automd.api (JobState, FINISHED_STATES,
UNFINISHED_STATES). Every change of a job's state goes through `move`, inside the writer's
transaction: it checks the table, records the event and updates the row. An illegal
transition is a bug: it raises (the write is rolled back), is logged with the job id, and is
counted (automd_job_illegal_transitions_total).
"""

from __future__ import annotations

import logging
import sqlite3
from collections import Counter
from enum import StrEnum
from typing import Any

from automd.api.jobs import FINISHED_STATES, UNFINISHED_STATES, JobState
from automd.store import jobs as rows
from automd.store.jobs import JobRecord

__all__ = [
    "FINISHED_STATES",
    "HOLDING_SLOT",
    "TRANSITIONS",
    "UNFINISHED_STATES",
    "AttemptState",
    "IllegalTransition",
    "JobState",
    "move",
]

log = logging.getLogger(__name__)


class AttemptState(StrEnum):
    STARTING = "starting"
    RUNNING = "running"
    FINISHED = "finished"
    #: The unit is gone and the journal holds no outcome for it.
    UNKNOWN = "unknown"


#: A job holds a run slot exactly while its latest attempt is starting or running.
HOLDING_SLOT = (JobState.STARTING, JobState.RUNNING)

_OUTCOMES = frozenset({JobState.WAITING_RETRY, *FINISHED_STATES})

TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    # dispatched; cancelled before it ran
    JobState.QUEUED: frozenset({JobState.STARTING, JobState.CANCELLED}),
    # the unit runs; it never reached systemd (queued again); its outcome
    JobState.STARTING: frozenset({JobState.RUNNING, JobState.QUEUED, *_OUTCOMES}),
    JobState.RUNNING: _OUTCOMES,
    # its backoff ended; cancelled while waiting
    JobState.WAITING_RETRY: frozenset({JobState.QUEUED, JobState.CANCELLED}),
    # a final job changes only by job.retry
    **{state: frozenset({JobState.QUEUED}) for state in FINISHED_STATES},
}

#: Illegal transitions attempted since start, by "from->to" (each is a bug).
illegal_transitions: Counter[str] = Counter()


class IllegalTransition(Exception):
    """A state change the table does not allow: a bug, never a caller's error."""


def move(
    conn: sqlite3.Connection,
    job: JobRecord,
    to: JobState,
    now: float,
    *,
    attempt: int | None = None,
    detail: str | None = None,
    **changes: Any,
) -> JobRecord:
    """In the writer's transaction: `job` (as loaded in it) goes to `to`, with its event."""
    current = JobState(job.state)
    if to not in TRANSITIONS[current]:
        illegal_transitions[f"{current}->{to}"] += 1
        log.error("job %s: illegal transition %s -> %s", job.id, current, to,
                  extra={"AUTOMD_JOB_ID": job.id})  # fmt: skip
        raise IllegalTransition(f"job {job.id}: {current} -> {to}")
    rows.insert_event(conn, job.id, now, to, attempt=attempt, detail=detail)
    if to in FINISHED_STATES:
        # The reason that finished it is the job's outcome, in words: one place writes both.
        changes.update(finished_at=now, next_attempt_at=None, outcome=detail)
    return rows.update_job(conn, job.id, state=to, updated_at=now, **changes)
