"""A schedule's firing: exactly once per (definition, schedule, trigger time), with its overlap
policy applied in the same store transaction as the job's insert.

The firing's key is the primary key of schedule_firings, so a firing delivered twice (systemd
retrying, an admin starting the service again with the same TRIGGER_TIMER_REALTIME_USEC) is
answered with what the first delivery did. The policy reads the schedule's unfinished jobs in
the writer's transaction that inserts the new one: no other write can come between "is one
unfinished?" and the insert. A schedule's jobs run one after another (the dispatcher starts only
the oldest unfinished job of a schedule), which is what `queue` needs, and what keeps a
`replace` from running beside the job it is replacing while that one stops.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Literal, cast

from automd.definitions.model import Definition
from automd.definitions.registry import DefinitionRegistry
from automd.definitions.render import InvalidJobParameter, validate_params
from automd.definitions.schedule import Overlap, Schedule, unit_base
from automd.errors import AutomdError, InvalidParams, QueueFull, UnknownDefinition, UnknownSchedule
from automd.jobs.plan import unit_name
from automd.jobs.records import new_job_record
from automd.jobs.service import Caller, JobService
from automd.jobs.states import JobState, move
from automd.store import audit as audit_rows
from automd.store import jobs as rows
from automd.store import schedules as firing_rows
from automd.store.audit import AuditRecord
from automd.store.db import Store
from automd.store.jobs import JobRecord
from automd.store.schedules import FiringRecord
from automd.systemd.units import Systemd

log = logging.getLogger(__name__)

#: How long a firing's key is kept: a duplicate delivery comes within seconds.
KEEP_FIRINGS_USEC = 86400 * 1_000_000

FiringOutcome = Literal["created", "skipped"]


@dataclass(frozen=True)
class Firing:
    """What a firing did: created a job or skipped; `replayed` when an earlier delivery of
    the same firing did it."""

    outcome: FiringOutcome
    job: JobRecord | None
    detail: str
    replayed: bool = False
    #: Units of the jobs this firing replaced, to stop once the write committed.
    stop_units: tuple[str, ...] = field(default=())


def when(usec: int) -> str:
    return datetime.fromtimestamp(usec / 1_000_000, UTC).isoformat(timespec="milliseconds")


def firing_key(definition: str, schedule: str, trigger_usec: int) -> str:
    """The job's idempotency key: the firing's identity, as the caller sees it on the job."""
    return f"schedule:{definition}:{schedule}:{trigger_usec}"


class ScheduleService:
    """Fires the loaded schedules (schedule.fire, schedule.run_now)."""

    def __init__(
        self,
        store: Store,
        registry: DefinitionRegistry,
        jobs: JobService,
        systemd: Systemd,
        *,
        clock: Callable[[], float] = time.time,
        last_trigger: Callable[[str], Awaitable[int | None]] | None = None,
    ) -> None:
        self._last_trigger = last_trigger
        self._store = store
        self._registry = registry
        self._jobs = jobs
        self._systemd = systemd
        self._clock = clock
        #: Firings since start by (definition, schedule, outcome), for the metrics.
        self.firings: Counter[tuple[str, str, str]] = Counter()

    def find(self, definition_name: str, schedule_name: str) -> tuple[Definition, Schedule]:
        definition = self._registry.get(definition_name)
        if definition is None:
            raise UnknownDefinition(data={"definition": definition_name})
        for schedule in definition.schedules:
            if schedule.name == schedule_name:
                return definition, schedule
        raise UnknownSchedule(data={"definition": definition_name, "schedule": schedule_name})

    async def fire(
        self,
        definition_name: str,
        schedule_name: str,
        trigger_usec: int | None,
        caller: Caller,
        *,
        audit: AuditRecord | None = None,
    ) -> Firing:
        """One firing: committed (job, firing and audit entry in one transaction) on return.

        `trigger_usec` None (schedule.run_now, or the service started without a timer): the
        firing is now, and each such call is a firing of its own.
        """
        definition, schedule = self.find(definition_name, schedule_name)
        # The revision the job runs: a canary's share of firings runs the canary.
        definition = self._registry.choose(definition_name) or definition
        try:
            values = validate_params(definition, schedule.params)
        except InvalidJobParameter as exc:  # checked at load; only a bug gets here
            raise InvalidParams(data={"field": exc.field, "reason": exc.reason}) from None
        now = self._clock()
        if trigger_usec is None:
            trigger = round(now * 1_000_000)
        else:
            trigger = await self._timer_trigger(definition.name, schedule.name, trigger_usec)
        settings = self._jobs.settings
        job = new_job_record(
            definition, values, caller, firing_key(definition.name, schedule.name, trigger), now,
            log_rate_limit=(
                settings.log_rate_limit_interval_seconds, settings.log_rate_limit_burst
            ),
        )  # fmt: skip
        job = replace(job, schedule=schedule.name, trigger_at=trigger / 1_000_000)
        limit = settings.max_unfinished
        firing = await self._store.write(
            lambda conn: _fire(conn, job, schedule.overlap, trigger, limit=limit, audit=audit),
            fail_fast=True,
        )
        self._after(firing, definition.name, schedule.name)
        for unit in firing.stop_units:
            try:
                await self._systemd.stop_unit(unit)
            except AutomdError as exc:
                # The firing stands (committed); the replaced job keeps its cancel request,
                # which a later cancel or its own end settles. Said, not raised.
                log.error("schedule %s of %s: stopping replaced %s failed: %s", schedule.name,
                          definition.name, unit, exc.data or exc.message)  # fmt: skip
        return firing

    async def _timer_trigger(self, definition: str, schedule: str, sent: int) -> int:
        """The firing's trigger time: the later of what the service was given and what the
        timer last triggered at. systemd 252 hands a generated service that stays loaded the
        TRIGGER_TIMER_REALTIME_USEC of its *first* activation again at every later one
        (measured: docs/architecture.md), so the timer's LastTriggerUSec, read now, tells
        this firing from the last; a second delivery of one firing reads the same value."""
        if self._last_trigger is None:
            return sent
        try:
            last = await self._last_trigger(f"{unit_base(definition, schedule)}.timer")
        except AutomdError as exc:
            log.warning("timer of %s:%s not read (%s); taking its trigger time as given",
                        definition, schedule, exc.message)  # fmt: skip
            return sent
        return max(sent, last or 0)

    def _after(self, firing: Firing, definition: str, schedule: str) -> None:
        if firing.replayed:
            log.info("schedule %s of %s: firing delivered again: %s", schedule, definition,
                     firing.detail)  # fmt: skip
            return
        self.firings[(definition, schedule, firing.outcome)] += 1
        extra = {"AUTOMD_DEFINITION": definition, "AUTOMD_SCHEDULE": schedule}
        if firing.job is not None:
            extra["AUTOMD_JOB_ID"] = firing.job.id
            self._jobs.dispatcher.job_added()
        else:
            self._jobs.dispatcher.wake()  # a replace may have cancelled queued jobs
        log.info("schedule %s of %s: %s", schedule, definition, firing.detail, extra=extra)


def _fire(
    conn: sqlite3.Connection,
    job: JobRecord,
    overlap: Overlap,
    trigger: int,
    *,
    limit: int,
    audit: AuditRecord | None,
) -> Firing:
    """In the writer's transaction: the firing's earlier result, or the policy applied and
    the job inserted, with the firing's row and the audit entry."""
    definition, schedule = job.definition, str(job.schedule)
    earlier = firing_rows.load_firing(conn, definition, schedule, trigger)
    if earlier is not None:
        found = None if earlier.job_id is None else rows.load_job(conn, earlier.job_id)
        detail = f"firing of {when(trigger)} already taken: {earlier.detail}"
        _audit(conn, audit, found.id if found else None, detail)
        outcome = cast(FiringOutcome, earlier.outcome)  # the store holds what _record wrote
        return Firing(outcome, found, detail, replayed=True)
    firing_rows.purge_firings(conn, definition, schedule, trigger - KEEP_FIRINGS_USEC)
    unfinished = firing_rows.unfinished_of_schedule(conn, definition, schedule)
    if unfinished and overlap is Overlap.SKIP:
        previous = unfinished[-1]
        detail = f"firing of {when(trigger)} skipped: job {previous.id} is still {previous.state}"
        _record(conn, job, trigger, ("skipped", None, detail))
        _audit(conn, audit, None, detail)
        return Firing("skipped", None, detail)
    if rows.count_unfinished(conn) >= limit:
        raise QueueFull(data={"max_unfinished_jobs": limit})
    stop: list[str] = []
    if overlap is Overlap.REPLACE:
        stop = _replace(conn, unfinished, f"replaced by the firing of {when(trigger)}", job)
    rows.insert_job(conn, job)
    rows.insert_event(conn, job.id, job.created_at, JobState.QUEUED,
                      detail=f"fired by schedule {schedule} at {when(trigger)}")  # fmt: skip
    waits = f", after job {unfinished[-1].id}" if unfinished and overlap is Overlap.QUEUE else ""
    detail = f"firing of {when(trigger)} queued job {job.id}{waits}"
    _record(conn, job, trigger, ("created", job.id, detail))
    _audit(conn, audit, job.id, detail)
    return Firing("created", job, detail, stop_units=tuple(stop))


