"""The JSON-RPC methods: names, pydantic params/result models, and one-line summaries.

These models are the single source for request validation, the published schema and the docs.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, TypedDict

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    RootModel,
    StrictBool,
    StrictInt,
)


class AuditNames(TypedDict, total=False):
    """What an audit entry names about a call, taken from its validated params."""

    definition: str
    job_id: str
    idempotency_key: str


class Params(BaseModel):
    """Base of every params model: unknown members are errors, never silently ignored."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    def audit_names(self) -> AuditNames:
        """The job, definition and idempotency key this call is about, for its audit entry:
        names only, never free-form values (job parameters are recorded, masked, by the use
        case that knows which are secret)."""
        return {}


class Result(BaseModel):
    model_config = ConfigDict(frozen=True)


class NoParams(Params):
    """The method takes no parameters (omit `params`, or send `{}` or `[]`)."""


class VersionResult(Result):
    version: str = Field(description="automd's own version.")
    api_version: str = Field(description="Version of this JSON-RPC API (see docs/api.md).")
    systemd_version: str | None = Field(
        description="systemd's version as PID 1 reports it, or null when it is not reachable."
    )


class HealthStatus(StrEnum):
    OK = "ok"
    DEGRADED = "degraded"


class HealthCheck(Result):
    ok: bool
    detail: str = Field(description="What was checked and what it found, for humans.")


class HealthResult(Result):
    status: HealthStatus = Field(description='"ok" when every check passes, else "degraded".')
    uptime_seconds: float = Field(description="Seconds since this automd process started.")
    checks: dict[str, HealthCheck] = Field(
        description='One entry per dependency: "store" (SQLite state), "dbus" (systemd), '
        '"journal" (job output can be read) and "queue" (new jobs are accepted).'
    )


def _utc_if_naive(value: datetime) -> datetime:
    # A time without an offset (or a bare date) is UTC, like every time automd reports; left
    # naive, datetime.timestamp() would read it as the host's local time, and fail outright for
    # 0001-01-01 (year 0 after the local offset), which surfaced as -32603.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


#: A caller-supplied point in time (RFC 3339); naive values are taken as UTC.
Timestamp = Annotated[datetime, AfterValidator(_utc_if_naive)]

#: SQLite integers are signed 64-bit; a larger cursor must be -32602, not an OverflowError.
SQLITE_INT_MAX = 2**63 - 1


#: A W3C traceparent, version 00 (https://www.w3.org/TR/trace-context/).
TRACEPARENT_PATTERN = r"^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$"

JobId = Annotated[str, Field(pattern=r"^[0-9a-z]{26}$", description="a job id (26 characters)")]
DefinitionName = Annotated[
    str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$", description="a job definition's name")
]
IdempotencyKey = Annotated[
    str,
    Field(
        min_length=1,
        max_length=128,
        pattern=r"^[\x21-\x7e]+$",
        description="printable ASCII without spaces, at most 128 characters",
    ),
]


class JobState(StrEnum):
    QUEUED = "queued"
    STARTING = "starting"
    RUNNING = "running"
    WAITING_RETRY = "waiting_retry"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"
    UNKNOWN = "unknown"

    @property
    def finished(self) -> bool:
        return self in FINISHED_STATES


FINISHED_STATES = frozenset(
    {JobState.SUCCEEDED, JobState.FAILED, JobState.TIMED_OUT, JobState.CANCELLED, JobState.UNKNOWN}
)
UNFINISHED_STATES = frozenset(JobState) - FINISHED_STATES


class JobView(Result):
    id: str
    definition: str
    state: JobState
    params: dict[str, JsonValue] = Field(description='validated values; secrets as "***"')
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None
    attempts: int = Field(description="attempts started so far")
    max_attempts: int
    next_attempt_at: datetime | None = Field(description="when waiting_retry ends")
    cancel_requested: bool
    result: str | None = Field(description="systemd's Result of the last attempt")
    exit_code: int | None
    signal: int | None
    unit: str | None = Field(description="transient unit of the current or last attempt")
    idempotency_key: str | None
    traceparent: str | None = Field(
        description="W3C traceparent of the submit; its trace id is AUTOMD_TRACE_ID in the "
        "journal and in the job's TRACEPARENT"
    )


class AttemptView(Result):
    number: int
    unit: str
    invocation_id: str | None
    state: str = Field(description="starting, running, finished or unknown")
    result: str | None
    exit_code: int | None
    signal: int | None
    outcome_source: str | None = Field(description='"dbus" or "journal"')
    started_at: datetime
    finished_at: datetime | None
    retry_reason: str | None


