"""Retention of finished jobs: the periodic purge of expired ones in short batches, then the
freed space given back to the filesystem and the WAL cut back (docs/architecture.md).

Unfinished jobs are never purged: only rows in a final state match. A job is never purged
while its idempotency key may still be replayed (the count limit stops at the key window,
and every age limit is at least a day, the longest window), so a replay never meets a
missing job: after the window the same key simply starts a new one.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial

from automd.config import RetentionSettings
from automd.jobs.states import JobState
from automd.store import retention as rows
from automd.store.db import Store

log = logging.getLogger(__name__)

#: Jobs deleted per write transaction: starts here, then halves while a batch holds the
#: writer longer than BATCH_SECONDS and grows back while it takes under half of that, so a
#: batch costs about what one commit's fsync does, on a fast machine or a loaded one.
BATCH = 100
BATCH_MIN, BATCH_MAX = 10, 500
BATCH_SECONDS = 0.002
#: Free pages given back per step (8 MB at SQLite's 4 KiB pages), one writer turn each.
VACUUM_PAGES = 2048
#: How often retention runs.
INTERVAL_SECONDS = 600.0

FINISHED = (
    JobState.SUCCEEDED, JobState.FAILED, JobState.TIMED_OUT, JobState.UNKNOWN, JobState.CANCELLED,
)  # fmt: skip


def days_by_state(settings: RetentionSettings) -> dict[str, float]:
    """How many days each final state's jobs are kept."""
    failed = settings.failed_days
    return {
        JobState.SUCCEEDED: settings.succeeded_days,
        JobState.FAILED: failed,
        JobState.TIMED_OUT: failed,
        JobState.UNKNOWN: failed,
        JobState.CANCELLED: settings.cancelled_days,
    }


@dataclass(frozen=True)
class History:
    """How many finished jobs are kept, and since when."""

    kept: int
    oldest: float | None

    def describe(self, settings: RetentionSettings) -> str:
        since = (
            ""
            if self.oldest is None
            else f", oldest finished {datetime.fromtimestamp(self.oldest, UTC):%Y-%m-%d %H:%M}Z"
        )
        return (
            f"{self.kept} finished jobs kept{since}; retention: succeeded "
            f"{settings.succeeded_days:g} d, failed {settings.failed_days:g} d, cancelled "
            f"{settings.cancelled_days:g} d, at most {settings.max_finished_jobs}"
        )


class Retention:
    def __init__(
        self,
        store: Store,
        settings: RetentionSettings,
        key_window: Callable[[], float],
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self.settings = settings
        self._key_window = key_window
        self._clock = clock
        #: The longest a purge batch held the writer, in seconds (bench, tests, the log).
        self.longest_batch = 0.0
        self.batch = BATCH

    async def describe(self) -> str:
        """The history kept now and its retention, for system.health's store check (a count
        of the jobs_finished index, off the event loop: tens of ms for a million jobs)."""
        return History(*await rows.history(self._store, FINISHED)).describe(self.settings)

    async def run(self) -> None:
        while True:
            try:
                await self.purge()
                await self.compact()
            except Exception:
                log.exception("retention: purging finished jobs failed")
            await asyncio.sleep(INTERVAL_SECONDS)

    async def purge(self) -> int:
        """Delete the expired finished jobs: by age, then the oldest over the count limit."""
        now = self._clock()
        cutoffs = {
            state: now - days * 86400 for state, days in days_by_state(self.settings).items()
        }
        purged = await self._purge(cutoffs, None)
        kept, _oldest = await rows.history(self._store, FINISHED)
        excess = kept - self.settings.max_finished_jobs
        if excess > 0:
            # Never a job whose idempotency key may still be replayed (see the docstring).
            floor = now - self._key_window()
            purged += await self._purge(dict.fromkeys(FINISHED, floor), excess)
        if purged:
            log.info("retention: deleted %d finished jobs (longest batch %.1f ms)",
                     purged, self.longest_batch * 1000)  # fmt: skip
        return purged

    async def _purge(self, cutoffs: dict[str, float], most: int | None) -> int:
        purged = 0
        while most is None or purged < most:
            limit = self.batch if most is None else min(self.batch, most - purged)
            started = time.monotonic()
            batch = partial(_timed, cutoffs=cutoffs, limit=limit)
            found, deleted, seconds = await self._store.write(batch, fail_fast=True)
            self.longest_batch = max(self.longest_batch, seconds)
            self._adapt(seconds)
            purged += deleted
            if found < limit or not deleted:  # all gone, or only the one never deleted left
                break
            # Leave the writer to others as long as the batch (and its commit) took: back to
            # back, every submit would share its group with a batch and wait for both.
            await asyncio.sleep(time.monotonic() - started)
        return purged

    def _adapt(self, seconds: float) -> None:
        if seconds > BATCH_SECONDS:
            self.batch = max(BATCH_MIN, self.batch // 2)
        elif seconds < BATCH_SECONDS / 2:
            self.batch = min(BATCH_MAX, self.batch + self.batch // 4)

    async def compact(self) -> None:
        """Give free pages back a step at a time, then checkpoint and truncate the WAL."""
        free = None
        while True:
            left = await self._store.maintain(lambda c: rows.incremental_vacuum(c, VACUUM_PAGES))
            if left in (0, free):  # done, or others free pages as fast
                break
            free = left
        done, pages = await self._store.maintain(rows.checkpoint)
        if not done:
            log.info("retention: WAL not truncated, a reader still uses %d pages of it", pages)


def _timed(
    conn: sqlite3.Connection, cutoffs: dict[str, float], limit: int
) -> tuple[int, int, float]:
    """One batch, in the writer's transaction: (jobs expired, deleted, seconds it took)."""
    started = time.perf_counter()
    ids = [job_id for _at, job_id in rows.expired(conn, cutoffs, limit)]
    deleted = rows.delete_jobs(conn, ids)
    return len(ids), deleted, time.perf_counter() - started
