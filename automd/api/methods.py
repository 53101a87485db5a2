"""The JSON-RPC methods: each one's name, pydantic params/result models, permission and
one-line summary. The models are by family (jobs.py, definitions.py, system.py, audit.py, on
model.py's base classes); they are the single source for request validation, the published
schema and the docs.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from automd.api import audit, definitions, jobs, schedules, system
from automd.api.model import NoParams, Params, Result


class Permission(StrEnum):
    """What a method needs: the polkit action org.automd.<value> (polkit/org.automd.policy)."""

    READ = "read"
    RUN = "run"
    CANCEL = "cancel"
    ADMIN = "admin"

    @property
    def per_definition(self) -> bool:
        """Asked of polkit with the definition and its parameters as details (docs/polkit.md),
        so only the use case that knows them can ask it; the dispatcher asks the others."""
        return self is Permission.RUN


@dataclass(frozen=True)
class MethodSpec:
    name: str
    params: type[Params]
    result: type[Result | system.DiscoverResult]
    summary: str
    permission: Permission
    #: Changes state: the dispatcher records every call in the audit trail, whatever its
    #: outcome (denials of any method are recorded too).
    mutating: bool = False


_R, _RUN, _C, _A = Permission.READ, Permission.RUN, Permission.CANCEL, Permission.ADMIN

METHODS: dict[str, MethodSpec] = {
    spec.name: spec
    for spec in (
        MethodSpec("system.version", NoParams, system.VersionResult, "automd's version, the "
                   "API version, and systemd's version when reachable.", _R),
        MethodSpec("system.health", NoParams, system.HealthResult, "Whether the store, "
                   "systemd's D-Bus API, the journal and the queue work; the daemon's uptime.",
                   _R),
        MethodSpec("rpc.discover", NoParams, system.DiscoverResult, "This API as an OpenRPC "
                   "1.2 document: every method, its params, result and errors.", _R),
        MethodSpec("system.reload", NoParams, system.ReloadResult, "Re-read the job "
                   "definitions (as SIGHUP does); queued and running jobs are unaffected.", _A,
                   mutating=True),
        MethodSpec("job.submit", jobs.JobSubmitParams, jobs.JobSubmitResult, "Validate and "
                   "durably queue a job; replies after the job is committed to disk.", _RUN,
                   mutating=True),
        MethodSpec("job.get", jobs.JobIdParams, jobs.JobGetResult, "A job with its attempts "
                   "and events.", _R),
        MethodSpec("job.list", jobs.JobListParams, jobs.JobListResult, "Jobs, newest first, "
                   "filtered and paged.", _R),
        MethodSpec("job.logs", jobs.JobLogsParams, jobs.JobLogsResult, "A job's output from "
                   "journald, oldest first, paged by cursor; with follow, streamed until the "
                   "job ends.", _R),
        MethodSpec("job.cancel", jobs.JobIdParams, jobs.JobResult, "Dequeue a waiting job, or "
                   "stop a running one's whole unit.", _C, mutating=True),
        MethodSpec("job.retry", jobs.JobRetryParams, jobs.JobResult, "Queue a new attempt of "
                   "a finished job, of the revision it was submitted with unless asked for "
                   "the current one.", _RUN, mutating=True),
        MethodSpec("definition.list", NoParams, definitions.DefinitionListResult, "The loaded "
                   "job definitions, and the files that failed to load.", _R),
        MethodSpec("definition.get", definitions.DefinitionGetParams,
                   definitions.DefinitionView, "One definition (its active revision, or the "
                   "one asked for), with a JSON Schema of its parameters.", _R),
        MethodSpec("definition.history", definitions.DefinitionParams,
                   definitions.DefinitionHistoryResult, "A definition's revisions, which one "
                   "is active or under canary, and what changed that, newest first.", _R),
        MethodSpec("definition.rollback", definitions.DefinitionRollbackParams,
                   definitions.DefinitionRollbackResult, "Make an earlier revision of a "
                   "definition active again, without editing its file.", _A, mutating=True),
        MethodSpec("schedule.list", NoParams, schedules.ScheduleListResult, "The loaded "
                   "schedules: calendar, next and last elapse of each timer, its last job.", _R),
        MethodSpec("schedule.get", schedules.ScheduleParams, schedules.ScheduleGetResult,
                   "One schedule, as schedule.list shows it.", _R),
        MethodSpec("schedule.run_now", schedules.ScheduleParams, schedules.ScheduleFireResult,
                   "Fire a schedule now, with its parameters and overlap policy.", _RUN,
                   mutating=True),
        MethodSpec("schedule.fire", schedules.ScheduleFireParams, schedules.ScheduleFireResult,
                   "A timer's firing (called by the schedule's service): at most one job per "
                   "trigger time, the overlap policy applied atomically.", _A, mutating=True),
        MethodSpec("audit.list", audit.AuditListParams, audit.AuditListResult, "The audit "
                   "trail: mutating calls and denials, newest first.", _A),
    )
}  # fmt: skip
