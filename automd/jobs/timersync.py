"""Keeps systemd's schedule timers in line with the loaded definitions.

At start and after every definitions reload: when the units the generator would write now
differ from those it wrote last, systemd is asked to daemon-reload (which re-runs the
generator); then the enabled schedules' timers are started and the timers of schedules removed
or disabled are stopped (after a daemon-reload a unit whose file vanished stays active until
stopped). Job units are untouched: automd keeps following them across the reload.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

from automd.definitions.registry import DefinitionRegistry
from automd.definitions.schedule import UNIT_PREFIX
from automd.errors import AutomdError
from automd.schedule_units import (
    GENERATOR_DIR,
    GENERATOR_NAME,
    automctl_path,
    generator_installed,
    render_units,
    written_units,
)
from automd.systemd.timers import Timers

log = logging.getLogger(__name__)


class TimerSync:
    def __init__(
        self,
        timers: Timers,
        registry: DefinitionRegistry,
        *,
        directory: Path = GENERATOR_DIR,
        installed: Callable[[], bool] = generator_installed,
    ) -> None:
        self._timers = timers
        self._registry = registry
        self._directory = directory
        self._installed = installed
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        #: daemon-reloads asked for since start.
        self.reloads = 0

    def soon(self) -> None:
        """sync() in the background: a daemon-reload can take seconds, and neither readiness
        nor a reload call waits for it."""
        task = asyncio.get_running_loop().create_task(self.sync(), name="automd-timer-sync")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()

    async def sync(self) -> None:
        """One pass; passes never overlap (a reload during one runs after it)."""
        async with self._lock:
            try:
                await self._sync()
            except AutomdError as exc:
                log.error("schedule timers not brought in line: %s", exc.data or exc.message)

    async def _sync(self) -> None:
        wanted = render_units(self._registry.definitions, automctl_path())
        written = written_units(self._directory)
        if not wanted.files and not written.files:
            return  # no schedules, before or now: nothing to ask systemd
        if written != wanted:
            if not self._installed():
                if wanted.files:
                    log.warning("%s is not installed: schedules have no timers", GENERATOR_NAME)
                return
            log.info("schedule units changed: asking systemd to reload")
            await self._timers.daemon_reload()
            self.reloads += 1
            if written_units(self._directory) != wanted:
                log.warning("after the reload, %s wrote other units than automd expects "
                            "(another automd version?)", GENERATOR_NAME)  # fmt: skip
        active = await self._timers.active(f"{UNIT_PREFIX}*.timer")
        for name in sorted(wanted.enabled - active):
            if await self._timers.start(name):
                log.info("schedule timer %s started", name)
        for name in sorted(active - wanted.enabled):
            if await self._timers.stop(name):
                log.info("schedule timer %s stopped (schedule removed or disabled)", name)
