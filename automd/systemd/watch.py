"""Per-unit completion tracking: folds systemd's property changes into started/finished events."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from automd.systemd.outcome import ExitCode, UnitOutcome, classify

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
