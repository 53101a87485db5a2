"""Jobs as callers ask for them: whose jobs a caller sees, whether they may run a definition
(the one place that asks), and what each mutating call's audit entry says about the job.

The dispatcher has already authenticated the caller, checked the method's permission unless
it is decided per definition, and validated the params (docs/security.md gives the order);
it records the audit entry whatever the outcome. A use case fills in the entry as it learns
the job and its definition, and job.submit writes it in the job's own transaction.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from automd.api.jobs import JobResult, JobSubmitParams, JobSubmitResult
from automd.api.methods import Permission
from automd.audit import AuditNote, capped_params
from automd.authz import Authorizer, polkit_details
from automd.definitions.model import Definition
from automd.definitions.registry import DefinitionRegistry
from automd.errors import JobNotFound, UnknownDefinition
from automd.jobs import views
from automd.jobs.plan import SECRET_PLACEHOLDER
from automd.jobs.service import Caller, JobService
from automd.peer import PeerCredentials
from automd.store.jobs import JobRecord
from automd.trace import current_trace


class JobRequests:
    def __init__(self, jobs: JobService, registry: DefinitionRegistry, authz: Authorizer) -> None:
        self._jobs = jobs
        self._registry = registry
        self._authz = authz

    async def owner(self, peer: PeerCredentials) -> int | None:
        """None when the caller may see and act on every job; else only their own (uid)."""
        return None if await self._authz.allowed(peer, Permission.ADMIN) else peer.uid

    async def visible(self, peer: PeerCredentials, job_id: str) -> tuple[JobRecord, int | None]:
        """The job and the caller's owner scope; others' jobs read as not found (1002)."""
        owner = await self.owner(peer)
        job = await self._jobs.get(job_id)
        if owner is not None and job.caller_uid != owner:
            raise JobNotFound(data={"id": job_id})
        return job, owner

    async def submit(
        self, peer: PeerCredentials, params: JobSubmitParams, audit: AuditNote
    ) -> JobSubmitResult:
        # The revision the job will run (a canary's share): the caller is authorized for it.
        definition = self._registry.choose(params.definition)
        # For a definition that is not loaded, which of the caller's values would be secret
        # is unknown, and secrets never leave automd: its values are neither recorded (all
        # masked) nor shown to polkit (asked by name alone).
        shown = params.params if definition is not None else {}
        secret = definition.secret_names if definition is not None else params.params.keys()
        audit.name(params.audit_names())
        audit.params = capped_params(
            {k: SECRET_PLACEHOLDER if k in secret else v for k, v in params.params.items()}
        )
        await self._authorize_run(peer, params.definition, definition, shown)
        # The job's trace: the one named in params, else the request's (header or new).
        trace = current_trace()
        traceparent = params.traceparent or (trace.traceparent if trace else None)
        # The entry is written in the job's own transaction: one commit per submit.
        entry = audit.record("ok")
        job, replayed = await self._jobs.submit(
            params.definition, params.params, params.idempotency_key,
            Caller(uid=peer.uid, pid=peer.pid), traceparent=traceparent, audit=entry,
            revision=definition,
        )  # fmt: skip
        audit.job_id = job.id
        audit.written = audit.record("ok")  # as written, naming its job
        return JobSubmitResult(job=views.job_view(job), replayed=replayed)

    async def cancel(self, peer: PeerCredentials, job_id: str) -> JobResult:
        job = await self._jobs.cancel(job_id, owner=await self.owner(peer))
        return JobResult(job=views.job_view(job))

    async def retry(
        self, peer: PeerCredentials, job_id: str, audit: AuditNote, *, current: bool = False
    ) -> JobResult:
        """`current`: run the definition's active revision rather than the job's own."""
        job, owner = await self.visible(peer, job_id)
        audit.definition = job.definition
        active = self._registry.get(job.definition)
        # A job's stored params have their secret values masked already.
        await self._authorize_run(peer, job.definition, active, job.params)
        if current and active is None:
            raise UnknownDefinition(data={"definition": job.definition})
        retried = await self._jobs.retry(job_id, owner=owner, current=active if current else None)
        return JobResult(job=views.job_view(retried))

    async def _authorize_run(
        self,
        peer: PeerCredentials,
        name: str,
        definition: Definition | None,
        params: Mapping[str, Any],
    ) -> None:
        """The per-definition permission, for every method that runs a job: the definition's
        allowed users and groups, and polkit's org.automd.run with the definition and its
        parameters as details (secret ones left out). It is asked for a definition that is not
        loaded too (`definition` None), so that a caller who may not run it is denied (1007)
        before learning whether it exists (1001)."""
        secret = frozenset() if definition is None else definition.secret_names
        details = polkit_details(name, params, secret)
        await self._authz.require(peer, Permission.RUN, definition=definition, details=details)
