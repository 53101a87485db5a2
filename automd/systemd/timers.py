"""The schedules' timer units over D-Bus: daemon-reload, starting and stopping them, and what
systemd says of each (next and last elapse).

The units themselves are written by the generator (automd/generator.py); this module only asks
systemd to re-run it and to bring the timers' states in line.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from automd.errors import SystemdRejected
from automd.systemd.bus import UNIT_IFACE
from automd.systemd.manager import JobMode, Manager

log = logging.getLogger(__name__)

TIMER_IFACE = "org.freedesktop.systemd1.Timer"
# systemd's "never" for a usec timestamp: 0 (not yet) or UINT64_MAX (infinity).
_NEVER = (0, 2**64 - 1)


@dataclass(frozen=True)
class TimerState:
    active_state: str
    #: Microseconds since the epoch, None when systemd has none.
    next_elapse_usec: int | None
    last_trigger_usec: int | None


def _usec(value: object) -> int | None:
    return None if not isinstance(value, int) or value in _NEVER else value


class Timers:
    def __init__(self, manager: Manager) -> None:
        self._manager = manager

    async def daemon_reload(self) -> None:
        await self._manager.reload()

    async def active(self, pattern: str) -> set[str]:
        """The timers matching `pattern` that are active (waiting to elapse) or elapsed."""
        units = await self._manager.list_units_by_patterns([], [pattern])
        return {u.name for u in units if u.active_state in ("active", "activating", "reloading")}

    async def start(self, name: str) -> bool:
        try:
            await self._manager.start_unit(name, JobMode.REPLACE)
        except SystemdRejected as exc:
            log.error("starting timer %s failed: %s", name, exc.data["reason"])
            return False
        return True

    async def stop(self, name: str) -> bool:
        try:
            return await self._manager.stop_unit(name, JobMode.REPLACE)
        except SystemdRejected as exc:
            log.error("stopping timer %s failed: %s", name, exc.data["reason"])
            return False

    async def last_trigger(self, name: str) -> int | None:
        """When the timer last elapsed (µs since the epoch), or None (never, or not loaded)."""
        state = await self.state(name)
        return None if state is None else state.last_trigger_usec

    async def state(self, name: str) -> TimerState | None:
        """What systemd says of a loaded timer; None when it is not loaded."""
        unit, timer = await asyncio.gather(
            self._manager.read_properties(name, UNIT_IFACE),
            self._manager.read_properties(name, TIMER_IFACE),
        )
        if unit is None or timer is None or unit.get("LoadState") != "loaded":
            return None
        return TimerState(
            active_state=str(unit.get("ActiveState")),
            next_elapse_usec=_usec(timer.get("NextElapseUSecRealtime")),
            last_trigger_usec=_usec(timer.get("LastTriggerUSec")),
        )
