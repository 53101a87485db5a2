"""What every method's params and result models share: their base classes, and the
timestamps callers send.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, TypedDict

from pydantic import AfterValidator, BaseModel, ConfigDict


class AuditNames(TypedDict, total=False):
    """What an audit entry names about a call, taken from its validated params."""

    definition: str
    job_id: str
    idempotency_key: str


# defer_build (here and in Result): a method's models are built at its first call, or its
# first schema, not when automd starts; a start answers a few methods, not all of them.
# Measured: 12 ms of CPU and 0.5 MiB less at every start (bench/README.md, "Footprint").
class Params(BaseModel):
    """Base of every params model: unknown members are errors, never silently ignored."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    def audit_names(self) -> AuditNames:
        """The job, definition and idempotency key this call is about, for its audit entry:
        names only, never free-form values (job parameters are recorded, masked, by the use
        case that knows which are secret)."""
        return {}


class Result(BaseModel):
    model_config = ConfigDict(frozen=True, defer_build=True)


class NoParams(Params):
    """The method takes no parameters (omit `params`, or send `{}` or `[]`)."""


def _utc_if_naive(value: datetime) -> datetime:
    # A time without an offset (or a bare date) is UTC, like every time automd reports; left
    # naive, datetime.timestamp() would read it as the host's local time, and fail outright for
    # 0001-01-01 (year 0 after the local offset), which surfaced as -32603.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


#: A caller-supplied point in time (RFC 3339); naive values are taken as UTC.
Timestamp = Annotated[datetime, AfterValidator(_utc_if_naive)]
