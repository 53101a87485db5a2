"""The schedule.* methods as callers ask for them: who may run a schedule now, what each
firing's audit entry says, and the schedules as shown (their timers read from systemd).

schedule.fire is the timers' own call (admin: the firing service runs as root), checked by the
dispatcher like any admin method; schedule.run_now is a run of the definition, asked of
polkit per definition with the schedule's parameters, exactly as job.submit's run is.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from automd.api.jobs import JobState
from automd.api.methods import Permission
from automd.api.schedules import (
    ScheduleFireParams,
    ScheduleFireResult,
    ScheduleGetResult,
    ScheduleListResult,
    ScheduleParams,
    ScheduleView,
)
from automd.audit import AuditNote
from automd.authz import Authorizer, polkit_details
from automd.definitions.model import Definition
from automd.definitions.registry import DefinitionRegistry
from automd.definitions.schedule import Schedule, unit_base
from automd.errors import AutomdError
from automd.jobs import views
from automd.jobs.plan import redact
from automd.jobs.schedules import Firing, ScheduleService
from automd.jobs.service import Caller, JobService
from automd.jobs.timersync import TimerSync
from automd.peer import PeerCredentials
from automd.store import schedules as schedule_rows
from automd.store.db import Store
from automd.store.jobs import JobRecord
from automd.systemd.manager import Manager
from automd.systemd.timers import Timers, TimerState
from automd.systemd.units import Systemd


def _time(usec: int | None) -> datetime | None:
    return None if usec is None else datetime.fromtimestamp(usec / 1_000_000, UTC)


class ScheduleRequests:
    def __init__(
        self,
        schedules: ScheduleService,
        registry: DefinitionRegistry,
        authz: Authorizer,
        timers: Timers,
        store: Store,
    ) -> None:
        self._schedules = schedules
        self._registry = registry
        self._authz = authz
        self._timers = timers
        self._store = store

    async def fire(
        self, peer: PeerCredentials, params: ScheduleFireParams, audit: AuditNote
    ) -> ScheduleFireResult:
        return await self._fire(peer, params, params.trigger_usec, audit)

    async def run_now(
        self, peer: PeerCredentials, params: ScheduleParams, audit: AuditNote
    ) -> ScheduleFireResult:
        definition = self._registry.get(params.definition)
        shown: dict[str, object] = {}
        secret: frozenset[str] = frozenset()
        if definition is not None:
            secret = frozenset(n for n, spec in definition.parameters.items() if spec.secret)
            shown = next((dict(s.params) for s in definition.schedules
                          if s.name == params.schedule), {})  # fmt: skip
        # Asked before whether the definition or schedule exists is told (as job.submit).
        details = polkit_details(params.definition, shown, secret)
        await self._authz.require(peer, Permission.RUN, definition=definition, details=details)
        return await self._fire(peer, params, None, audit)

    async def _fire(
        self,
        peer: PeerCredentials,
        params: ScheduleParams,
        trigger_usec: int | None,
        audit: AuditNote,
    ) -> ScheduleFireResult:
        audit.name(params.audit_names())
        definition, schedule = self._schedules.find(params.definition, params.schedule)
        audit.params = {"schedule": schedule.name, "trigger_usec": trigger_usec}
        entry = audit.record("ok")  # written in the firing's own transaction
        firing: Firing = await self._schedules.fire(
            definition.name, schedule.name, trigger_usec, Caller(uid=peer.uid, pid=peer.pid),
            audit=entry,
        )  # fmt: skip
        audit.written = replace(
            entry, job_id=firing.job.id if firing.job else None, detail=firing.detail
        )
        return ScheduleFireResult(
            outcome=firing.outcome,
            replayed=firing.replayed,
            job=None if firing.job is None else views.job_view(firing.job),
            detail=firing.detail,
        )

    async def every(self) -> ScheduleListResult:
        last = await schedule_rows.last_jobs(self._store)
        # The timers are read at once, not one round trip after another: a metrics scrape
        # asks for every schedule too.
        found = await asyncio.gather(*(
            self._view(definition, schedule, last.get((definition.name, schedule.name)))
            for definition in self._registry.definitions.values()
            for schedule in definition.schedules
        ))  # fmt: skip
        return ScheduleListResult(schedules=list(found))

    async def metric_rows(self) -> list[tuple[str, str, float | None, str | None]]:
        """(definition, schedule, next elapse, newest job's state) of each schedule."""
        return [
            (s.definition, s.name, None if s.next_elapse is None else s.next_elapse.timestamp(),
             None if s.last_state is None else s.last_state.value)
            for s in (await self.every()).schedules
        ]  # fmt: skip

    async def get(self, params: ScheduleParams) -> ScheduleGetResult:
        definition, schedule = self._schedules.find(params.definition, params.schedule)
        last = await schedule_rows.last_jobs(self._store)
        view = await self._view(definition, schedule, last.get((definition.name, schedule.name)))
        return ScheduleGetResult(schedule=view)

    async def _view(
        self, definition: Definition, schedule: Schedule, last: JobRecord | None
    ) -> ScheduleView:
        timer = f"{unit_base(definition.name, schedule.name)}.timer"
        state: TimerState | None
        try:
            state = await self._timers.state(timer)
        except AutomdError:
            state = None  # systemd unreachable: the schedule is still shown, its timer unknown
        return ScheduleView(
            definition=definition.name,
            name=schedule.name,
            calendar=schedule.calendar,
            params=redact(definition, schedule.params),
            overlap=schedule.overlap.value,
            persistent=schedule.persistent,
            randomized_delay=schedule.randomized_delay,
            enabled=schedule.enabled,
            timer=timer,
            timer_state=None if state is None else state.active_state,
            next_elapse=None if state is None else _time(state.next_elapse_usec),
            last_trigger=None if state is None else _time(state.last_trigger_usec),
            last_job=None if last is None else last.id,
            last_state=None if last is None else JobState(last.state),
            last_trigger_at=(
                None if last is None or last.trigger_at is None
                else datetime.fromtimestamp(last.trigger_at, UTC)
            ),
        )  # fmt: skip


@dataclass(frozen=True)
class ScheduleParts:
    """What the daemon needs of schedules: firing, the API's use cases, the timers' sync."""

    service: ScheduleService
    requests: ScheduleRequests
    sync: TimerSync


def schedule_parts(
    store: Store,
    registry: DefinitionRegistry,
    jobs: JobService,
    *,
    systemd: Systemd,
    manager: Manager,
    authz: Authorizer,
) -> ScheduleParts:
    timers = Timers(manager)
    service = ScheduleService(store, registry, jobs, systemd, last_trigger=timers.last_trigger)
    requests = ScheduleRequests(service, registry, authz, timers, store)
    return ScheduleParts(service, requests, TimerSync(timers, registry))
