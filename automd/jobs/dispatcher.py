"""Starts queued jobs within jobs.max_running and each definition's concurrency limit.

The store owns the run slots: a job holds one exactly while it is `starting` or `running`
there. A dispatch round counts the holders and claims the free slots (queued -> starting, with
the attempt row) in one write transaction. Every outcome is recorded by another write, and the
store's single writer runs them one after the other, so a slot can be neither claimed twice nor
held by a job whose outcome was recorded. Nothing in memory counts running jobs: the counts
shown (STATUS=, metrics, health) are the last round's, taken from the store.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass

from automd.config import JobsSettings
from automd.errors import SystemdRejected, SystemdUnavailable, UnitStartRejected
from automd.jobs.logfields import job_log_fields
from automd.jobs.plan import RunPlan, unit_name, unit_spec
from automd.jobs.states import AttemptState, JobState, move
from automd.jobs.tasks import TaskSet
from automd.store import jobs as rows
from automd.store import schedules as schedule_rows
from automd.store.db import Store
from automd.store.jobs import AttemptRecord, JobRecord
from automd.systemd.units import Systemd, UnitOutcome
from automd.trace import parse_traceparent

log = logging.getLogger(__name__)

# Queued jobs a round looks at, oldest first, in pages: jobs of definitions at their
# concurrency limit are skipped, and everything past the window waits for a later round.
_DISPATCH_WINDOW = 1000
_PAGE = 64


@dataclass(frozen=True)
class JobCounts:
    """Counted in the store by the last dispatch round (plus submits acknowledged since)."""

    running: int = 0
    unfinished: int = 0

    @property
    def waiting(self) -> int:
        """Queued or waiting to retry (unfinished, not running)."""
        return max(0, self.unfinished - self.running)


@dataclass(frozen=True)
class Claimed:
    """A job a round moved from queued to starting: its attempt is to be started."""

    job: JobRecord
    plan: RunPlan
    number: int
    unit: str


def claim_free_slots(
    conn: sqlite3.Connection, max_running: int, now: float
) -> tuple[list[Claimed], JobCounts]:
    """In the writer's transaction: fill the free run slots with the oldest queued jobs."""
    per_definition = rows.holding_slot_per_definition(conn)
    running = sum(per_definition.values())
    free = max_running - running
    claimed: list[Claimed] = []
    after = ""
    seen = 0
    # A schedule's jobs run one after another: only its oldest unfinished one may start.
    # Read once a page holds a scheduled job (most rounds never do).
    schedule_heads: dict[tuple[str, str], str] | None = None
    # Pages start at the free slots' size and double when jobs in them are skipped: a round
    # after one job ends (most rounds of a burst) reads one row, not a page of 64, each
    # parsed with its plan (the writer's largest cost per job under a burst, profiled).
    size = free
    while free > 0 and seen < _DISPATCH_WINDOW:
        page = rows.queued_after(conn, after, min(size, _PAGE, _DISPATCH_WINDOW - seen))
        if not page:
            break
        seen += len(page)
        after = page[-1].id
        size *= 2
        for job in page:
            if job.schedule is not None:
                if schedule_heads is None:
                    schedule_heads = schedule_rows.oldest_unfinished_per_schedule(conn)
                if schedule_heads.get((job.definition, job.schedule)) != job.id:
                    continue
            plan = RunPlan.model_validate_json(job.plan)
            held = per_definition.get(job.definition, 0)
            if plan.concurrency is not None and held >= plan.concurrency:
                continue
            claimed.append(_mark_starting(conn, job, plan, now))
            per_definition[job.definition] = held + 1
            free -= 1
            if free == 0:
                break
    counts = JobCounts(running=running + len(claimed), unfinished=rows.count_unfinished(conn))
    return claimed, counts


def _mark_starting(conn: sqlite3.Connection, job: JobRecord, plan: RunPlan, now: float) -> Claimed:
    number = job.attempts + 1
    unit = unit_name(job.definition, job.id, number)
    # Recorded before StartTransientUnit: after a crash the unit name tells whether systemd
    # got the start, so the attempt is never started twice.
    rows.insert_attempt(
        conn,
        AttemptRecord(
            job_id=job.id, number=number, unit=unit, invocation_id=None,
            state=AttemptState.STARTING,
            result=None, exit_code=None, signal=None, outcome_source=None, started_at=now,
            finished_at=None, retry_reason=None, revision=job.revision,
        ),
    )  # fmt: skip
    started = move(conn, job, JobState.STARTING, now, attempt=number, detail=unit,
                   attempts=number)  # fmt: skip
    return Claimed(started, plan, number, unit)


