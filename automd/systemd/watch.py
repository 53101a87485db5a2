"""Per-unit completion tracking: folds systemd's property changes into started/finished events."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from automd.systemd.outcome import NEVER_RAN_PREFIX, ExitCode, UnitOutcome, classify

RUNNING_STATES = frozenset({"activating", "active", "deactivating", "reloading"})
TERMINAL_STATES = frozenset({"inactive", "failed"})


@dataclass
class Transition:
    """What one change means for the job service: report a start, a finish, or both."""

    started: str | None = None  # the invocation id to report as started
    finished: bool = False


@dataclass
class UnitTracker:
    """What automd knows about one unit invocation it started or adopted.

    A unit has finished when its ActiveState is inactive/failed after it ran: after a
    running state was seen, or once its main process exited (ExecMainCode set; systemd sends
    the Service change before the Unit one). The load-time "inactive" must not count, and it
    already carries the InvocationID, so an InvocationID is no evidence of having run.
    """

    unit: str
    path: str
    invocation_id: str | None = None
    active_state: str | None = None
    ran: bool = False
    result: str | None = None
    exec_main_code: int = ExitCode.NOT_EXITED
    exec_main_status: int = 0
    start_job: str | None = None
    start_job_done: bool = False
    # JobRemoved's result for the start job ("done", "canceled", "failed"...), if seen.
    start_job_result: str | None = None
    # StartTransientUnit sent (or waiting to be) and not answered: "not loaded" means nothing.
    start_pending: bool = False
    started_reported: bool = False
    finished: bool = False
    delivered: bool = False
    lookup_running: bool = False
    lookup_again: bool = False

    def apply_unit(self, props: Mapping[str, Any]) -> Transition:
        """Fold in org.freedesktop.systemd1.Unit values (a PropertiesChanged or a GetAll)."""
        transition = Transition()
        if self.finished:
            return transition
        raw_id = props.get("InvocationID")
        if raw_id:
            self.invocation_id = bytes(raw_id).hex()
        state = props.get("ActiveState")
        if state is None:
            return transition
        self.active_state = str(state)
        if self.active_state in RUNNING_STATES:
            self.ran = True
        if self.invocation_id is not None and not self.started_reported and self.ran:
            self.started_reported = True
            transition.started = self.invocation_id
        if self.active_state in TERMINAL_STATES and (self.ran or self.main_process_exited):
            self.finished = True
            transition.finished = True
            if self.invocation_id is not None and not self.started_reported:
                self.started_reported = True
                transition.started = self.invocation_id
        return transition

    def apply_service(self, props: Mapping[str, Any]) -> None:
        """Fold in org.freedesktop.systemd1.Service values; systemd sends these before the
        Unit change that ends the invocation."""
        if self.finished:
            return
        if "Result" in props:
            self.result = str(props["Result"])
        if "ExecMainCode" in props:
            self.exec_main_code = int(props["ExecMainCode"])
        if "ExecMainStatus" in props:
            self.exec_main_status = int(props["ExecMainStatus"])

    @property
    def start_failed(self) -> bool:
        """Whether this process saw the unit's start job end without starting it (a stop
        overtook it, a dependency failed): the unit never ran."""
        return (
            self.start_job_result not in (None, "done")
            and not self.ran
            and not self.main_process_exited
        )

    def never_ran(self, result: object = None) -> UnitOutcome:
        """The end of an invocation whose start failed: systemd's Result when it names why
        (start-limit-hit...), else start-<the start job's result>; never a success."""
        if result in (None, "success"):
            result = NEVER_RAN_PREFIX + str(self.start_job_result)
        return UnitOutcome(self.unit, self.invocation_id, str(result), None, None, "dbus")

    @property
    def main_process_exited(self) -> bool:
        return self.exec_main_code != ExitCode.NOT_EXITED

    @property
    def has_final_values(self) -> bool:
        """Whether Result/ExecMain* can be trusted as this invocation's final values.

        A main process that exited sets ExecMainCode; without that (a unit that never ran a
        process, or values from the load-time signal) they must be read back instead.
        """
        return self.result is not None and self.main_process_exited

    def outcome(self, source: str = "dbus") -> UnitOutcome:
        return classify(
            self.unit,
            self.invocation_id,
            result=self.result or "unknown",
            exec_main_code=self.exec_main_code,
            exec_main_status=self.exec_main_status,
            source=source,
        )


class TrackedUnits:
    """The unit invocations being followed, by name and by object path, and the start slots
    their start jobs hold.

    systemd keeps a bus match per pending job a client asked for over D-Bus and drops off the
    bus beyond ~512 (systemd-facts.md §2): at most `max_starts` start jobs may be pending at
    once. Of those, at most `max_slow_starts` for units whose sandbox protects the kernel:
    their forked children mount over /proc/sys, /sys and more before the job runs, and more
    such set-ups at once than CPUs only slow each other down, while other units start faster
    the more systemd is given at once (docs/systemd.md, "Starts in flight"). A slot is held
    from the start call until the start job is removed.
    """

    def __init__(self, max_starts: int, max_slow_starts: int | None = None) -> None:
        self._start_slots = asyncio.Semaphore(max_starts)
        self._slow_slots = asyncio.Semaphore(max_slow_starts or max_starts)
        self._holding_start_slot: dict[str, bool] = {}  # unit -> holds a slow slot too
        self._by_path: dict[str, UnitTracker] = {}
        self._by_name: dict[str, UnitTracker] = {}

    def __contains__(self, name: str) -> bool:
        return name in self._by_name

    def __len__(self) -> int:
        return len(self._by_name)

    def named(self, name: str) -> UnitTracker | None:
        return self._by_name.get(name)

    def at(self, path: str) -> UnitTracker | None:
        return self._by_path.get(path)

    def all(self) -> list[UnitTracker]:
        return list(self._by_name.values())

    def track(self, name: str, path: str) -> UnitTracker:
        tracker = UnitTracker(unit=name, path=path)
        self._by_name[name] = tracker
        self._by_path[path] = tracker
        return tracker

    async def track_start(self, name: str, path: str, *, slow: bool) -> UnitTracker:
        """Track a unit about to be started, once a start slot (and for a unit slow to set
        up, a slow slot) is free; it holds them until its start job ends."""
        if slow:  # first: a unit waiting for one holds no slot another unit could use
            await self._slow_slots.acquire()
        try:
            await self._start_slots.acquire()
        except BaseException:
            if slow:
                self._slow_slots.release()
            raise
        self._holding_start_slot[name] = slow
        return self.track(name, path)

    def start_job_done(self, tracker: UnitTracker) -> None:
        tracker.start_job_done = True
        slow = self._holding_start_slot.pop(tracker.unit, None)
        if slow is not None:
            self._start_slots.release()
            if slow:
                self._slow_slots.release()

    def forget(self, tracker: UnitTracker) -> None:
        self.start_job_done(tracker)
        if self._by_name.get(tracker.unit) is tracker:
            del self._by_name[tracker.unit]
        if self._by_path.get(tracker.path) is tracker:
            del self._by_path[tracker.path]
