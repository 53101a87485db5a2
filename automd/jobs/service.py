"""The job lifecycle: submit, dispatch within limits, follow units, retry, cancel, reconcile.

Every state change is decided inside a store write (run by the single writer, in order), so
transitions never race; what must happen outside the store (starting or stopping a unit,
arming a retry timer) happens after that write committed.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import random
import sqlite3
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from automd.api.methods import FINISHED_STATES, HealthCheck, JobState
from automd.definitions.model import Definition
from automd.definitions.params import ParamValue
from automd.definitions.registry import DefinitionRegistry
from automd.definitions.render import InvalidJobParameter, validate_params
from automd.errors import (
    IdempotencyConflict,
    InvalidJobState,
    InvalidParams,
    JobNotFound,
    QueueFull,
    SystemdUnavailable,
    UnitStartRejected,
    UnknownDefinition,
)
from automd.jobs.ids import new_job_id
from automd.jobs.plan import RunPlan, make_plan, parse_unit_name, redact, unit_name, unit_spec
from automd.jobs.policy import backoff_delay, judge, should_retry
from automd.store import audit as audit_rows
from automd.store import jobs as rows
from automd.store.audit import AuditRecord
from automd.store.db import Store
from automd.store.jobs import AttemptRecord, JobRecord
from automd.systemd.units import Systemd, UnitOutcome
from automd.trace import parse_traceparent

log = logging.getLogger(__name__)

_ACTIVE = (JobState.STARTING, JobState.RUNNING)
_RECONCILE_RETRY_SECONDS = 5.0
_DISPATCH_WINDOW = 1000


@dataclass(frozen=True)
class Caller:
    uid: int
    pid: int


@dataclass(frozen=True)
class JobSettings:
    max_running: int = 16
    max_unfinished: int = 100_000
    idempotency_window_seconds: float = 86400.0


@dataclass
class _Active:
    definition: str
    unit: str
    concurrency: int | None


class JobService:
    def __init__(
        self,
        store: Store,
        registry: DefinitionRegistry,
        systemd: Systemd,
        settings: JobSettings,
        *,
        clock: Callable[[], float] = time.time,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self._store = store
        self._registry = registry
        self._systemd = systemd
        self.settings = settings
        self._clock = clock
        self._rng = rng
        self._active: dict[str, _Active] = {}  # job id -> its starting/running attempt
        self._unfinished = 0
        self._wake = asyncio.Event()
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._dispatcher: asyncio.Task[None] | None = None
        self._purge_timer: asyncio.TimerHandle | None = None
        self.reconciled = asyncio.Event()
        #: Called (on the loop) whenever running or unfinished counts may have changed.
        self.on_counts_changed: Callable[[], None] = lambda: None
        #: job.submit calls answered with an earlier job (automd_job_idempotent_replays_total).
        self.replays = 0

    # --- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        self._unfinished = len(await rows.unfinished_jobs(self._store))
        self._dispatcher = asyncio.create_task(self._dispatch_loop(), name="automd-dispatcher")
        self._spawn(self._reconcile())
        self._spawn(self.purge_expired_keys())

    async def stop(self) -> None:
        """Stop following jobs; their units keep running and are re-adopted on the next start."""
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        if self._purge_timer is not None:
            self._purge_timer.cancel()
        tasks = [*self._tasks, *([self._dispatcher] if self._dispatcher else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("job task failed", exc_info=task.exception())

    @property
    def running_count(self) -> int:
        return len(self._active)

    @property
    def unfinished_count(self) -> int:
        return self._unfinished

    async def queue_health(self) -> HealthCheck:
        """Whether the queue takes new jobs: below jobs.max_unfinished (then 1005 QueueFull)."""
        limit = self.settings.max_unfinished
        waiting = max(0, self._unfinished - self.running_count)
        detail = (
            f"{self.running_count} running (max {self.settings.max_running}), {waiting} queued "
            f"or waiting; {self._unfinished} of {limit} unfinished allowed"
        )
        return HealthCheck(ok=self._unfinished < limit, detail=detail)

    # --- API operations --------------------------------------------------------------------

    async def submit(
        self,
        definition_name: str,
        raw_params: Mapping[str, Any],
        idempotency_key: str | None,
        caller: Caller,
        *,
        traceparent: str | None = None,
        audit: AuditRecord | None = None,
    ) -> tuple[JobRecord, bool]:
        """Durably queue a job (committed and synced before this returns); (job, replayed).

        `audit` is written in the same transaction, naming the job created or the one
        replayed (its job_id): both reach the disk in one commit, or neither does.
        """
        definition = self._registry.get(definition_name)
        if definition is None:
            raise UnknownDefinition(data={"definition": definition_name})
        try:
            values = validate_params(definition, raw_params)
        except InvalidJobParameter as exc:
            raise InvalidParams(data={"field": exc.field, "reason": exc.reason}) from None
        if self._unfinished >= self.settings.max_unfinished:
            raise QueueFull(data={"max_unfinished_jobs": self.settings.max_unfinished})
        now = self._clock()
        job = new_job_record(
            definition, values, caller, idempotency_key, now, traceparent=traceparent
        )
        # What a key is bound to; without a key there is nothing to compare it with.
        fingerprint = (
            "" if idempotency_key is None else request_fingerprint(definition.name, values)
        )
        window_start = now - self.settings.idempotency_window_seconds

        def write(conn: sqlite3.Connection) -> tuple[JobRecord, bool]:
            if idempotency_key is not None:
                found = rows.find_idempotency_key(conn, caller.uid, idempotency_key, window_start)
                if found is not None:
                    earlier_id, earlier_fingerprint = found
                    if earlier_fingerprint != fingerprint:
                        raise IdempotencyConflict(
                            data={"idempotency_key": idempotency_key, "job": earlier_id}
                        )
                    earlier = rows.load_job(conn, earlier_id)
                    assert earlier is not None
                    if audit is not None:
                        audit_rows.insert(conn, replace(audit, job_id=earlier.id))
                    return earlier, True
            rows.insert_job(conn, job)
            if idempotency_key is not None:
                rows.put_idempotency_key(
                    conn,
                    caller_uid=caller.uid,
                    key=idempotency_key,
                    job_id=job.id,
                    fingerprint=fingerprint,
                    at=now,
                )
            rows.insert_event(
                conn, job.id, now, JobState.QUEUED, detail=f"submitted by uid {caller.uid}"
            )
            if audit is not None:
                audit_rows.insert(conn, replace(audit, job_id=job.id))
            return job, False

        record, replayed = await self._store.write(write)
        if not replayed:
            self._unfinished += 1
            self.on_counts_changed()
            # debug: a burst of submits must not become a burst of journal writes; the
            # job's start and end are logged at info.
            if log.isEnabledFor(logging.DEBUG):
                log.debug(
                    "job %s queued: %s", record.id, record.definition,
                    extra=job_log_fields(record),
                )  # fmt: skip
            self._wake.set()
        else:
            self.replays += 1
        return record, replayed

    async def get(self, job_id: str) -> JobRecord:
        job = await rows.get_job(self._store, job_id)
        if job is None:
            raise JobNotFound(data={"id": job_id})
        return job

    async def cancel(self, job_id: str, *, owner: int | None = None) -> JobRecord:
        """Cancel a job; with `owner`, only that uid's jobs exist for the caller."""
        now = self._clock()

        def write(conn: sqlite3.Connection) -> tuple[JobRecord, str | None]:
            job = _owned(rows.load_job(conn, job_id), job_id, owner)
            state = JobState(job.state)
            if state in FINISHED_STATES:
                raise InvalidJobState(data={"id": job_id, "state": state, "operation": "cancel"})
            if state in (JobState.QUEUED, JobState.WAITING_RETRY):
                rows.insert_event(
                    conn, job_id, now, JobState.CANCELLED, detail="cancelled before it ran"
                )
                return _finish(conn, job, JobState.CANCELLED, now), None
            # starting/running: record the request first, so the outcome reads "cancelled".
            rows.insert_event(
                conn, job_id, now, state, attempt=job.attempts, detail="cancel requested"
            )
            updated = rows.update_job(conn, job_id, cancel_requested=True, updated_at=now)
            return updated, unit_name(job.definition, job.id, job.attempts)

        job, unit = await self._store.write(write)
        if unit is None:
            self._disarm(job_id)
            self._unfinished -= 1
        else:
            # Stops the unit's whole cgroup (KillMode); the outcome arrives as unit_finished.
            await self._systemd.stop_unit(unit)
        return job

    async def retry(self, job_id: str, *, owner: int | None = None) -> JobRecord:
        now = self._clock()

        def write(conn: sqlite3.Connection) -> JobRecord:
            job = _owned(rows.load_job(conn, job_id), job_id, owner)
            if JobState(job.state) not in FINISHED_STATES:
                raise InvalidJobState(data={"id": job_id, "state": job.state, "operation": "retry"})
            plan = RunPlan.model_validate_json(job.plan)
            rows.insert_event(conn, job_id, now, JobState.QUEUED, detail="retry requested")
            return rows.update_job(
                conn,
                job_id,
                state=JobState.QUEUED,
                # A fresh budget of automatic retries for the new run.
                max_attempts=job.attempts + plan.retry.max_attempts,
                cancel_requested=False,
                result=None,
                exit_code=None,
                signal=None,
                finished_at=None,
                next_attempt_at=None,
                updated_at=now,
            )

        job = await self._store.write(write)
        self._unfinished += 1
        self._wake.set()
        return job

    async def purge_expired_keys(self) -> int:
        """Delete idempotency keys past their window (already ignored); re-arms itself."""
        cutoff = self._clock() - self.settings.idempotency_window_seconds
        purged = await self._store.write(lambda conn: rows.purge_idempotency_keys(conn, cutoff))
        if purged:
            log.info("purged %d expired idempotency keys", purged)
        # A tenth of the window, between a minute and an hour: the table stays small.
        interval = min(max(self.settings.idempotency_window_seconds / 10, 60.0), 3600.0)
        loop = asyncio.get_running_loop()
        self._purge_timer = loop.call_later(
            interval, lambda: self._spawn(self.purge_expired_keys())
        )
        return purged

    # --- dispatching -----------------------------------------------------------------------

    async def _dispatch_loop(self) -> None:
        await self.reconciled.wait()
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self._dispatch_ready()
            except Exception:
                log.exception("dispatch round failed")

    async def _dispatch_ready(self) -> None:
        free = self.settings.max_running - len(self._active)
        if free <= 0:
            return
        # A bounded window of the oldest queued jobs: loading every queued row on every wake
        # made a burst of N submits cost O(N^2) on the event loop. Jobs beyond the window wait
        # for a later round (each finished or started job wakes the dispatcher again).
        queued = await rows.list_jobs(
            self._store, states=[JobState.QUEUED], limit=_DISPATCH_WINDOW, oldest_first=True
        )
        running_per_definition: dict[str, int] = {}
        for active in self._active.values():
            running_per_definition[active.definition] = (
                running_per_definition.get(active.definition, 0) + 1
            )
        for job in queued:
            if free <= 0:
                break
            if job.id in self._active:
                continue  # picked by an earlier round; its start is not committed yet
            limit = RunPlan.model_validate_json(job.plan).concurrency
            if limit is not None and running_per_definition.get(job.definition, 0) >= limit:
                continue
            number = job.attempts + 1
            self._active[job.id] = _Active(
                job.definition, unit_name(job.definition, job.id, number), limit
            )
            running_per_definition[job.definition] = (
                running_per_definition.get(job.definition, 0) + 1
            )
            free -= 1
            self._spawn(self._start_attempt(job, number))
            self.on_counts_changed()

    async def _start_attempt(self, job: JobRecord, number: int) -> None:
        unit = unit_name(job.definition, job.id, number)
        now = self._clock()

        def write(conn: sqlite3.Connection) -> JobRecord | None:
            current = rows.load_job(conn, job.id)
            if (
                current is None
                or current.state != JobState.QUEUED
                or current.attempts != job.attempts
            ):
                return None  # cancelled (or otherwise moved on) since it was picked
            # Recorded before StartTransientUnit: after a crash the unit name tells whether
            # systemd got the start, so the attempt is never started twice.
            rows.insert_attempt(
                conn,
                AttemptRecord(
                    job_id=job.id, number=number, unit=unit, invocation_id=None,
                    state="starting", result=None, exit_code=None, signal=None,
                    outcome_source=None, started_at=now, finished_at=None, retry_reason=None,
                ),
            )  # fmt: skip
            rows.insert_event(conn, job.id, now, JobState.STARTING, attempt=number, detail=unit)
            return rows.update_job(
                conn, job.id, state=JobState.STARTING, attempts=number, updated_at=now
            )

        started = await self._store.write(write)
        if started is None:
            active = self._active.get(job.id)
            if active is not None and active.unit == unit:
                self._release(job.id)
            return
        plan = RunPlan.model_validate_json(started.plan)
        trace = parse_traceparent(started.traceparent)
        spec = unit_spec(
            plan, definition=job.definition, job_id=job.id, attempt=number,
            trace=None if trace is None else trace.child(),
        )  # fmt: skip
        try:
            await self._systemd.start_unit(spec)
            log.info("job %s: attempt %d started as %s", job.id, number, unit,
                     extra=job_log_fields(started))  # fmt: skip
        except UnitStartRejected as exc:
            if exc.dbus_error.endswith(".UnitExists"):
                return  # an earlier start got through; it is tracked and will report
            log.error("job %s: systemd refused to start %s: %s", job.id, unit, exc.detail)
            self.unit_finished(
                UnitOutcome(unit=unit, invocation_id=None, result="start-rejected",
                            exit_code=None, signal=None, source="dbus")
            )  # fmt: skip
        except SystemdUnavailable as exc:
            # Whether systemd got the start is unknown: reconcile decides, from the unit name.
            log.warning("job %s: start of %s uncertain (%s); reconciling", job.id, unit, exc)
            self._schedule_reconcile()

    def _release(self, job_id: str) -> None:
        if self._active.pop(job_id, None) is not None:
            self._wake.set()
            self.on_counts_changed()

    # --- unit events (called by automd.systemd) --------------------------------------------

    def unit_started(self, unit: str, invocation_id: str) -> None:
        parsed = parse_unit_name(unit)
        if parsed is not None:
            self._spawn(self._record_started(*parsed, invocation_id))

    def unit_finished(self, outcome: UnitOutcome) -> None:
        parsed = parse_unit_name(outcome.unit)
        if parsed is not None:
            self._spawn(self._record_finished(*parsed, outcome))

    async def _record_started(self, job_id: str, number: int, invocation_id: str) -> None:
        now = self._clock()

        def write(conn: sqlite3.Connection) -> None:
            attempt = rows.load_attempt(conn, job_id, number)
            if attempt is None or attempt.state != "starting":
                return
            rows.update_attempt(conn, job_id, number, state="running", invocation_id=invocation_id)
            job = rows.load_job(conn, job_id)
            if job is not None and job.state == JobState.STARTING and job.attempts == number:
                rows.update_job(conn, job_id, state=JobState.RUNNING, updated_at=now)
                rows.insert_event(conn, job_id, now, JobState.RUNNING, attempt=number,
                                  detail=f"invocation {invocation_id}")  # fmt: skip

        await self._store.write(write)

    async def _record_finished(self, job_id: str, number: int, outcome: UnitOutcome) -> None:
        now = self._clock()
        draw = self._rng()

        def write(conn: sqlite3.Connection) -> JobRecord | None:
            attempt = rows.load_attempt(conn, job_id, number)
            job = rows.load_job(conn, job_id)
            if attempt is None or job is None or attempt.state == "finished":
                return None  # already recorded (e.g. seen both live and in the journal)
            rows.update_attempt(
                conn, job_id, number, state="finished", result=outcome.result,
                exit_code=outcome.exit_code, signal=outcome.signal, outcome_source=outcome.source,
                finished_at=now, invocation_id=outcome.invocation_id or attempt.invocation_id,
            )  # fmt: skip
            if job.attempts != number or JobState(job.state) in FINISHED_STATES:
                return None
            plan = RunPlan.model_validate_json(job.plan)
            verdict = judge(outcome, cancel_requested=job.cancel_requested)
            summary = {"result": outcome.result, "exit_code": outcome.exit_code,
                       "signal": outcome.signal}  # fmt: skip
            if not job.cancel_requested and should_retry(outcome, verdict, plan.retry, number):
                delay = backoff_delay(plan.retry, number, draw)
                reason = f"attempt {number} {verdict.reason}; retrying in {delay:.1f}s"
                rows.update_attempt(conn, job_id, number, retry_reason=reason)
                rows.insert_event(
                    conn, job_id, now, JobState.WAITING_RETRY, attempt=number, detail=reason
                )
                return rows.update_job(
                    conn, job_id, state=JobState.WAITING_RETRY, next_attempt_at=now + delay,
                    updated_at=now, **summary,
                )  # fmt: skip
            rows.insert_event(
                conn, job_id, now, verdict.state, attempt=number, detail=verdict.reason
            )
            updated = rows.update_job(conn, job_id, **summary)
            return _finish(conn, updated, verdict.state, now)

        job = await self._store.write(write)
        self._release(job_id)
        if job is None:
            return
        extra = job_log_fields(job)
        if job.state == JobState.WAITING_RETRY:
            log.info("job %s: %s", job.id, "waiting to retry", extra=extra)
            self._arm(job)
        else:
            self._unfinished -= 1
            log.info("job %s %s (%s)", job.id, job.state, outcome.result, extra=extra)
        if outcome.result != "success":
            # Failed units stay loaded for inspection until reset; the record now holds it all.
            self._spawn(self._systemd.reset_failed(outcome.unit))

    # --- retry timers ----------------------------------------------------------------------

    def _arm(self, job: JobRecord) -> None:
        assert job.next_attempt_at is not None
        self._disarm(job.id)
        delay = max(0.0, job.next_attempt_at - self._clock())
        loop = asyncio.get_running_loop()
        self._timers[job.id] = loop.call_later(delay, lambda: self._spawn(self._requeue(job.id)))

    def _disarm(self, job_id: str) -> None:
        timer = self._timers.pop(job_id, None)
        if timer is not None:
            timer.cancel()

    async def _requeue(self, job_id: str) -> None:
        self._timers.pop(job_id, None)
        now = self._clock()

        def write(conn: sqlite3.Connection) -> bool:
            job = rows.load_job(conn, job_id)
            if job is None or job.state != JobState.WAITING_RETRY:
                return False
            rows.update_job(
                conn, job_id, state=JobState.QUEUED, next_attempt_at=None, updated_at=now
            )
            rows.insert_event(
                conn, job_id, now, JobState.QUEUED, detail=f"attempt {job.attempts + 1} due"
            )
            return True

        if await self._store.write(write):
            self._wake.set()

    # --- reconciliation after a restart or a lost bus --------------------------------------

    def _schedule_reconcile(self) -> None:
        loop = asyncio.get_running_loop()
        loop.call_later(_RECONCILE_RETRY_SECONDS, lambda: self._spawn(self._reconcile()))

    async def _reconcile(self) -> None:
        """Match unfinished jobs against what systemd and journald say happened."""
        try:
            loaded = set(await self._systemd.adopt())
        except SystemdUnavailable as exc:
            log.warning("reconcile: systemd unreachable (%s); trying again shortly", exc)
            self._schedule_reconcile()
            return
        for job in await rows.unfinished_jobs(self._store):
            state = JobState(job.state)
            if state == JobState.WAITING_RETRY:
                self._arm(job)
            elif state in _ACTIVE:
                await self._reconcile_active(job, loaded)
        if not self.reconciled.is_set():
            log.info(
                "reconciled: %d jobs running, %d unfinished", len(self._active), self._unfinished
            )
        self.reconciled.set()
        self._wake.set()

    async def _reconcile_active(self, job: JobRecord, loaded: set[str]) -> None:
        attempt = await rows.current_attempt(self._store, job)
        unit = attempt.unit if attempt else unit_name(job.definition, job.id, job.attempts)
        plan_concurrency = RunPlan.model_validate_json(job.plan).concurrency
        if unit in loaded:
            # Still loaded: systemd.adopt() follows it and reports its outcome.
            self._active[job.id] = _Active(job.definition, unit, plan_concurrency)
            return
        outcome = await self._systemd.outcome_from_journal(
            unit, attempt.invocation_id if attempt else None
        )
        if outcome is not None:
            self._active[job.id] = _Active(job.definition, unit, plan_concurrency)
            await self._record_finished(job.id, job.attempts, replace(outcome, unit=unit))
        elif job.state == JobState.STARTING:
            await self._requeue_unstarted(job, unit)
        else:
            await self._mark_unknown(job, unit)

    async def _requeue_unstarted(self, job: JobRecord, unit: str) -> None:
        """The unit never reached systemd (no unit, no journal entry): start it again."""
        now = self._clock()

        def write(conn: sqlite3.Connection) -> None:
            rows.delete_attempt(conn, job.id, job.attempts)
            rows.update_job(
                conn, job.id, state=JobState.QUEUED, attempts=job.attempts - 1, updated_at=now
            )
            rows.insert_event(conn, job.id, now, JobState.QUEUED,
                              detail=f"{unit} never started; queued again")  # fmt: skip

        await self._store.write(write)
        self._active.pop(job.id, None)

    async def _mark_unknown(self, job: JobRecord, unit: str) -> None:
        now = self._clock()
        reason = f"{unit} is gone and the journal holds no outcome for it"

        def write(conn: sqlite3.Connection) -> None:
            rows.update_attempt(conn, job.id, job.attempts, state="unknown", finished_at=now)
            rows.insert_event(
                conn, job.id, now, JobState.UNKNOWN, attempt=job.attempts, detail=reason
            )
            _finish(conn, job, JobState.UNKNOWN, now)

        await self._store.write(write)
        self._active.pop(job.id, None)
        self._unfinished -= 1
        log.warning("job %s: outcome unknown: %s", job.id, reason, extra=job_log_fields(job))


