"""The models of the job.* methods: jobs, their states, attempts, events and output."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import Field, JsonValue, StrictBool, StrictInt

from automd.api.definitions import DefinitionName
from automd.api.model import AuditNames, Params, Result, Timestamp

#: A W3C traceparent, version 00 (https://www.w3.org/TR/trace-context/).
TRACEPARENT_PATTERN = r"^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$"

JobId = Annotated[str, Field(pattern=r"^[0-9a-z]{26}$", description="a job id (26 characters)")]
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
    caller_uid: int = Field(description="uid of the process that submitted the job")
    result: str | None = Field(description="systemd's Result of the last attempt")
    exit_code: int | None
    signal: int | None
    outcome: str | None = Field(
        None,
        description="once finished, how the job ended in automd's words, e.g. \"exited with "
        'status 3", "cancelled (stopped with SIGTERM)" (systemd reports a stop as success)',
    )
    unit: str | None = Field(description="transient unit of the current or last attempt")
    idempotency_key: str | None
    traceparent: str | None = Field(
        description="W3C traceparent of the submit; its trace id is AUTOMD_TRACE_ID in the "
        "journal and in the job's TRACEPARENT"
    )
    schedule: str | None = Field(
        None, description="the definition's schedule whose firing created the job"
    )
    trigger_at: datetime | None = Field(None, description="that firing's trigger time")
    revision: int | None = Field(
        None,
        description="the definition's revision the job runs (definition.history); null for "
        "jobs recorded before automd 0.8",
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
    revision: int | None = Field(None, description="the definition's revision it ran")


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


class JobRetryParams(JobIdParams):
    revision: Literal["submitted", "current"] = Field(
        "submitted",
        description="submitted: run the revision the job was submitted with (what was "
        "reviewed when it was asked for); current: the definition's active revision, the "
        "job's params checked again (refused for jobs with secret params, which are not kept)",
    )


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
    schedule: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")] | None = Field(
        None, description="only jobs created by firings of this schedule (with definition)"
    )
    since: Timestamp | None = Field(None, description="created at or after (RFC 3339)")
    until: Timestamp | None = Field(None, description="created before (RFC 3339)")
    # StrictInt: "5", 5.0 and true are not integers (pydantic's lax mode would take them).
    caller_uid: StrictInt | None = Field(
        None,
        ge=0,
        le=2**32 - 2,
        description="only jobs submitted by this uid (a caller who may not see everyone's "
        "jobs sees only their own either way)",
    )
    limit: StrictInt = Field(50, ge=1, le=500)
    cursor: str | None = Field(None, max_length=64, description="next_cursor of the last page")


class JobListResult(Result):
    jobs: list[JobView] = Field(description="newest first")
    next_cursor: str | None = Field(description="pass as cursor for the next page; null at end")


class JobResult(Result):
    job: JobView
