"""How a unit ended (UnitOutcome), classified from systemd's Result/ExecMainCode/ExecMainStatus."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum


class ExitCode(IntEnum):
    """ExecMainCode: the siginfo si_code of the main process's exit (0 = has not exited)."""

    NOT_EXITED = 0
    CLD_EXITED = 1
    CLD_KILLED = 2
    CLD_DUMPED = 3


# The journal's EXIT_CODE= words for the same codes (sigchld_code_to_string()).
JOURNAL_EXIT_CODES = {
    "exited": ExitCode.CLD_EXITED,
    "killed": ExitCode.CLD_KILLED,
    "dumped": ExitCode.CLD_DUMPED,
}


# The result of an attempt whose unit never ran: start-rejected (StartTransientUnit refused),
# or start-<the start job's JobRemoved result> when that job ended first (a stop overtook it).
NEVER_RAN_PREFIX = "start-"


@dataclass(frozen=True)
class UnitOutcome:
    """The end of one unit invocation, as systemd reported it."""

    unit: str
    invocation_id: str | None
    result: str
    exit_code: int | None
    signal: int | None
    source: str  # "dbus" or "journal"


def classify(
    unit: str,
    invocation_id: str | None,
    *,
    result: str,
    exec_main_code: int,
    exec_main_status: int,
    source: str,
) -> UnitOutcome:
    """Turn the raw values into an outcome: an exit code only for CLD_EXITED, a signal
    only for CLD_KILLED/CLD_DUMPED, neither when no main process exited."""
    exit_code = exec_main_status if exec_main_code == ExitCode.CLD_EXITED else None
    killed = exec_main_code in (ExitCode.CLD_KILLED, ExitCode.CLD_DUMPED)
    return UnitOutcome(
        unit=unit,
        invocation_id=invocation_id,
        result=result,
        exit_code=exit_code,
        signal=exec_main_status if killed else None,
        source=source,
    )
