"""Starts, stops and adopts job units over systemd's Manager API and reports how each one ends."""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Coroutine
from typing import Any

from dbus_fast import Message

from automd.errors import SystemdRejected, SystemdUnavailable, UnitStartRejected
from automd.systemd.bus import SERVICE_IFACE, UNIT_IFACE
from automd.systemd.events import UnitEventStream, UnitFinished, UnitStarted
from automd.systemd.journal import read_outcome
from automd.systemd.manager import (
    JobMode,
    JobRemoved,
    KillWhom,
    Manager,
    PropertiesChanged,
    UnitRemoved,
    UnitSnapshot,
    decode_signal,
)
from automd.systemd.outcome import UnitOutcome, classify
from automd.systemd.spec import (
    UnitSpec,
    check_unit_name,
    unit_object_path,
    unit_properties,
)
from automd.systemd.watch import TERMINAL_STATES, TrackedUnits, Transition, UnitTracker

__all__ = [
    "Systemd",
    "UnitOutcome",
    "UnitSpec",
    "unit_object_path",
    "unit_properties",
]

log = logging.getLogger(__name__)

UNIT_PATTERN = "automd-*.service"

# How long a finished unit's PID-1 journal entries may lag behind its removal from the bus.
_JOURNAL_GRACE_SECONDS = 5.0
# Outcomes already delivered, so that adopt() after a reconnect does not report them twice;
# bounded, because successful units are never reset and would otherwise accumulate.
_DELIVERED_MEMORY = 10_000


