"""Reconstructs a unit's outcome from PID 1's journal entries, for units gone from systemd."""

from __future__ import annotations

import signal
import time
from typing import Any

from systemd import journal

from automd.systemd.outcome import JOURNAL_EXIT_CODES, ExitCode, UnitOutcome, classify

# PID 1's catalogued messages about a unit (systemd-facts.md §2).
MESSAGE_SUCCESS = "7ad2d189f7e94e70a38c781354912448"  # "Deactivated successfully."
MESSAGE_FAILED = "d9b373ed55a64feb8242e02dbe79a49c"  # "Failed with result 'X'." UNIT_RESULT=
MESSAGE_MAIN_EXITED = "98e322203f7a4ed290d09fe03c09fe15"  # EXIT_CODE=, EXIT_STATUS=
# A stop job ran: "Stopping ..." when it began (absent when it replaced a start job still
# running), "Stopped ..." when it ended. A unit that exits on its own gets neither.
MESSAGE_STOPPING = "de5b426a63be47a7b6ac3eaac82e2f6f"
MESSAGE_STOPPED = "9d1aaa27d60140bd96365438aad20286"


def read_outcome(
    unit: str, invocation_id: str | None, *, path: str | None = None, wait_seconds: float = 0.0
) -> UnitOutcome | None:
    """Blocking: the outcome PID 1 logged for this invocation (the latest one if None).

    journald may write the entries a little after the unit is gone, so this waits up to
    `wait_seconds` (on the journal's inotify, not a poll) for the terminal entry.
    """
    reader = journal.Reader(path=path)
    try:
        # No this_boot(): a journal read from outside a container has another boot id, and an
        # invocation id is unique across boots anyway.
        reader.add_match(_PID="1", UNIT=unit)
        if invocation_id is not None:
            reader.add_match(INVOCATION_ID=invocation_id)
        reader.seek_head()
        deadline = time.monotonic() + wait_seconds
        entries: list[dict[str, Any]] = []
        while True:
            entries += list(reader)
            outcome = _outcome(unit, invocation_id, entries)
            remaining = deadline - time.monotonic()
            if outcome is not None or remaining <= 0:
                return outcome
            reader.wait(remaining)
    finally:
        reader.close()


def _outcome(
    unit: str, invocation_id: str | None, entries: list[dict[str, Any]]
) -> UnitOutcome | None:
    if invocation_id is None:
        # Only the newest invocation counts when the caller does not know which one it was.
        invocations = [e.get("INVOCATION_ID") for e in entries if e.get("INVOCATION_ID")]
        if not invocations:
            return None
        invocation_id = _hex(invocations[-1])
        entries = [e for e in entries if _hex(e.get("INVOCATION_ID")) == invocation_id]
    result: str | None = None
    code, status = ExitCode.NOT_EXITED, 0
    stopped = False
    for entry in entries:
        message_id = _hex(entry.get("MESSAGE_ID"))
        if message_id in (MESSAGE_STOPPING, MESSAGE_STOPPED):
            stopped = True
        elif message_id == MESSAGE_SUCCESS:
            result = "success"
        elif message_id == MESSAGE_FAILED:
            result = str(entry.get("UNIT_RESULT", "unknown"))
        elif message_id == MESSAGE_MAIN_EXITED:
            code = JOURNAL_EXIT_CODES.get(str(entry.get("EXIT_CODE")), ExitCode.NOT_EXITED)
            status = int(entry.get("EXIT_STATUS", 0))
    if result is None:
        return None
    if result == "success" and code == ExitCode.NOT_EXITED:
        # PID 1 logs the main process's exit only when it was unclean (a clean one at debug
        # level). automd sets no SuccessExitStatus=, so a clean end is exit 0 or a death by
        # SIGTERM/SIGINT/SIGHUP/SIGPIPE. Without a stop job it ended on its own: exit 0 (a
        # clean signal sent from outside systemd would look the same). After a stop job it
        # died of the stop's SIGTERM, as the live D-Bus path reports it.
        if stopped:
            return UnitOutcome(unit, invocation_id, result, None, int(signal.SIGTERM), "journal")
        return UnitOutcome(unit, invocation_id, result, 0, None, "journal")
    return classify(
        unit,
        invocation_id,
        result=result,
        exec_main_code=code,
        exec_main_status=status,
        source="journal",
    )


def _hex(value: Any) -> str | None:
    # The reader converts MESSAGE_ID and INVOCATION_ID to uuid.UUID.
    if value is None:
        return None
    return value.hex if hasattr(value, "hex") and not isinstance(value, bytes) else str(value)
