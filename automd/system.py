"""The daemon's own facts: its version and the health of what it depends on."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping

from automd import __version__
from automd.api.codes import API_VERSION
from automd.api.system import HealthCheck, HealthResult, HealthStatus, VersionResult
from automd.errors import AutomdError
from automd.store.db import Store
from automd.systemd.manager import Manager

# A health probe must answer quickly even when systemd is wedged.
_PROBE_TIMEOUT = 2.0


#: A further health check: its name in system.health, and how to run it.
Check = Callable[[], Awaitable[HealthCheck]]


def _mb(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


class SystemInfo:
    def __init__(
        self,
        store: Store,
        manager: Manager,
        checks: Mapping[str, Check] | None = None,
        *,
        history: Callable[[], Awaitable[str]] | None = None,
    ) -> None:
        self._store = store
        self._manager = manager
        self._checks = dict(checks or {})
        self._history = history
        self._started = time.monotonic()

    async def systemd_version(self) -> str | None:
        try:
            async with asyncio.timeout(_PROBE_TIMEOUT):
                return await self._manager.version()
        except (AutomdError, TimeoutError):
            return None

    async def version(self) -> VersionResult:
        return VersionResult(
            version=__version__,
            api_version=API_VERSION,
            systemd_version=await self.systemd_version(),
        )

    async def health(self) -> HealthResult:
        names = ["store", "dbus", *self._checks]
        probes = [self._check_store(), self._check_bus(), *(c() for c in self._checks.values())]
        checks = dict(zip(names, await asyncio.gather(*probes), strict=True))
        healthy = all(check.ok for check in checks.values())
        return HealthResult(
            status=HealthStatus.OK if healthy else HealthStatus.DEGRADED,
            uptime_seconds=round(time.monotonic() - self._started, 3),
            checks=checks,
        )

    async def _check_store(self) -> HealthCheck:
        try:
            async with asyncio.timeout(_PROBE_TIMEOUT):
                schema = await self._store.schema_version()
                history = "" if self._history is None else f"; {await self._history()}"
        except (AutomdError, TimeoutError) as exc:
            return HealthCheck(ok=False, detail=f"{self._store.path}: {type(exc).__name__}")
        size, wal = self._store.sizes()
        detail = f"{self._store.path} (schema {schema}), {_mb(size)}, WAL {_mb(wal)}{history}"
        writer = self._store.writer
        if writer.unwritable is not None:
            detail = (
                f"cannot write: {writer.unwritable} in {self._store.path.parent}; new calls "
                f"fail with 1008, {writer.held} job updates wait for space; {detail}"
            )
            return HealthCheck(ok=False, detail=detail)
        return HealthCheck(ok=True, detail=detail)

    async def _check_bus(self) -> HealthCheck:
        version = await self.systemd_version()
        if version is None:
            return HealthCheck(ok=False, detail="systemd D-Bus API not reachable")
        return HealthCheck(ok=True, detail=f"systemd {version} reachable")
