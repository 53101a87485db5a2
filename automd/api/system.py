"""The models of the system.* methods and rpc.discover: the daemon's version, health, reloads
and API document.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import ConfigDict, Field, JsonValue, RootModel

from automd.api.definitions import DefinitionErrorView
from automd.api.model import Result


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


class ReloadResult(Result):
    definitions: int = Field(description="definitions loaded")
    errors: list[DefinitionErrorView]


class DiscoverResult(RootModel[dict[str, JsonValue]]):
    """The OpenRPC document itself (automd/api/openrpc.py builds it from these models)."""

    model_config = ConfigDict(frozen=True)
