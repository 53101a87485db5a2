"""One short handler per JSON-RPC method: authorize, call the service, audit, return."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from automd.api.methods import (
    AuditListParams,
    AuditListResult,
    DefinitionGetParams,
    DefinitionListResult,
    DefinitionView,
    DiscoverResult,
    HealthResult,
    JobGetResult,
    JobIdParams,
    JobListParams,
    JobListResult,
    JobLogsParams,
    JobLogsResult,
    JobResult,
    JobSubmitParams,
    JobSubmitResult,
    NoParams,
    Permission,
    ReloadResult,
    VersionResult,
)
from automd.api.openrpc import build_document
from automd.audit import AuditLog
from automd.authz import Authorizer, polkit_details
from automd.definitions.model import Definition
from automd.definitions.registry import DefinitionRegistry
from automd.errors import (
    AutomdError,
    InvalidParams,
    JobNotFound,
    PermissionDenied,
    UnknownDefinition,
)
from automd.jobs import views
from automd.jobs.output import JobOutput
from automd.jobs.plan import SECRET_PLACEHOLDER
from automd.jobs.queries import JobQueries
from automd.jobs.service import Caller, JobService
from automd.rpc.context import CallContext
from automd.rpc.protocol import Handler, ResultStream
from automd.store.audit import AuditRecord
from automd.store.jobs import JobRecord
from automd.system import SystemInfo
from automd.trace import current_trace

T = TypeVar("T")
# Parameters recorded in the audit trail are capped: a denied request may carry anything.
_AUDIT_PARAMS_MAX = 8192


@dataclass(frozen=True)
class AuditFields:
    """What an audit entry says about the request, besides who made it and the outcome."""

    definition: str | None = None
    params: dict[str, Any] | None = None
    idempotency_key: str | None = None
    job_id: str | None = None


def _secret_names(definition: Definition | None) -> frozenset[str]:
    if definition is None:
        return frozenset()
    return frozenset(name for name, spec in definition.parameters.items() if spec.secret)


def _masked(definition: Definition | None, params: Mapping[str, Any]) -> dict[str, Any]:
    secret = _secret_names(definition)
    masked = {k: SECRET_PLACEHOLDER if k in secret else v for k, v in params.items()}
    if len(json.dumps(masked, default=str)) > _AUDIT_PARAMS_MAX:
        return {"_truncated": True}
    return masked


@dataclass(frozen=True)
class Services:
    system: SystemInfo
    jobs: JobService
    queries: JobQueries
    registry: DefinitionRegistry
    reload: Callable[[], ReloadResult]
    authz: Authorizer
    audit: AuditLog
    output: JobOutput


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
            "audit.list": self.audit_list,
        }

    # --- authorization and audit ----------------------------------------------------------

    async def _require(
        self,
        ctx: CallContext,
        method: str,
        permission: Permission,
        *,
        definition: Definition | None = None,
        details: Mapping[str, str] | None = None,
    ) -> None:
        """Authorize, recording a denial in the audit trail."""
        try:
            await self.s.authz.require(ctx.peer, permission, definition=definition, details=details)
        except PermissionDenied as exc:
            name = definition.name if definition else None
            await self._record(ctx, method, "denied", AuditFields(definition=name),
                               detail=exc.data["reason"])  # fmt: skip
            raise

    async def _audited(
        self,
        ctx: CallContext,
        method: str,
        action: Callable[[], Awaitable[T]],
        fields: AuditFields,
        *,
        recorded: bool = False,
    ) -> T:
        """Run a mutating action and record its outcome (denials are recorded by _require).

        `recorded`: the action writes its own "ok" entry (in its own transaction).
        """
        try:
            result = await action()
        except PermissionDenied:
            raise
        except AutomdError as exc:
            await self._record(
                ctx, method, "error", fields, detail=f"{int(exc.code)} {exc.message}"
            )
            raise
        if not recorded:
            await self._record(ctx, method, "ok", fields)
        return result

    async def _record(
        self, ctx: CallContext, method: str, outcome: str, fields: AuditFields, *,
        detail: str | None = None,
    ) -> None:  # fmt: skip
        await self.s.audit.record(self._entry(ctx, method, outcome, fields, detail=detail))

    def _entry(
        self, ctx: CallContext, method: str, outcome: str, fields: AuditFields, *,
        detail: str | None = None,
    ) -> AuditRecord:  # fmt: skip
        return self.s.audit.entry(
            ctx.peer, method, outcome, definition=fields.definition, params=fields.params,
            idempotency_key=fields.idempotency_key, job_id=fields.job_id, detail=detail,
        )  # fmt: skip

    async def _owner(self, ctx: CallContext) -> int | None:
        """None when the caller may see and act on every job; else only their own (uid)."""
        assert ctx.peer is not None  # _require() has denied callers without credentials
        return None if await self.s.authz.allowed(ctx.peer, Permission.ADMIN) else ctx.peer.uid

    async def _visible_job(self, ctx: CallContext, job_id: str) -> tuple[JobRecord, int | None]:
        """The job and the caller's owner scope; others' jobs read as not found."""
        owner = await self._owner(ctx)
        job = await self.s.jobs.get(job_id)
        if owner is not None and job.caller_uid != owner:
            raise JobNotFound(data={"id": job_id})
        return job, owner

    # --- system ------------------------------------------------------------------------------

    async def rpc_discover(self, params: NoParams, ctx: CallContext) -> DiscoverResult:
        await self._require(ctx, "rpc.discover", Permission.READ)
        if self._discovered is None:  # the API cannot change while automd runs
            self._discovered = DiscoverResult(build_document())
        return self._discovered

    async def system_version(self, params: NoParams, ctx: CallContext) -> VersionResult:
        await self._require(ctx, "system.version", Permission.READ)
        return await self.s.system.version()

    async def system_health(self, params: NoParams, ctx: CallContext) -> HealthResult:
        await self._require(ctx, "system.health", Permission.READ)
        return await self.s.system.health()

    async def system_reload(self, params: NoParams, ctx: CallContext) -> ReloadResult:
        await self._require(ctx, "system.reload", Permission.ADMIN)

        async def run() -> ReloadResult:
            return self.s.reload()

        return await self._audited(ctx, "system.reload", run, AuditFields())

    # --- jobs --------------------------------------------------------------------------------

    async def job_submit(self, params: JobSubmitParams, ctx: CallContext) -> JobSubmitResult:
        definition = self.s.registry.get(params.definition)
        fields = AuditFields(
            definition=params.definition,
            params=_masked(definition, params.params),
            idempotency_key=params.idempotency_key,
        )
        if definition is None:
            await self._record(ctx, "job.submit", "error", fields, detail="1001 unknown definition")
            raise UnknownDefinition(data={"definition": params.definition})
        details = polkit_details(definition.name, params.params, _secret_names(definition))
        await self._require(ctx, "job.submit", Permission.RUN, definition=definition,
                            details=details)  # fmt: skip
        assert ctx.peer is not None

        caller = Caller(uid=ctx.peer.uid, pid=ctx.peer.pid)
        # The job's trace: the one named in params, else the request's (header or new).
        trace = current_trace()
        traceparent = params.traceparent or (trace.traceparent if trace else None)
        # The audit entry is written in the job's own transaction: one commit per submit.
        entry = self._entry(ctx, "job.submit", "ok", fields)

        async def run() -> JobSubmitResult:
            job, replayed = await self.s.jobs.submit(
                params.definition, params.params, params.idempotency_key, caller,
                traceparent=traceparent, audit=entry,
            )  # fmt: skip
            self.s.audit.announce(replace(entry, job_id=job.id))
            return JobSubmitResult(job=views.job_view(job), replayed=replayed)

        return await self._audited(ctx, "job.submit", run, fields, recorded=True)

    async def job_get(self, params: JobIdParams, ctx: CallContext) -> JobGetResult:
        await self._require(ctx, "job.get", Permission.READ)
        return await self.s.queries.get(params.id, owner=await self._owner(ctx))

    async def job_list(self, params: JobListParams, ctx: CallContext) -> JobListResult:
        await self._require(ctx, "job.list", Permission.READ)
        return await self.s.queries.list(params, owner=await self._owner(ctx))

    async def job_logs(
        self, params: JobLogsParams, ctx: CallContext
    ) -> JobLogsResult | ResultStream:
        await self._require(ctx, "job.logs", Permission.READ)
        await self._visible_job(ctx, params.id)
        if not params.follow:
            return await self.s.output.page(params)
        if not ctx.streaming:
            reason = "follow cannot be used in a batch or a notification"
            raise InvalidParams(data={"field": "follow", "reason": reason})
        follow = self.s.output.follow(params)
        return ResultStream("job.logs.entries", follow.parts(), follow.result)

    async def job_cancel(self, params: JobIdParams, ctx: CallContext) -> JobResult:
        await self._require(ctx, "job.cancel", Permission.CANCEL)
        owner = await self._owner(ctx)

        async def run() -> JobResult:
            return JobResult(job=views.job_view(await self.s.jobs.cancel(params.id, owner=owner)))

        return await self._audited(ctx, "job.cancel", run, AuditFields(job_id=params.id))

    async def job_retry(self, params: JobIdParams, ctx: CallContext) -> JobResult:
        # The declared permission first; then again with the job's definition and params.
        await self._require(ctx, "job.retry", Permission.RUN)
        job, owner = await self._visible_job(ctx, params.id)
        definition = self.s.registry.get(job.definition)
        details = polkit_details(job.definition, job.params, _secret_names(definition))
        await self._require(ctx, "job.retry", Permission.RUN, definition=definition,
                            details=details)  # fmt: skip

        async def run() -> JobResult:
            return JobResult(job=views.job_view(await self.s.jobs.retry(params.id, owner=owner)))

        fields = AuditFields(definition=job.definition, job_id=params.id)
        return await self._audited(ctx, "job.retry", run, fields)

    # --- definitions and audit -------------------------------------------------------------

    async def definition_list(self, params: NoParams, ctx: CallContext) -> DefinitionListResult:
        await self._require(ctx, "definition.list", Permission.READ)
        registry = self.s.registry
        return DefinitionListResult(
            definitions=[views.definition_summary(d) for d in registry.definitions.values()],
            errors=[views.definition_error_view(e) for e in registry.errors],
        )

    async def definition_get(self, params: DefinitionGetParams, ctx: CallContext) -> DefinitionView:
        await self._require(ctx, "definition.get", Permission.READ)
        definition = self.s.registry.get(params.name)
        if definition is None:
            raise UnknownDefinition(data={"definition": params.name})
        return views.definition_view(definition)

    async def audit_list(self, params: AuditListParams, ctx: CallContext) -> AuditListResult:
        await self._require(ctx, "audit.list", Permission.ADMIN)
        return await self.s.audit.list(params)
