"""Outcome classification and completion tracking from systemd's property values, no systemd."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from automd.systemd.journal import (
    MESSAGE_FAILED,
    MESSAGE_MAIN_EXITED,
    MESSAGE_STOPPED,
    MESSAGE_STOPPING,
    MESSAGE_SUCCESS,
    _outcome,
)
from automd.systemd.outcome import UnitOutcome, classify
from automd.systemd.watch import UnitTracker

UNIT = "automd-x.service"
INVOCATION = bytes(range(16))
INVOCATION_HEX = INVOCATION.hex()


@pytest.mark.parametrize(
    ("result", "code", "status", "exit_code", "signal"),
    [
        ("success", 1, 0, 0, None),
        ("exit-code", 1, 3, 3, None),
        ("exit-code", 1, 203, 203, None),
        ("timeout", 2, 15, None, 15),
        ("success", 2, 15, None, 15),  # StopUnit: a clean SIGTERM counts as success
        ("signal", 2, 9, None, 9),
        ("core-dump", 3, 11, None, 11),
        ("start-limit-hit", 0, 0, None, None),
    ],
)
def test_classify(
    result: str, code: int, status: int, exit_code: int | None, signal: int | None
) -> None:
    outcome = classify(
        UNIT, "ab" * 16, result=result, exec_main_code=code, exec_main_status=status, source="dbus"
    )
    assert outcome == UnitOutcome(UNIT, "ab" * 16, result, exit_code, signal, "dbus")


def unit(state: str, invocation: bytes = INVOCATION) -> dict[str, Any]:
    return {"ActiveState": state, "InvocationID": invocation}


def service(result: str, code: int, status: int) -> dict[str, Any]:
    return {"Result": result, "ExecMainCode": code, "ExecMainStatus": status}


def test_load_time_inactive_is_not_a_finish_even_with_an_invocation_id() -> None:
    # Observed on 252: the first Unit change already carries the InvocationID.
    tracker = UnitTracker(UNIT, "/p")
    tracker.apply_service(service("success", 0, 0))
    transition = tracker.apply_unit(unit("inactive"))
    assert not transition.finished
    assert transition.started is None
    assert tracker.invocation_id == INVOCATION_HEX


def test_normal_order_reports_start_then_finish_with_the_latest_service_values() -> None:
    tracker = UnitTracker(UNIT, "/p")
    tracker.apply_unit(unit("inactive"))
    assert tracker.apply_unit(unit("activating")).started == INVOCATION_HEX
    assert tracker.apply_unit(unit("active")).started is None  # once
    tracker.apply_service(service("exit-code", 1, 3))
    transition = tracker.apply_unit(unit("failed"))
    assert transition.finished
    assert tracker.has_final_values
    assert tracker.outcome() == UnitOutcome(UNIT, INVOCATION_HEX, "exit-code", 3, None, "dbus")
    # Nothing is folded in after the finish.
    tracker.apply_service(service("success", 1, 0))
    assert not tracker.apply_unit(unit("failed")).finished
    assert tracker.outcome().result == "exit-code"


def test_coalesced_changes_without_a_running_state_still_finish() -> None:
    # Under load a fast unit may go straight from the load-time inactive to inactive.
    tracker = UnitTracker(UNIT, "/p")
    tracker.apply_unit(unit("inactive"))
    tracker.apply_service(service("success", 1, 0))
    transition = tracker.apply_unit(unit("inactive"))
    assert transition.finished
    assert transition.started == INVOCATION_HEX  # start reported before the finish


def test_terminal_state_without_exit_values_needs_a_read_back() -> None:
    tracker = UnitTracker(UNIT, "/p")
    tracker.apply_unit(unit("activating"))
    transition = tracker.apply_unit(unit("failed"))
    assert transition.finished
    assert not tracker.has_final_values


def journal_entry(message_id: str, **fields: Any) -> dict[str, Any]:
    return {
        "MESSAGE_ID": uuid.UUID(message_id),
        "INVOCATION_ID": uuid.UUID(INVOCATION_HEX),
        **fields,
    }


@pytest.mark.parametrize(
    ("entries", "expected"),
    [
        (
            [
                journal_entry(MESSAGE_MAIN_EXITED, EXIT_CODE="exited", EXIT_STATUS=3),
                journal_entry(MESSAGE_FAILED, UNIT_RESULT="exit-code"),
            ],
            ("exit-code", 3, None),
        ),
        # A clean end is logged only at debug level: without a stop job, that was exit 0
        # (issue 13: it read back as exit_code null).
        ([journal_entry(MESSAGE_SUCCESS)], ("success", 0, None)),
        # After a stop job, the clean end was the stop's SIGTERM (a cancel, or someone else).
        ([journal_entry(MESSAGE_STOPPING), journal_entry(MESSAGE_SUCCESS)], ("success", None, 15)),
        # A stop that replaced the start job logs no "Stopping", only "Stopped".
        ([journal_entry(MESSAGE_SUCCESS), journal_entry(MESSAGE_STOPPED)], ("success", None, 15)),
        (
            [
                journal_entry(MESSAGE_MAIN_EXITED, EXIT_CODE="killed", EXIT_STATUS=15),
                journal_entry(MESSAGE_FAILED, UNIT_RESULT="timeout"),
            ],
            ("timeout", None, 15),
        ),
        ([journal_entry(MESSAGE_MAIN_EXITED, EXIT_CODE="exited", EXIT_STATUS=3)], None),
        ([], None),
    ],
)
def test_outcome_from_journal_entries(
    entries: list[dict[str, Any]], expected: tuple[str, int | None, int | None] | None
) -> None:
    outcome = _outcome(UNIT, INVOCATION_HEX, entries)
    if expected is None:
        assert outcome is None
    else:
        assert outcome is not None
        assert (outcome.result, outcome.exit_code, outcome.signal) == expected
        assert outcome.source == "journal"
        assert outcome.invocation_id == INVOCATION_HEX


def test_journal_without_invocation_id_takes_the_newest_invocation() -> None:
    older = {"MESSAGE_ID": uuid.UUID(MESSAGE_SUCCESS), "INVOCATION_ID": uuid.UUID(int=1)}
    newer = journal_entry(MESSAGE_FAILED, UNIT_RESULT="signal")
    outcome = _outcome(UNIT, None, [older, newer])
    assert outcome is not None
    assert outcome.result == "signal"
    assert outcome.invocation_id == INVOCATION_HEX
