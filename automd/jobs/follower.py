"""From a unit's start and end (reported by automd.systemd) to the job's recorded state."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable

from automd.jobs.logfields import job_log_fields
from automd.jobs.plan import RunPlan, parse_unit_name
from automd.jobs.policy import backoff_delay, judge, should_retry
from automd.jobs.states import FINISHED_STATES, AttemptState, JobState, move
from automd.jobs.tasks import TaskSet
from automd.jobs.timers import RetryTimers
from automd.store import jobs as rows
from automd.store.db import Store
from automd.store.jobs import JobRecord
from automd.systemd.events import UnitEventStream, UnitFinished, UnitStarted
from automd.systemd.units import Systemd, UnitOutcome

log = logging.getLogger(__name__)


class UnitFollower:
    """Records each attempt's start and outcome; decides retry or final state on the outcome."""

    def __init__(
        self,
        store: Store,
        systemd: Systemd,
        timers: RetryTimers,
        clock: Callable[[], float],
        rng: Callable[[], float],
        *,
        recorded: Callable[[], None],
    ) -> None:
        self._store = store
        self._systemd = systemd
        self._timers = timers
        self._clock = clock
        self._rng = rng
        self._recorded = recorded
        self._recording: set[str] = set()  # jobs whose outcome is being written
        #: Told of each job its outcome finished, once committed (a canary's judge).
        self.on_final: Callable[[JobRecord], object] = lambda job: None
        self._tasks = TaskSet()

    async def follow(self, events: UnitEventStream) -> None:
        """Record what systemd publishes about automd's units, for as long as automd runs."""
        async for event in events:
            # No await between taking an event and acting on it (UnitEventStream.holds).
            try:
                if isinstance(event, UnitStarted):
                    self.unit_started(event.unit, event.invocation_id)
                elif isinstance(event, UnitFinished):
                    self.unit_finished(event.outcome)
            except Exception:
                log.exception("recording %s failed", event)

    def unit_started(self, unit: str, invocation_id: str) -> None:
        parsed = parse_unit_name(unit)
        if parsed is not None:
            self._tasks.spawn(self._record_started(*parsed, invocation_id))

    def unit_finished(self, outcome: UnitOutcome) -> None:
        parsed = parse_unit_name(outcome.unit)
        if parsed is not None:
            self._recording.add(parsed[0])
            self._tasks.spawn(self.record_finished(*parsed, outcome))

    def is_recording(self, job_id: str) -> bool:
        return job_id in self._recording

    async def stop(self) -> None:
        await self._tasks.cancel_all()

    async def _record_started(self, job_id: str, number: int, invocation_id: str) -> None:
        now = self._clock()

        def write(conn: sqlite3.Connection) -> None:
            attempt = rows.load_attempt(conn, job_id, number)
            if attempt is None or attempt.state != AttemptState.STARTING:
                return
            rows.update_attempt(
                conn, job_id, number, state=AttemptState.RUNNING, invocation_id=invocation_id
            )
            job = rows.load_job(conn, job_id)
            if job is not None and job.state == JobState.STARTING and job.attempts == number:
                move(conn, job, JobState.RUNNING, now, attempt=number,
                     detail=f"invocation {invocation_id}")  # fmt: skip

        await self._store.write(write)

    async def record_finished(self, job_id: str, number: int, outcome: UnitOutcome) -> None:
        """Record attempt `number`'s outcome once (later reports of it change nothing)."""
        now = self._clock()
        draw = self._rng()
        try:
            job = await self._store.write(
                lambda conn: _record_outcome(conn, job_id, number, outcome, now=now, draw=draw)
            )
        finally:
            self._recording.discard(job_id)
        self._recorded()  # the job's slot is free in the store: a round may use it
        if job is None:
            return
        extra = job_log_fields(job)
        if job.state == JobState.WAITING_RETRY:
            log.info("job %s: %s", job.id, "waiting to retry", extra=extra)
            self._timers.arm(job)
        else:
            log.info("job %s %s (%s)", job.id, job.state, outcome.result, extra=extra)
            self.on_final(job)
        if outcome.result != "success":
            # Failed units stay loaded for inspection until reset; the record now holds it all.
            self._tasks.spawn(self._systemd.reset_failed(outcome.unit))


def _record_outcome(
    conn: sqlite3.Connection,
    job_id: str,
    number: int,
    outcome: UnitOutcome,
    *,
    now: float,
    draw: float,
) -> JobRecord | None:
    """In the writer's transaction: the attempt's end, then the job's retry or final state."""
    attempt = rows.load_attempt(conn, job_id, number)
    job = rows.load_job(conn, job_id)
    if attempt is None or job is None or attempt.state == AttemptState.FINISHED:
        return None  # already recorded (e.g. seen both live and in the journal)
    rows.update_attempt(
        conn, job_id, number, state=AttemptState.FINISHED, result=outcome.result,
        exit_code=outcome.exit_code, signal=outcome.signal, outcome_source=outcome.source,
        finished_at=now, invocation_id=outcome.invocation_id or attempt.invocation_id,
    )  # fmt: skip
    if job.attempts != number or JobState(job.state) in FINISHED_STATES:
        return None
    plan = RunPlan.model_validate_json(job.plan)
    verdict = judge(outcome, cancel_requested=job.cancel_requested)
    summary = {"result": outcome.result, "exit_code": outcome.exit_code, "signal": outcome.signal}
    if not job.cancel_requested and should_retry(outcome, verdict, plan.retry, number):
        delay = backoff_delay(plan.retry, number, draw)
        reason = f"attempt {number} {verdict.reason}; retrying in {delay:.1f}s"
        rows.update_attempt(conn, job_id, number, retry_reason=reason)
        return move(conn, job, JobState.WAITING_RETRY, now, attempt=number, detail=reason,
                    next_attempt_at=now + delay, **summary)  # fmt: skip
    reason = verdict.reason
    if verdict.state == JobState.CANCELLED and job.cancel_reason:
        reason = f"{job.cancel_reason}: {reason}"  # why automd cancelled it (a replace)
    return move(conn, job, verdict.state, now, attempt=number, detail=reason, **summary)
