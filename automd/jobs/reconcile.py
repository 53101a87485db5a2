"""Reconciliation: unfinished jobs in the store matched against systemd and the journal.

At start (and after a start whose fate is unknown) every job the store says is starting or
running is matched with its unit: a loaded unit is followed again (systemd.adopt), an ended
one's outcome is read from the journal, and one that never reached systemd is queued again.
Every decision is re-checked inside the write that records it, so a job whose outcome was
recorded meanwhile (adopting its unit can report it at once) is left alone.

A periodic self-check then compares the jobs holding run slots in the store with the units
automd follows, and retry timers with the jobs waiting to retry; it repairs what drifted,
logs it, and counts it (automd_job_repairs_total).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections import Counter
from collections.abc import Callable
from dataclasses import replace

from automd.errors import SystemdRejected, SystemdUnavailable
from automd.jobs.dispatcher import JobDispatcher
from automd.jobs.follower import UnitFollower
from automd.jobs.logfields import job_log_fields
from automd.jobs.plan import unit_name
from automd.jobs.states import AttemptState, JobState, move
from automd.jobs.tasks import TaskSet
from automd.jobs.timers import RetryTimers
from automd.store import jobs as rows
from automd.store.db import Store
from automd.store.jobs import AttemptRecord, JobRecord
from automd.systemd.units import Systemd

log = logging.getLogger(__name__)

_RETRY_SECONDS = 5.0


class Reconciler:
    def __init__(
        self,
        store: Store,
        systemd: Systemd,
        dispatcher: JobDispatcher,
        follower: UnitFollower,
        timers: RetryTimers,
        *,
        clock: Callable[[], float],
    ) -> None:
        self._store = store
        self._systemd = systemd
        self._dispatcher = dispatcher
        self._follower = follower
        self._timers = timers
        self._clock = clock
        self._tasks = TaskSet()
        self._retry: asyncio.TimerHandle | None = None
        # Jobs the last self-check found unfollowed: repaired if the next one finds them too
        # (one sighting can be a unit between its outcome and the write that records it).
        self._suspects: set[tuple[str, int]] = set()
        #: Set once the first reconciliation is done: dispatching waits for it.
        self.done = asyncio.Event()
        #: What the self-check repaired, by kind (automd_job_repairs_total).
        self.repairs: Counter[str] = Counter()

    def soon(self) -> None:
        """Reconcile again shortly (systemd was unreachable, or a start's fate is unknown)."""
        if self._retry is None:
            self._retry = asyncio.get_running_loop().call_later(_RETRY_SECONDS, self._again)

    def _again(self) -> None:
        self._retry = None
        self._tasks.spawn(self.reconcile())

    async def stop(self) -> None:
        if self._retry is not None:
            self._retry.cancel()
        await self._tasks.cancel_all()

    async def reconcile(self) -> None:
        """Match every unfinished job with what systemd and journald say happened."""
        try:
            loaded = set(await self._systemd.adopt())
        except SystemdUnavailable as exc:
            log.warning("reconcile: systemd unreachable (%s); trying again shortly", exc.data)
            self.soon()
            return
        except SystemdRejected as exc:
            # Not an outage, but nothing can be dispatched before a reconciliation.
            log.error("reconcile: systemd refused to list units (%s); trying again", exc.data)
            self.soon()
            return
        # Queued jobs need nothing: the dispatcher takes them. Timers are armed from the store.
        waiting = await rows.jobs_waiting_retry(self._store)
        for job in waiting:
            self._timers.arm(job)
        # A snapshot: it goes stale while the journal is read, so each decision is re-checked
        # where it is written.
        holding = await rows.jobs_holding_slot(self._store)
        for job, attempt in holding:
            await self._settle(job, attempt, loaded)
        if not self.done.is_set():
            log.info("reconciled: %d jobs starting or running, %d waiting to retry, %d units "
                     "loaded", len(holding), len(waiting), len(loaded))  # fmt: skip
        self.done.set()
        self._dispatcher.wake()

    async def self_check(self) -> None:
        """Repair jobs that hold a run slot with nothing following their unit, and jobs
        waiting to retry without a timer."""
        suspects: dict[tuple[str, int], tuple[JobRecord, AttemptRecord | None]] = {}
        for job, attempt in await rows.jobs_holding_slot(self._store):
            unit = _unit_of(job, attempt)
            if not (
                self._systemd.following(unit)
                or self._dispatcher.is_starting(unit)
                or self._follower.is_recording(job.id)
            ):
                suspects[(job.id, job.attempts)] = (job, attempt)
        confirmed = [found for key, found in suspects.items() if key in self._suspects]
        self._suspects = suspects.keys() - self._suspects
        if confirmed:
            loaded = set(await self._systemd.adopt())
            for job, attempt in confirmed:
                self._repaired("unfollowed_unit", job, "holds a run slot, nothing follows its unit")
                await self._settle(job, attempt, loaded)
        for job in await rows.jobs_waiting_retry(self._store):
            if not self._timers.armed(job.id):
                self._repaired("retry_timer", job, "waits to retry without a timer")
                self._timers.arm(job)
        self._dispatcher.wake()

    async def run_self_checks(self, every: Callable[[], float]) -> None:
        """The periodic self-check, after the first reconciliation; runs until cancelled."""
        await self.done.wait()
        while True:
            await asyncio.sleep(every())
            try:
                await self.self_check()
            except (SystemdUnavailable, SystemdRejected) as exc:
                log.warning("self-check: systemd did not answer (%s)", exc.data)
            except Exception:
                log.exception("self-check failed")

    def _repaired(self, kind: str, job: JobRecord, what: str) -> None:
        self.repairs[kind] += 1
        log.warning("self-check: job %s %s; repairing", job.id, what, extra=job_log_fields(job))

    async def _settle(
        self, job: JobRecord, attempt: AttemptRecord | None, loaded: set[str]
    ) -> None:
        """A starting/running job: follow its unit, or record how it ended, or requeue it."""
        unit = _unit_of(job, attempt)
        if unit in loaded:
            return  # systemd.adopt() follows it and reports its outcome
        outcome = await self._systemd.outcome_from_journal(
            unit, attempt.invocation_id if attempt else None
        )
        if outcome is not None:
            await self._follower.record_finished(job.id, job.attempts, replace(outcome, unit=unit))
        else:
            await self._settle_vanished(job, unit)

    async def _settle_vanished(self, seen: JobRecord, unit: str) -> None:
        """No unit and no outcome in the journal: a start that never reached systemd is
        queued again; a unit that ran and left no trace ends `unknown`."""
        now = self._clock()

        reason = f"{unit} is gone and the journal holds no outcome for it"

        def write(conn: sqlite3.Connection) -> JobRecord | None:
            job = rows.load_job(conn, seen.id)
            if job is None or (job.state, job.attempts) != (seen.state, seen.attempts):
                return None  # moved on since it was read (e.g. its outcome was recorded)
            if job.state == JobState.STARTING:
                rows.delete_attempt(conn, job.id, job.attempts)
                return move(conn, job, JobState.QUEUED, now, attempts=job.attempts - 1,
                            detail=f"{unit} never started; queued again")  # fmt: skip
            rows.update_attempt(
                conn, job.id, job.attempts, state=AttemptState.UNKNOWN, finished_at=now
            )
            return move(conn, job, JobState.UNKNOWN, now, attempt=job.attempts, detail=reason)

        settled = await self._store.write(write)
        if settled is None:
            return
        if settled.state == JobState.UNKNOWN:
            log.warning("job %s: outcome unknown: %s", settled.id, reason,
                        extra=job_log_fields(settled))  # fmt: skip
        self._dispatcher.wake()


def _unit_of(job: JobRecord, attempt: AttemptRecord | None) -> str:
    return attempt.unit if attempt else unit_name(job.definition, job.id, job.attempts)
