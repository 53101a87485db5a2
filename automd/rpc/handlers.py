"""One short handler per JSON-RPC method: authorize, call the service, return its result."""

from __future__ import annotations

from automd.api.methods import HealthResult, NoParams, VersionResult
from automd.rpc.context import CallContext
from automd.rpc.protocol import Handler
from automd.system import SystemInfo


def build_handlers(system: SystemInfo) -> dict[str, Handler]:
    async def system_version(params: NoParams, ctx: CallContext) -> VersionResult:
        return await system.version()

    async def system_health(params: NoParams, ctx: CallContext) -> HealthResult:
        return await system.health()

    return {"system.version": system_version, "system.health": system_health}