def _replace(
    conn: sqlite3.Connection, unfinished: list[JobRecord], reason: str, new: JobRecord
) -> list[str]:
    """Cancel the schedule's unfinished jobs for `new`, recording why on each; the units of
    those that run, to stop after the commit."""
    stop: list[str] = []
    for old in unfinished:
        state = JobState(old.state)
        if state in (JobState.QUEUED, JobState.WAITING_RETRY):
            move(conn, old, JobState.CANCELLED, new.created_at, detail=reason,
                 cancel_reason=reason)  # fmt: skip
            continue
        if old.cancel_requested:
            continue  # already stopping
        rows.insert_event(conn, old.id, new.created_at, state, attempt=old.attempts,
                          detail=f"cancel requested: {reason}")  # fmt: skip
        rows.update_job(conn, old.id, cancel_requested=True, cancel_reason=reason,
                        updated_at=new.created_at)  # fmt: skip
        stop.append(unit_name(old.definition, old.id, old.attempts))
    return stop


def _record(
    conn: sqlite3.Connection,
    job: JobRecord,
    trigger: int,
    what: tuple[FiringOutcome, str | None, str],
) -> None:
    """The firing's row: (outcome, the job created, detail)."""
    outcome, job_id, detail = what
    firing_rows.insert_firing(
        conn,
        FiringRecord(definition=job.definition, schedule=str(job.schedule), trigger_usec=trigger,
                     at=job.created_at, outcome=outcome, job_id=job_id, detail=detail),
    )  # fmt: skip


def _audit(
    conn: sqlite3.Connection, audit: AuditRecord | None, job_id: str | None, detail: str
) -> None:
    if audit is not None:
        audit_rows.insert(conn, replace(audit, job_id=job_id, detail=detail))