class JobEventView(Result):
    at: datetime
    attempt: int | None
    state: str
    detail: str | None


class JobSubmitParams(Params):
    definition: DefinitionName
    params: dict[str, JsonValue] = Field(default_factory=dict)
    idempotency_key: IdempotencyKey | None = Field(
        None,
        description="submit at most once per key (per caller); default: the request's "
        "Idempotency-Key header (docs/api.md)",
    )
    traceparent: str | None = Field(
        None,
        pattern=TRACEPARENT_PATTERN,
        description="W3C traceparent the job belongs to; default: the request's traceparent "
        "header, else a new trace",
    )

    def audit_names(self) -> AuditNames:
        names = AuditNames(definition=self.definition)
        if self.idempotency_key is not None:
            names["idempotency_key"] = self.idempotency_key
        return names


class JobSubmitResult(Result):
    job: JobView
    replayed: bool = Field(description="true when an earlier job with this key was returned")


class JobIdParams(Params):
    id: JobId

    def audit_names(self) -> AuditNames:
        return AuditNames(job_id=self.id)


class JobGetResult(Result):
    job: JobView
    attempts: list[AttemptView]
    events: list[JobEventView]


class JobLogsParams(Params):
    id: JobId
    attempt: StrictInt | None = Field(None, ge=1, le=2**31 - 1, description="only this attempt")
    cursor: str | None = Field(
        None,
        max_length=512,
        pattern=r"^[\x21-\x7e]+$",
        description="continue after this entry: `cursor` of an earlier reply",
    )
    tail: StrictInt | None = Field(
        None, ge=1, le=10_000, description="start with the last N entries (ignored with cursor)"
    )
    limit: StrictInt = Field(500, ge=1, le=5000, description="entries per reply (or per part)")
    follow: StrictBool = Field(
        False,
        description="stream entries as they are written until the job ends (docs/api.md, "
        "Following logs); not allowed in a batch or a notification",
    )

    def audit_names(self) -> AuditNames:
        return AuditNames(job_id=self.id)


class LogEntryView(Result):
    cursor: str = Field(description="journald's cursor of this entry")
    at: datetime = Field(description="when journald received it")
    attempt: int
    priority: int | None = Field(description="syslog priority, 0 (emerg) to 7 (debug)")
    stream: str = Field(
        description='journald transport: "stdout" (the job\'s stdout and stderr, which '
        'journald does not tell apart), "journal", "syslog"'
    )
    message: str = Field(description="the line; bytes that are not UTF-8 are replaced (U+FFFD)")
    message_base64: str | None = Field(
        description="the line's exact bytes, base64, when they are not valid UTF-8; else null"
    )


class JobLogsResult(Result):
    entries: list[LogEntryView] = Field(description="oldest first")
    cursor: str | None = Field(
        description="pass as cursor to continue after the last entry read; null when none was"
    )
    more: bool = Field(description="more entries were available than limit allowed")
    finished: bool = Field(
        description="the job (or the attempt asked for) had finished when this was read; "
        "after a follow, false means the daemon ended the stream early (resume from cursor)"
    )


class JobListParams(Params):
    state: list[JobState] | None = None
    definition: DefinitionName | None = None
    since: Timestamp | None = Field(None, description="created at or after (RFC 3339)")
    until: Timestamp | None = Field(None, description="created before (RFC 3339)")
    # StrictInt: "5", 5.0 and true are not integers (pydantic's lax mode would take them).
    limit: StrictInt = Field(50, ge=1, le=500)
    cursor: str | None = Field(None, max_length=64, description="next_cursor of the last page")


class JobListResult(Result):
    jobs: list[JobView] = Field(description="newest first")
    next_cursor: str | None = Field(description="pass as cursor for the next page; null at end")


class JobResult(Result):
    job: JobView


class DefinitionErrorView(Result):
    file: str
    key: str | None
    reason: str


class DefinitionSummary(Result):
    name: str
    description: str
    parameters: list[str]


class DefinitionListResult(Result):
    definitions: list[DefinitionSummary]
    errors: list[DefinitionErrorView] = Field(description="files that were not loaded, and why")


class DefinitionGetParams(Params):
    name: DefinitionName

    def audit_names(self) -> AuditNames:
        return AuditNames(definition=self.name)


