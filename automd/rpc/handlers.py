"""One short handler per JSON-RPC method: call the service, return its result model."""

from __future__ import annotations

from collections.abc import Callable

from automd.api.methods import (
    DefinitionGetParams,
    DefinitionListResult,
    DefinitionView,
    HealthResult,
    JobGetResult,
    JobIdParams,
    JobListParams,
    JobListResult,
    JobResult,
    JobSubmitParams,
    JobSubmitResult,
    NoParams,
    ReloadResult,
    VersionResult,
)
from automd.definitions.registry import DefinitionRegistry
from automd.errors import InvalidParams, UnknownDefinition
from automd.jobs import views
from automd.jobs.queries import JobQueries
from automd.jobs.service import Caller, JobService
from automd.rpc.context import CallContext
from automd.rpc.protocol import Handler
from automd.system import SystemInfo


def _caller(ctx: CallContext) -> Caller:
    # Without kernel credentials (a peer that vanished mid-request) nothing is attributed.
    if ctx.peer is None:
        raise InvalidParams(data={"field": None, "reason": "caller credentials unavailable"})
    return Caller(uid=ctx.peer.uid, pid=ctx.peer.pid)


def build_handlers(
    system: SystemInfo,
    jobs: JobService,
    queries: JobQueries,
    registry: DefinitionRegistry,
    reload: Callable[[], ReloadResult],
) -> dict[str, Handler]:
    async def system_version(params: NoParams, ctx: CallContext) -> VersionResult:
        return await system.version()

    async def system_health(params: NoParams, ctx: CallContext) -> HealthResult:
        return await system.health()

    async def system_reload(params: NoParams, ctx: CallContext) -> ReloadResult:
        return reload()

    async def job_submit(params: JobSubmitParams, ctx: CallContext) -> JobSubmitResult:
        job, replayed = await jobs.submit(
            params.definition, params.params, params.idempotency_key, _caller(ctx)
        )
        return JobSubmitResult(job=views.job_view(job), replayed=replayed)

    async def job_get(params: JobIdParams, ctx: CallContext) -> JobGetResult:
        return await queries.get(params.id)

    async def job_list(params: JobListParams, ctx: CallContext) -> JobListResult:
        return await queries.list(params)

    async def job_cancel(params: JobIdParams, ctx: CallContext) -> JobResult:
        return JobResult(job=views.job_view(await jobs.cancel(params.id)))

    async def job_retry(params: JobIdParams, ctx: CallContext) -> JobResult:
        return JobResult(job=views.job_view(await jobs.retry(params.id)))

    async def definition_list(params: NoParams, ctx: CallContext) -> DefinitionListResult:
        return DefinitionListResult(
            definitions=[views.definition_summary(d) for d in registry.definitions.values()],
            errors=[views.definition_error_view(e) for e in registry.errors],
        )

    async def definition_get(params: DefinitionGetParams, ctx: CallContext) -> DefinitionView:
        definition = registry.get(params.name)
        if definition is None:
            raise UnknownDefinition(data={"definition": params.name})
        return views.definition_view(definition)

    return {
        "system.version": system_version,
        "system.health": system_health,
        "system.reload": system_reload,
        "job.submit": job_submit,
        "job.get": job_get,
        "job.list": job_list,
        "job.cancel": job_cancel,
        "job.retry": job_retry,
        "definition.list": definition_list,
        "definition.get": definition_get,
    }
