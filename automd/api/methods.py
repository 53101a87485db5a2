"""The JSON-RPC methods: names, pydantic params/result models, and one-line summaries.

These models are the single source for request validation, the published schema and the docs.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field


class Params(BaseModel):
    """Base of every params model: unknown members are errors, never silently ignored."""

    model_config = ConfigDict(frozen=True, extra="forbid")


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
        description='One entry per dependency: "store" (SQLite state) and "dbus" (systemd).'
    )


@dataclass(frozen=True)
class MethodSpec:
    name: str
    params: type[Params]
    result: type[Result]
    summary: str


METHODS: dict[str, MethodSpec] = {
    spec.name: spec
    for spec in (
        MethodSpec(
            "system.version",
            NoParams,
            VersionResult,
            "automd's version, the API version, and systemd's version when reachable.",
        ),
        MethodSpec(
            "system.health",
            NoParams,
            HealthResult,
            "Whether the state store and systemd's D-Bus API answer, and the daemon's uptime.",
        ),
    )
}
