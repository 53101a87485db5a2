"""Retry timers: a job waiting to retry is queued again when its backoff ends."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable

from automd.jobs.states import JobState, move
from automd.jobs.tasks import TaskSet
from automd.store import jobs as rows
from automd.store.db import Store
from automd.store.jobs import JobRecord

log = logging.getLogger(__name__)


class RetryTimers:
    """One timer per job waiting to retry; the store says when (`next_attempt_at`)."""

    def __init__(
        self, store: Store, clock: Callable[[], float], *, requeued: Callable[[], None]
    ) -> None:
        self._store = store
        self._clock = clock
        self._requeued = requeued
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._tasks = TaskSet()

    def arm(self, job: JobRecord) -> None:
        assert job.next_attempt_at is not None
        self.disarm(job.id)
        delay = max(0.0, job.next_attempt_at - self._clock())
        loop = asyncio.get_running_loop()
        self._timers[job.id] = loop.call_later(delay, self._fire, job.id)

    def disarm(self, job_id: str) -> None:
        timer = self._timers.pop(job_id, None)
        if timer is not None:
            timer.cancel()

    def armed(self, job_id: str) -> bool:
        return job_id in self._timers

    async def stop(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        await self._tasks.cancel_all()

    def _fire(self, job_id: str) -> None:
        self._tasks.spawn(self._requeue(job_id))

    async def _requeue(self, job_id: str) -> None:
        now = self._clock()

        def write(conn: sqlite3.Connection) -> bool:
            job = rows.load_job(conn, job_id)
            if job is None or job.state != JobState.WAITING_RETRY:
                return False
            move(conn, job, JobState.QUEUED, now, detail=f"attempt {job.attempts + 1} due",
                 next_attempt_at=None)  # fmt: skip
            return True

        try:
            requeued = await self._store.write(write)
        finally:
            # Popped only now: until the write is done, the self-check sees the timer armed.
            self._timers.pop(job_id, None)
        if requeued:
            self._requeued()