def _owned(job: JobRecord | None, job_id: str, owner: int | None) -> JobRecord:
    """The job, if it exists for this caller: another user's job reads as not found, so
    its existence does not leak."""
    if job is None or (owner is not None and job.caller_uid != owner):
        raise JobNotFound(data={"id": job_id})
    return job


def new_job_record(
    definition: Definition,
    values: Mapping[str, ParamValue],
    caller: Caller,
    idempotency_key: str | None,
    now: float,
    *,
    traceparent: str | None = None,
) -> JobRecord:
    """A just-submitted job: queued, with its plan frozen and secret values masked."""
    plan = make_plan(definition, values)
    return JobRecord(
        id=new_job_id(),
        definition=definition.name,
        params=redact(definition, values),
        plan=plan.model_dump_json(),
        state=JobState.QUEUED,
        caller_uid=caller.uid,
        caller_pid=caller.pid,
        idempotency_key=idempotency_key,
        created_at=now,
        updated_at=now,
        attempts=0,
        max_attempts=plan.retry.max_attempts,
        next_attempt_at=None,
        cancel_requested=False,
        result=None,
        exit_code=None,
        signal=None,
        finished_at=None,
        traceparent=traceparent,
    )


def job_log_fields(job: JobRecord) -> dict[str, str]:
    """Journal fields of automd's lines about a job: `journalctl AUTOMD_JOB_ID=...` (or
    AUTOMD_TRACE_ID=...) finds them beside the job's own output."""
    fields = {"AUTOMD_JOB_ID": job.id, "AUTOMD_DEFINITION": job.definition}
    trace = parse_traceparent(job.traceparent)
    if trace is not None:
        fields["AUTOMD_TRACE_ID"] = trace.trace_id
    return fields


def request_fingerprint(definition: str, values: Mapping[str, ParamValue]) -> str:
    """What an idempotency key is bound to: the definition and the validated values."""
    return hashlib.sha256(json.dumps([definition, values], sort_keys=True).encode()).hexdigest()


def _finish(conn: sqlite3.Connection, job: JobRecord, state: JobState, now: float) -> JobRecord:
    return rows.update_job(
        conn, job.id, state=state, finished_at=now, updated_at=now, next_attempt_at=None
    )