class DefinitionView(Result):
    name: str
    description: str
    executable: str
    argv: list[JsonValue] = Field(description="the template after the executable")
    params_schema: dict[str, Any] = Field(description="JSON Schema of job.submit's params")
    environment: dict[str, str]
    working_directory: str | None
    user: str | None = Field(description="null: a DynamicUser")
    limits: dict[str, JsonValue]
    retry: dict[str, JsonValue]
    concurrency: int | None
    sandbox: dict[str, JsonValue]


class ReloadResult(Result):
    definitions: int = Field(description="definitions loaded")
    errors: list[DefinitionErrorView]


class DiscoverResult(RootModel[dict[str, JsonValue]]):
    """The OpenRPC document itself (automd/api/openrpc.py builds it from these models)."""

    model_config = ConfigDict(frozen=True)


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


class AuditListParams(Params):
    since: Timestamp | None = Field(None, description="at or after (RFC 3339)")
    uid: StrictInt | None = Field(None, ge=0, le=2**32 - 1, description="only this caller")
    method: str | None = Field(None, max_length=64)
    outcome: str | None = Field(None, pattern=r"^(ok|denied|error)$")
    limit: StrictInt = Field(100, ge=1, le=1000)
    cursor: StrictInt | None = Field(
        None, ge=1, le=SQLITE_INT_MAX, description="next_cursor of the last page"
    )


class AuditEntryView(Result):
    id: int
    at: datetime
    uid: int
    gid: int
    pid: int
    process: str | None = Field(description="the caller's command name when it was seen")
    method: str
    definition: str | None
    params: dict[str, JsonValue] | None = Field(description='secret values as "***"')
    idempotency_key: str | None
    job_id: str | None
    outcome: str = Field(description='"ok", "denied" or "error"')
    detail: str | None


class AuditListResult(Result):
    entries: list[AuditEntryView] = Field(description="newest first")
    next_cursor: int | None


@dataclass(frozen=True)
class MethodSpec:
    name: str
    params: type[Params]
    result: type[Result | DiscoverResult]
    summary: str
    permission: Permission
    #: Changes state: the dispatcher records every call in the audit trail, whatever its
    #: outcome (denials of any method are recorded too).
    mutating: bool = False


_R, _RUN, _C, _A = Permission.READ, Permission.RUN, Permission.CANCEL, Permission.ADMIN

METHODS: dict[str, MethodSpec] = {
    spec.name: spec
    for spec in (
        MethodSpec("system.version", NoParams, VersionResult, "automd's version, the API "
                   "version, and systemd's version when reachable.", _R),
        MethodSpec("system.health", NoParams, HealthResult, "Whether the store, systemd's "
                   "D-Bus API, the journal and the queue work; the daemon's uptime.", _R),
        MethodSpec("rpc.discover", NoParams, DiscoverResult, "This API as an OpenRPC 1.2 "
                   "document: every method, its params, result and errors.", _R),
        MethodSpec("system.reload", NoParams, ReloadResult, "Re-read the job definitions (as "
                   "SIGHUP does); queued and running jobs are unaffected.", _A, mutating=True),
        MethodSpec("job.submit", JobSubmitParams, JobSubmitResult, "Validate and durably queue "
                   "a job; replies after the job is committed to disk.", _RUN, mutating=True),
        MethodSpec("job.get", JobIdParams, JobGetResult, "A job with its attempts and events.",
                   _R),
        MethodSpec("job.list", JobListParams, JobListResult, "Jobs, newest first, filtered and "
                   "paged.", _R),
        MethodSpec("job.logs", JobLogsParams, JobLogsResult, "A job's output from journald, "
                   "oldest first, paged by cursor; with follow, streamed until the job ends.",
                   _R),
        MethodSpec("job.cancel", JobIdParams, JobResult, "Dequeue a waiting job, or stop a "
                   "running one's whole unit.", _C, mutating=True),
        MethodSpec("job.retry", JobIdParams, JobResult, "Queue a new attempt of a finished "
                   "job.", _RUN, mutating=True),
        MethodSpec("definition.list", NoParams, DefinitionListResult, "The loaded job "
                   "definitions, and the files that failed to load.", _R),
        MethodSpec("definition.get", DefinitionGetParams, DefinitionView, "One definition, "
                   "with a JSON Schema of its parameters.", _R),
        MethodSpec("audit.list", AuditListParams, AuditListResult, "The audit trail: "
                   "mutating calls and denials, newest first.", _A),
    )
}  # fmt: skip
