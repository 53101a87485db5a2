"""The job use cases (submit, get, cancel, retry) and the parts that carry jobs to their end.

Every state change is decided inside a store write (run by the single writer, in order), so
transitions never race; what must happen outside the store (starting or stopping a unit,
arming a retry timer) happens after that write committed. The parts, one concern each:
dispatcher.py (run slots, starting attempts), follower.py (unit started/finished -> recorded
outcome), timers.py (retries), reconcile.py (after a restart, and the periodic self-check).
"""

from __future__ import annotations

import asyncio
import logging
import random
import sqlite3
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from automd.api.system import HealthCheck
from automd.config import JobsSettings, RetentionSettings
from automd.definitions.model import Definition
from automd.definitions.registry import DefinitionRegistry
from automd.definitions.render import InvalidJobParameter, validate_params
from automd.errors import (
    IdempotencyConflict,
    InvalidJobState,
    InvalidParams,
    JobNotFound,
    QueueFull,
    UnknownDefinition,
)
from automd.jobs.dispatcher import JobCounts, JobDispatcher
from automd.jobs.follower import UnitFollower
from automd.jobs.logfields import job_log_fields
from automd.jobs.plan import RunPlan, unit_name
from automd.jobs.reconcile import Reconciler
from automd.jobs.records import Caller, new_job_record, replanned, request_fingerprint
from automd.jobs.retention import Retention
from automd.jobs.states import FINISHED_STATES, JobState, move
from automd.jobs.timers import RetryTimers
from automd.store import audit as audit_rows
from automd.store import jobs as rows
from automd.store.audit import AuditRecord
from automd.store.db import Store
from automd.store.jobs import JobRecord
from automd.systemd.units import Systemd

log = logging.getLogger(__name__)

__all__ = ["Caller", "JobService", "job_log_fields"]


