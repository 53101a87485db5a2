"""The models of audit.list: the audit trail's entries as callers see them."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field, JsonValue, StrictInt

from automd.api.model import Params, Result, Timestamp

#: SQLite integers are signed 64-bit; a larger cursor must be -32602, not an OverflowError.
SQLITE_INT_MAX = 2**63 - 1


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
