"""systemd's set-up exit statuses: the table, and what a job's outcome with one means."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from automd.api.exit_status import SYSTEMD_EXIT_STATUSES, setup_failure, systemd_exit_status
from automd.api.jobs import JobState
from automd.definitions.model import RetryPolicy
from automd.jobs.policy import judge, should_retry
from automd.systemd.outcome import UnitOutcome


def test_the_table_is_systemds_own() -> None:
    """Compared with what this systemd prints; CI installs systemd (packaging/apt-packages.txt)."""
    analyze = shutil.which("systemd-analyze")
    assert analyze is not None, "systemd-analyze is needed (Debian package systemd)"
    printed = subprocess.run(
        [analyze, "exit-status"], check=True, capture_output=True, text=True
    ).stdout
    theirs = {}
    for line in printed.splitlines()[1:]:
        name, status, kind = line.split()
        if kind == "systemd" and 200 <= int(status) < 255:
            theirs[int(status)] = name
    assert theirs == SYSTEMD_EXIT_STATUSES


def test_names_and_sentences() -> None:
    assert systemd_exit_status(226) == "226/NAMESPACE"
    assert systemd_exit_status(3) is None
    assert systemd_exit_status(None) is None
    sentence = setup_failure(203)
    assert sentence is not None
    assert "203/EXEC" in sentence
    assert "executable" in sentence


def outcome(exit_code: int) -> UnitOutcome:
    return UnitOutcome("automd-x-1-1.service", "ab" * 16, "exit-code", exit_code, None, "dbus")


@pytest.mark.parametrize("code", [203, 217, 226])
def test_a_setup_failure_is_named_and_never_retried(code: int) -> None:
    """Issue 16.1: a sandbox that cannot be set up failed three times over ~26 s, as
    "exited with status 226". Checked: fails on the code before (retried, unnamed)."""
    verdict = judge(outcome(code), cancel_requested=False)
    assert verdict.state == JobState.FAILED
    assert f"{code}/{SYSTEMD_EXIT_STATUSES[code]}" in verdict.reason
    policy = RetryPolicy(max_attempts=3)
    assert not should_retry(outcome(code), verdict, policy, attempt=1)


def test_the_jobs_own_failure_is_still_retried() -> None:
    verdict = judge(outcome(3), cancel_requested=False)
    assert verdict.reason == "exited with status 3"
    assert should_retry(outcome(3), verdict, RetryPolicy(max_attempts=3), attempt=1)