class JobService:
    def __init__(
        self,
        store: Store,
        registry: DefinitionRegistry,
        systemd: Systemd,
        settings: JobsSettings,
        *,
        retention: RetentionSettings | None = None,
        clock: Callable[[], float] = time.time,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self._store = store
        self._registry = registry
        self._systemd = systemd
        self.settings = settings
        self._clock = clock
        self.timers = RetryTimers(store, clock, requeued=self._woken)
        self.follower = UnitFollower(store, systemd, self.timers, clock, rng, recorded=self._woken)
        # Lambdas bind late: the reconciler is made next, and the daemon sets
        # on_counts_changed after start.
        self.dispatcher = JobDispatcher(
            store, systemd, lambda: self.settings, clock,
            start_rejected=self.follower.unit_finished,
            start_uncertain=lambda: self.reconciler.soon(),  # noqa: PLW0108
            counts_changed=lambda: self.on_counts_changed(),  # noqa: PLW0108
        )  # fmt: skip
        self.reconciler = Reconciler(
            store, systemd, self.dispatcher, self.follower, self.timers, clock=clock
        )
        self.retention = Retention(
            store, retention or RetentionSettings(),
            key_window=lambda: self.settings.idempotency_window_seconds, clock=clock,
        )  # fmt: skip
        self._tasks: list[asyncio.Task[Any]] = []
        #: Called (on the loop) whenever running or unfinished counts may have changed.
        self.on_counts_changed: Callable[[], None] = lambda: None
        #: job.submit calls answered with an earlier job (automd_job_idempotent_replays_total).
        self.replays = 0

    # --- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        done = self.reconciler.done
        self._tasks = [
            asyncio.create_task(self.follower.follow(self._systemd.events), name="automd-follow"),
            asyncio.create_task(self.dispatcher.run(done), name="automd-dispatcher"),
            asyncio.create_task(self.reconciler.reconcile(), name="automd-reconcile"),
            asyncio.create_task(
                self.reconciler.run_self_checks(lambda: self.settings.self_check_seconds),
                name="automd-self-check",
            ),
            asyncio.create_task(self._purge_keys_periodically(), name="automd-purge-keys"),
            asyncio.create_task(self.retention.run(), name="automd-retention"),
        ]

    async def stop(self) -> None:
        """Stop following jobs; their units keep running and are re-adopted on the next start."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for part in (self.reconciler, self.dispatcher, self.follower, self.timers):
            await part.stop()

    def _woken(self) -> None:
        self.dispatcher.wake()

    @property
    def reconciled(self) -> asyncio.Event:
        return self.reconciler.done

    @property
    def counts(self) -> JobCounts:
        """Running and unfinished jobs, as the store counted them (STATUS=, metrics, health)."""
        return self.dispatcher.counts

    @property
    def running_count(self) -> int:
        return self.dispatcher.counts.running

    @property
    def unfinished_count(self) -> int:
        return self.dispatcher.counts.unfinished

    async def queue_health(self) -> HealthCheck:
        """Whether the queue takes new jobs: below jobs.max_unfinished (then 1005 QueueFull)."""
        limit, counts = self.settings.max_unfinished, self.counts
        detail = (
            f"{counts.running} running (max {self.settings.max_running}), "
            f"{counts.waiting} queued or waiting; {counts.unfinished} of {limit} unfinished allowed"
        )
        return HealthCheck(ok=counts.unfinished < limit, detail=detail)

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
        revision: Definition | None = None,
    ) -> tuple[JobRecord, bool]:
        """Durably queue a job (committed and synced before this returns); (job, replayed).

        `audit` is written in the same transaction, naming the job created or the one
        replayed (its job_id): both reach the disk in one commit, or neither does.
        `revision`: the revision of `definition_name` the job runs, if the caller chose it
        (to authorize the caller for it); else the registry chooses (a canary's share).
        """
        definition = revision or self._registry.choose(definition_name)
        if definition is None:
            raise UnknownDefinition(data={"definition": definition_name})
        try:
            values = validate_params(definition, raw_params)
        except InvalidJobParameter as exc:
            raise InvalidParams(data={"field": exc.field, "reason": exc.reason}) from None
        queue_full = self.unfinished_count >= self.settings.max_unfinished
        if queue_full and idempotency_key is None:
            raise QueueFull(data={"max_unfinished_jobs": self.settings.max_unfinished})
        now = self._clock()
        job = new_job_record(
            definition, values, caller, idempotency_key, now, traceparent=traceparent,
            log_rate_limit=(
                self.settings.log_rate_limit_interval_seconds, self.settings.log_rate_limit_burst
            ),
        )  # fmt: skip
        # What a key is bound to (only computed when there is a key to compare).
        key = None
        if idempotency_key is not None:
            fingerprint = request_fingerprint(definition.name, values)
            window_start = now - self.settings.idempotency_window_seconds
            key = _Key(idempotency_key, fingerprint, window_start)
        limit = self.settings.max_unfinished if queue_full else None
        # fail_fast: on a full disk the caller hears so (1008) and nothing was acknowledged.
        record, replayed = await self._store.write(
            lambda conn: _queue(conn, job, key, refuse_new_over=limit, audit=audit),
            fail_fast=True,
        )
        if not replayed:
            self.dispatcher.job_added()
            # debug: a burst of submits must not become a burst of journal writes; the
            # job's start and end are logged at info.
            if log.isEnabledFor(logging.DEBUG):
                log.debug(
                    "job %s queued: %s", record.id, record.definition,
                    extra=job_log_fields(record),
                )  # fmt: skip
        else:
            self.replays += 1
        return record, replayed

    async def get(self, job_id: str) -> JobRecord:
        job = rows.get_job(self._store, job_id)
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
                return move(
                    conn, job, JobState.CANCELLED, now, detail="cancelled before it ran"
                ), None
            # starting/running: record the request first, so the outcome reads "cancelled".
            rows.insert_event(
                conn, job_id, now, state, attempt=job.attempts, detail="cancel requested"
            )
            updated = rows.update_job(conn, job_id, cancel_requested=True, updated_at=now)
            return updated, unit_name(job.definition, job.id, job.attempts)

        job, unit = await self._store.write(write, fail_fast=True)
        if unit is None:
            self.timers.disarm(job_id)
            self.dispatcher.wake()  # recounts
        else:
            # Stops the unit's whole cgroup (KillMode); the outcome arrives as unit_finished.
            await self._systemd.stop_unit(unit)
        return job

    async def retry(
        self, job_id: str, *, owner: int | None = None, current: Definition | None = None
    ) -> JobRecord:
        """Queue a finished job again: its own plan (the revision it was submitted with), or
        with `current`, the job's params planned anew under that revision."""
        now = self._clock()
        log_rate_limit = (
            self.settings.log_rate_limit_interval_seconds, self.settings.log_rate_limit_burst
        )  # fmt: skip

        def write(conn: sqlite3.Connection) -> JobRecord:
            job = _owned(rows.load_job(conn, job_id), job_id, owner)
            if JobState(job.state) not in FINISHED_STATES:
                raise InvalidJobState(data={"id": job_id, "state": job.state, "operation": "retry"})
            changes = {} if current is None else replanned(job, current, log_rate_limit)
            plan = RunPlan.model_validate_json(changes.get("plan", job.plan))
            return move(
                conn, job, JobState.QUEUED, now, detail="retry requested",
                # A fresh budget of automatic retries for the new run.
                max_attempts=job.attempts + plan.retry.max_attempts,
                cancel_requested=False, result=None, exit_code=None, signal=None,
                finished_at=None, next_attempt_at=None, **changes,
            )  # fmt: skip

        job = await self._store.write(write, fail_fast=True)
        self.dispatcher.job_added()
        return job

    async def purge_expired_keys(self) -> int:
        """Delete idempotency keys past their window (already ignored)."""
        cutoff = self._clock() - self.settings.idempotency_window_seconds
        purged = await self._store.write(
            lambda conn: rows.purge_idempotency_keys(conn, cutoff), fail_fast=True
        )
        if purged:
            log.info("purged %d expired idempotency keys", purged)
        return purged

    async def _purge_keys_periodically(self) -> None:
        while True:
            try:
                await self.purge_expired_keys()
            except Exception:
                log.exception("purging idempotency keys failed")
            # A tenth of the window, between a minute and an hour: the table stays small.
            await asyncio.sleep(
                min(max(self.settings.idempotency_window_seconds / 10, 60.0), 3600.0)
            )


@dataclass(frozen=True)
class _Key:
    """A submit's idempotency key: what it is bound to, and since when an earlier use counts."""

    key: str
    fingerprint: str
    window_start: float


def _queue(
    conn: sqlite3.Connection,
    job: JobRecord,
    key: _Key | None,
    *,
    refuse_new_over: int | None,
    audit: AuditRecord | None,
) -> tuple[JobRecord, bool]:
    """In the writer's transaction: the earlier job of the key (replayed), else `job` queued.

    `refuse_new_over`: the queue is full; a replay is still answered, a new job refused.
    `audit` is written with either, naming its job.
    """
    if key is not None:
        found = rows.find_idempotency_key(conn, job.caller_uid, key.key, key.window_start)
        if found is not None:
            earlier_id, earlier_fingerprint = found
            if earlier_fingerprint != key.fingerprint:
                raise IdempotencyConflict(data={"idempotency_key": key.key, "job": earlier_id})
            earlier = rows.load_job(conn, earlier_id)
            assert earlier is not None
            if audit is not None:
                audit_rows.insert(conn, audit, job_id=earlier.id)
            return earlier, True
    if refuse_new_over is not None:
        raise QueueFull(data={"max_unfinished_jobs": refuse_new_over})
    rows.insert_job(conn, job)
    if key is not None:
        rows.put_idempotency_key(
            conn, caller_uid=job.caller_uid, key=key.key, job_id=job.id,
            fingerprint=key.fingerprint, at=job.created_at,
        )  # fmt: skip
    rows.insert_event(
        conn, job.id, job.created_at, JobState.QUEUED, detail=f"submitted by uid {job.caller_uid}"
    )
    if audit is not None:
        audit_rows.insert(conn, audit, job_id=job.id)
    return job, False


def _owned(job: JobRecord | None, job_id: str, owner: int | None) -> JobRecord:
    """The job, if it exists for this caller: another user's job reads as not found, so
    its existence does not leak."""
    if job is None or (owner is not None and job.caller_uid != owner):
        raise JobNotFound(data={"id": job_id})
    return job