class Systemd:
    """automd's view of its job units: start them, follow them by signal, report each end once.

    What it learns is published on `events` (UnitStarted, then one UnitFinished per invocation).
    """

    def __init__(
        self,
        manager: Manager,
        *,
        max_outstanding_starts: int = 128,
        max_slow_starts: int | None = None,
        journal_path: str | None = None,
    ) -> None:
        self._manager = manager
        self._bus = manager.bus
        self.events = UnitEventStream()
        self._journal_path = journal_path
        self._units = TrackedUnits(max_outstanding_starts, max_slow_starts)
        self._delivered: OrderedDict[tuple[str, str | None], None] = OrderedDict()
        self._tasks: set[asyncio.Task[None]] = set()
        self._listening = False
        self._closed = False

    # -- the job service's calls -------------------------------------------------------------

    async def start_unit(self, spec: UnitSpec) -> None:
        """StartTransientUnit in mode "fail"; returns once systemd accepted the start job."""
        if spec.name in self._units:
            raise UnitStartRejected(
                "org.freedesktop.systemd1.UnitExists", f"{spec.name} is still tracked"
            )
        properties = unit_properties(spec)
        await self._listen()
        tracker = await self._units.track_start(
            spec.name, unit_object_path(spec.name), slow=spec.slow_to_set_up
        )
        tracker.start_pending = True
        try:
            job = await self._manager.start_transient_unit(spec.name, JobMode.FAIL, properties)
        except SystemdRejected as exc:
            self._units.forget(tracker)
            raise UnitStartRejected(
                exc.dbus_error, exc.detail, member="StartTransientUnit"
            ) from exc
        except SystemdUnavailable:
            if tracker.started_reported:
                return  # the reply was lost, not the unit: its signals already arrived
            self._units.forget(tracker)
            raise
        except BaseException:
            self._units.forget(tracker)
            raise
        finally:
            tracker.start_pending = False
        if tracker.start_job is None and not tracker.start_job_done:
            tracker.start_job = job

    async def stop_unit(self, name: str) -> None:
        """StopUnit(name, "replace"): SIGTERM to the cgroup per KillMode, SIGKILL on timeout."""
        check_unit_name(name)
        await self._manager.stop_unit(name, JobMode.REPLACE)

    async def kill_unit(self, name: str, signal: int) -> None:
        """KillUnit(name, "all", signal): every process of the unit; a gone unit is a no-op."""
        check_unit_name(name)
        await self._manager.kill_unit(name, KillWhom.ALL, signal)

    async def reset_failed(self, name: str) -> None:
        """ResetFailedUnit: lets systemd unload a failed unit once its outcome is recorded."""
        check_unit_name(name)
        await self._manager.reset_failed_unit(name)

    def following(self, name: str) -> bool:
        """Whether the unit's end will be reported: tracked, or its end not yet consumed.

        The jobs self-check asks this of every job that holds a run slot.
        """
        return name in self._units or self.events.holds(name)

    async def adopt(self) -> list[str]:
        """Track every loaded automd-*.service (after an automd restart) and return the names.

        Units still running report their end later; ones already ended report it now.
        """
        await self._listen()
        units = await self._manager.list_units_by_patterns([], [UNIT_PATTERN])
        names: list[str] = []
        lookups: list[asyncio.Task[None]] = []
        for unit in units:
            # A schedule's firing service (automd-schedule-<def>:<name>.service) is no job:
            # the ':' appears in no job unit's name.
            if ":" in unit.name or not _present(unit.load_state, unit.active_state):
                continue
            names.append(unit.name)
            if unit.name not in self._units:
                lookups.append(self._request_lookup(self._units.track(unit.name, unit.path)))
        await asyncio.gather(*lookups)
        return names

    async def outcome_from_journal(
        self, unit: str, invocation_id: str | None
    ) -> UnitOutcome | None:
        """The outcome PID 1 logged for a unit invocation that is gone from systemd.

        Without an invocation id, the newest invocation of the unit the journal knows of.
        """
        return await asyncio.to_thread(read_outcome, unit, invocation_id, path=self._journal_path)

    async def close(self) -> None:
        self._closed = True
        if self._listening:
            self._bus.remove_signal_listener(self._on_signal, self._on_resync)
            self._listening = False
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    # -- tracking ----------------------------------------------------------------------------

    async def _listen(self) -> None:
        if not self._listening:
            self._bus.add_signal_listener(self._on_signal, self._on_resync)
            self._listening = True
        await self._bus.subscribe()

    def _on_signal(self, message: Message) -> None:
        signal = decode_signal(message)
        if isinstance(signal, PropertiesChanged):
            tracker = self._units.at(signal.path)
            if tracker is None:
                return
            if signal.interface == SERVICE_IFACE:
                tracker.apply_service(signal.changed)
            elif signal.interface == UNIT_IFACE:
                self._apply(tracker, tracker.apply_unit(signal.changed))
        elif isinstance(signal, JobRemoved):
            tracker = self._units.named(signal.unit)
            # The reply to StartTransientUnit may be processed after the JobRemoved of its job,
            # so the first job removed for a unit whose job path is unknown is its start job.
            if tracker is None or tracker.start_job_done:
                return
            if tracker.start_job is not None and tracker.start_job != signal.job:
                return
            tracker.start_job_result = signal.result
            self._units.start_job_done(tracker)
            if signal.result != "done" and not tracker.ran:
                # The start failed and no state change said the unit ran: ask systemd.
                self._request_lookup(tracker)
        elif isinstance(signal, UnitRemoved):
            tracker = self._units.named(signal.unit)
            if tracker is not None and not tracker.delivered:
                self._request_lookup(tracker)

    def _on_resync(self) -> None:
        # Signals were lost (reconnect, or systemd re-registered): any unit may have moved on.
        log.info("resynchronising %d tracked units with systemd", len(self._units))
        for tracker in self._units.all():
            self._request_lookup(tracker)

    def _apply(self, tracker: UnitTracker, transition: Transition) -> None:
        if transition.started is not None:
            self.events.publish(UnitStarted(tracker.unit, transition.started))
        if transition.finished:
            if tracker.has_final_values:
                self._deliver(tracker, tracker.outcome("dbus"))
            else:
                self._request_lookup(tracker)

    def _deliver(self, tracker: UnitTracker, outcome: UnitOutcome, *, ran: bool = True) -> None:
        if tracker.delivered:
            return
        tracker.delivered = True
        tracker.finished = True
        self._units.forget(tracker)
        key = (outcome.unit, outcome.invocation_id)
        if key in self._delivered:
            return
        self._delivered[key] = None
        if len(self._delivered) > _DELIVERED_MEMORY:
            self._delivered.popitem(last=False)
        if ran and not tracker.started_reported and outcome.invocation_id is not None:
            tracker.started_reported = True
            self.events.publish(UnitStarted(outcome.unit, outcome.invocation_id))
        self.events.publish(UnitFinished(outcome))

    # -- reading state back (fallbacks when signals cannot tell) ---------------------------

    def _request_lookup(self, tracker: UnitTracker) -> asyncio.Task[None]:
        if tracker.lookup_running:
            tracker.lookup_again = True
            return self._spawn(_noop())
        tracker.lookup_running = True
        return self._spawn(self._lookup(tracker))

    async def _lookup(self, tracker: UnitTracker) -> None:
        try:
            while not tracker.delivered and not self._closed:
                tracker.lookup_again = False
                try:
                    await self._look_up(tracker)
                except SystemdUnavailable as exc:
                    # Unreachable now: the resync after the reconnect looks again.
                    log.warning("reading %s back failed: %s", tracker.unit, exc.data)
                    return
                except SystemdRejected as exc:
                    # Refused, not unreachable: asking again would be refused again.
                    log.error("reading %s back was refused: %s", tracker.unit, exc.data)
                    return
                if not tracker.lookup_again:
                    return
        finally:
            tracker.lookup_running = False

    async def _look_up(self, tracker: UnitTracker) -> None:
        snapshot = await self._manager.read_unit(tracker.unit)
        if tracker.delivered:
            return
        if snapshot is not None:
            unit_props = snapshot.unit
            raw_id = unit_props.get("InvocationID") or b""
            invocation_id = bytes(raw_id).hex() if raw_id else None
            same_invocation = tracker.invocation_id in (None, invocation_id)
            if (tracker.unit, invocation_id) in self._delivered:
                # Re-adopted after its end was reported (e.g. a failed unit not yet reset).
                tracker.delivered = True
                self._units.forget(tracker)
                return
            present = _present(unit_props.get("LoadState"), unit_props.get("ActiveState"))
            if present and same_invocation:
                self._apply_snapshot(tracker, snapshot)
                return
        if tracker.start_pending:
            # A lookup (a resync) overtook the start call: systemd has not made the unit yet.
            # The call's answer decides; its signals follow on this connection.
            return
        await self._finish_from_journal(tracker)

    def _apply_snapshot(self, tracker: UnitTracker, snapshot: UnitSnapshot) -> None:
        unit_props, service_props = snapshot.unit, snapshot.service
        ran = True
        job_id, _job_path = unit_props.get("Job", (0, "/"))
        if job_id == 0 and not tracker.start_job_done:
            self._units.start_job_done(tracker)
        if not tracker.finished:
            tracker.apply_service(service_props)
            transition = tracker.apply_unit(unit_props)
            if transition.started is not None:
                self.events.publish(UnitStarted(tracker.unit, transition.started))
            never_ran = (
                tracker.start_job_done
                and not tracker.ran
                and tracker.active_state in TERMINAL_STATES
            )
            ran = not never_ran
            if not tracker.finished and not never_ran:
                return  # still running (or not yet started): its signals will finish it
            # never_ran: the start job ended without the unit running (e.g. start-limit-hit,
            # or a cgroup that could not be made): still an end the job service must hear
            # about, but not a start, even when systemd had given it an invocation id.
        result = service_props.get("Result")
        if tracker.start_failed:
            self._deliver(tracker, tracker.never_ran(result), ran=False)
            return
        self._deliver(
            tracker,
            classify(
                tracker.unit,
                tracker.invocation_id,
                result=str(result or "unknown"),
                exec_main_code=int(service_props.get("ExecMainCode", 0)),
                exec_main_status=int(service_props.get("ExecMainStatus", 0)),
                source="dbus",
            ),
            ran=ran,
        )

    async def _finish_from_journal(self, tracker: UnitTracker) -> None:
        outcome = await asyncio.to_thread(
            read_outcome,
            tracker.unit,
            tracker.invocation_id,
            path=self._journal_path,
            wait_seconds=_JOURNAL_GRACE_SECONDS,
        )
        if tracker.delivered:
            return
        if outcome is not None:
            self._deliver(tracker, outcome)
        elif tracker.started_reported:
            log.error("%s is gone and PID 1 logged no outcome for it", tracker.unit)
            self._deliver(
                tracker,
                UnitOutcome(tracker.unit, tracker.invocation_id, "unknown", None, None, "journal"),
            )
        elif tracker.start_failed:
            # Its start job ended before it ran (a stop overtook it), and systemd unloaded
            # it: nothing to log. Still an end, which the job waiting on it must hear of.
            self._deliver(tracker, tracker.never_ran(), ran=False)
        else:
            # Never seen running, not loaded, nothing logged: let go; the job service reads
            # what it can (reconcile) if a job still waits on the unit.
            self._units.forget(tracker)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task


async def _noop() -> None:
    return None


def _present(load_state: object, active_state: object) -> bool:
    """Whether systemd still holds an invocation of the unit to follow or read back.

    Not only "loaded" units: systemd 252 writes a transient unit's ExecStartEx= into its unit
    file under a key it cannot read back, so after any daemon-reload (every package
    installation does one) a job's unit is "bad-setting" while it runs on. Running, stopping
    or failed, it is still the job's; only an inactive stub is not.
    """
    return load_state == "loaded" or active_state not in (None, "inactive")
