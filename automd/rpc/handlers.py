"""One short handler per JSON-RPC method: call the service, return its result model.

The dispatcher has authenticated the caller, checked the method's permission and validated
the params before a handler runs, and records the audit entry of every mutating call
(rpc/guard.py); what needs a definition or a job is decided by the use case (jobs/requests.py).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from automd.api.audit import AuditListParams, AuditListResult
from automd.api.definitions import (
    DefinitionGetParams,
    DefinitionHistoryResult,
    DefinitionListResult,
    DefinitionParams,
    DefinitionRollbackParams,
    DefinitionRollbackResult,
    DefinitionView,
)
from automd.api.jobs import (
    JobGetResult,
    JobIdParams,
    JobListParams,
    JobListResult,
    JobLogsParams,
    JobLogsResult,
    JobResult,
    JobRetryParams,
    JobSubmitParams,
    JobSubmitResult,
)
from automd.api.model import NoParams
from automd.api.openrpc import build_document
from automd.api.schedules import (
    ScheduleFireParams,
    ScheduleFireResult,
    ScheduleGetResult,
    ScheduleListResult,
    ScheduleParams,
)
from automd.api.system import DiscoverResult, HealthResult, ReloadResult, VersionResult
from automd.audit import AuditLog, AuditNote
from automd.errors import InvalidParams
from automd.jobs.definition_requests import DefinitionRequests
from automd.jobs.output import JobOutput
from automd.jobs.queries import JobQueries
from automd.jobs.requests import JobRequests
from automd.jobs.schedule_requests import ScheduleRequests
from automd.peer import PeerCredentials
from automd.rpc.context import CallContext
from automd.rpc.protocol import Handler, ResultStream
from automd.system import SystemInfo


@dataclass(frozen=True)
class Services:
    system: SystemInfo
    jobs: JobRequests
    queries: JobQueries
    definitions: DefinitionRequests
    reload: Callable[[PeerCredentials], Awaitable[ReloadResult]]
    audit: AuditLog
    output: JobOutput
    schedules: ScheduleRequests


def _caller(ctx: CallContext) -> PeerCredentials:
    assert ctx.peer is not None  # the dispatcher denies callers without credentials
    return ctx.peer


def _note(ctx: CallContext) -> AuditNote:
    assert ctx.audit is not None  # the dispatcher gives every mutating call its entry
    return ctx.audit


class Handlers:
    def __init__(self, services: Services) -> None:
        self.s = services
        self._discovered: DiscoverResult | None = None

    def table(self) -> dict[str, Handler]:
        return {
            "rpc.discover": self.rpc_discover,
            "system.version": self.system_version,
            "system.health": self.system_health,
            "system.reload": self.system_reload,
            "job.submit": self.job_submit,
            "job.get": self.job_get,
            "job.list": self.job_list,
            "job.logs": self.job_logs,
            "job.cancel": self.job_cancel,
            "job.retry": self.job_retry,
            "definition.list": self.definition_list,
            "definition.get": self.definition_get,
            "definition.history": self.definition_history,
            "definition.rollback": self.definition_rollback,
            "audit.list": self.audit_list,
            "schedule.list": self.schedule_list,
            "schedule.get": self.schedule_get,
            "schedule.run_now": self.schedule_run_now,
            "schedule.fire": self.schedule_fire,
        }

    # --- system ------------------------------------------------------------------------------

    async def rpc_discover(self, params: NoParams, ctx: CallContext) -> DiscoverResult:
        if self._discovered is None:  # the API cannot change while automd runs
            self._discovered = DiscoverResult(build_document())
        return self._discovered

    async def system_version(self, params: NoParams, ctx: CallContext) -> VersionResult:
        return await self.s.system.version()

    async def system_health(self, params: NoParams, ctx: CallContext) -> HealthResult:
        return await self.s.system.health()

    async def system_reload(self, params: NoParams, ctx: CallContext) -> ReloadResult:
        return await self.s.reload(_caller(ctx))

    # --- jobs --------------------------------------------------------------------------------

    async def job_submit(self, params: JobSubmitParams, ctx: CallContext) -> JobSubmitResult:
        return await self.s.jobs.submit(_caller(ctx), params, _note(ctx))

    async def job_get(self, params: JobIdParams, ctx: CallContext) -> JobGetResult:
        assert ctx.peer is not None  # as in _caller(), without its call: the hot path
        return await self.s.queries.get(params.id, owner=await self.s.jobs.owner(ctx.peer))

    async def job_list(self, params: JobListParams, ctx: CallContext) -> JobListResult:
        return await self.s.queries.list(params, owner=await self.s.jobs.owner(_caller(ctx)))

    async def job_logs(
        self, params: JobLogsParams, ctx: CallContext
    ) -> JobLogsResult | ResultStream:
        await self.s.jobs.visible(_caller(ctx), params.id)
        if not params.follow:
            return await self.s.output.page(params)
        if not ctx.streaming:
            reason = "follow cannot be used in a batch or a notification"
            raise InvalidParams(data={"field": "follow", "reason": reason})
        follow = self.s.output.follow(params)
        return ResultStream("job.logs.entries", follow.parts(), follow.result)

    async def job_cancel(self, params: JobIdParams, ctx: CallContext) -> JobResult:
        return await self.s.jobs.cancel(_caller(ctx), params.id)

    async def job_retry(self, params: JobRetryParams, ctx: CallContext) -> JobResult:
        current = params.revision == "current"
        return await self.s.jobs.retry(_caller(ctx), params.id, _note(ctx), current=current)

    # --- definitions and audit -------------------------------------------------------------

    async def definition_list(self, params: NoParams, ctx: CallContext) -> DefinitionListResult:
        return self.s.definitions.list()

    async def definition_get(self, params: DefinitionGetParams, ctx: CallContext) -> DefinitionView:
        return await self.s.definitions.get(params.name, params.revision)

    async def definition_history(
        self, params: DefinitionParams, ctx: CallContext
    ) -> DefinitionHistoryResult:
        return await self.s.definitions.history(params.name)

    async def definition_rollback(
        self, params: DefinitionRollbackParams, ctx: CallContext
    ) -> DefinitionRollbackResult:
        return await self.s.definitions.rollback(_caller(ctx), params.name, params.revision)

    async def audit_list(self, params: AuditListParams, ctx: CallContext) -> AuditListResult:
        return await self.s.audit.list(params)

    # --- schedules ---------------------------------------------------------------------------

    async def schedule_list(self, params: NoParams, ctx: CallContext) -> ScheduleListResult:
        return await self.s.schedules.every()

    async def schedule_get(self, params: ScheduleParams, ctx: CallContext) -> ScheduleGetResult:
        return await self.s.schedules.get(params)

    async def schedule_run_now(
        self, params: ScheduleParams, ctx: CallContext
    ) -> ScheduleFireResult:
        return await self.s.schedules.run_now(_caller(ctx), params, _note(ctx))

    async def schedule_fire(
        self, params: ScheduleFireParams, ctx: CallContext
    ) -> ScheduleFireResult:
        return await self.s.schedules.fire(_caller(ctx), params, _note(ctx))