class JobDispatcher:
    """Runs dispatch rounds when woken, and starts the attempts each round claimed."""

    def __init__(
        self,
        store: Store,
        systemd: Systemd,
        settings: Callable[[], JobsSettings],
        clock: Callable[[], float],
        *,
        start_rejected: Callable[[UnitOutcome], None],
        start_uncertain: Callable[[], None],
        counts_changed: Callable[[], None],
    ) -> None:
        self._store = store
        self._systemd = systemd
        self._settings = settings
        self._clock = clock
        self._start_rejected = start_rejected
        self._start_uncertain = start_uncertain
        self._counts_changed = counts_changed
        self._wake = asyncio.Event()
        self._starting: set[str] = set()  # units whose StartTransientUnit is in flight
        self._tasks = TaskSet()
        self.counts = JobCounts()

    def wake(self) -> None:
        """Something changed in the store (a submit, an outcome, a requeue): run a round."""
        self._wake.set()

    def job_added(self) -> None:
        """A submit or a retry was acknowledged: count it until the next round recounts."""
        counts = self.counts  # not dataclasses.replace: this runs on every submit
        self.counts = JobCounts(running=counts.running, unfinished=counts.unfinished + 1)
        self._counts_changed()
        self._wake.set()

    def is_starting(self, unit: str) -> bool:
        return unit in self._starting

    async def run(self, ready: asyncio.Event) -> None:
        """Dispatch rounds until cancelled; the first once `ready` (reconciliation) is set."""
        await ready.wait()
        self._wake.set()
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self.round()
            except Exception:
                log.exception("dispatch round failed")

    async def round(self) -> None:
        max_running, now = self._settings().max_running, self._clock()
        claimed, self.counts = await self._store.write(
            lambda conn: claim_free_slots(conn, max_running, now)
        )
        self._counts_changed()
        for item in claimed:
            self._starting.add(item.unit)
            self._tasks.spawn(self._start(item))

    async def stop(self) -> None:
        await self._tasks.cancel_all()

    async def _start(self, item: Claimed) -> None:
        job, unit = item.job, item.unit
        trace = parse_traceparent(job.traceparent)
        spec = unit_spec(
            item.plan, definition=job.definition, job_id=job.id, attempt=item.number,
            trace=None if trace is None else trace.child(),
        )  # fmt: skip
        if job.schedule is not None:  # journalctl AUTOMD_SCHEDULE=<name> finds its runs
            fields = {**spec.log_extra_fields, "AUTOMD_SCHEDULE": job.schedule}
            spec = spec.model_copy(update={"log_extra_fields": fields})
        try:
            await self._systemd.start_unit(spec)
            log.info("job %s: attempt %d started as %s", job.id, item.number, unit,
                     extra=job_log_fields(job))  # fmt: skip
            await self._stop_if_cancelled(job.id, item.number, unit)
        except UnitStartRejected as exc:
            if exc.dbus_error.endswith(".UnitExists"):
                return  # an earlier start got through; it is followed and will report
            log.error("job %s: systemd refused to start %s: %s", job.id, unit, exc.detail)
            self._start_rejected(
                UnitOutcome(unit=unit, invocation_id=None, result="start-rejected",
                            exit_code=None, signal=None, source="dbus")
            )  # fmt: skip
        except SystemdUnavailable as exc:
            # Whether systemd got the start is unknown: reconcile decides, from the unit name.
            log.warning("job %s: start of %s uncertain (%s); reconciling", job.id, unit, exc)
            self._start_uncertain()
        finally:
            self._starting.discard(unit)

    async def _stop_if_cancelled(self, job_id: str, number: int, unit: str) -> None:
        """A cancel that came while the start was in flight stopped a unit that did not
        exist yet (a no-op): stop it now. A cancel after this read stops it itself."""
        current = rows.get_job(self._store, job_id)
        if current is not None and current.cancel_requested and current.attempts == number:
            log.info("job %s: cancelled while starting; stopping %s", job_id, unit)
            try:
                await self._systemd.stop_unit(unit)
            except (SystemdUnavailable, SystemdRejected) as exc:
                log.error("job %s: stopping %s failed: %s", job_id, unit, exc.data)
