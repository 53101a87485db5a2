"""Pure decisions: what a unit's outcome means for the job, and when to try again."""

from __future__ import annotations

import signal
from dataclasses import dataclass

from automd.api.exit_status import setup_failure
from automd.api.jobs import JobState
from automd.definitions.model import RetryPolicy
from automd.systemd.outcome import NEVER_RAN_PREFIX
from automd.systemd.units import UnitOutcome


@dataclass(frozen=True)
class Verdict:
    state: JobState
    reason: str


# systemd Results that are not plain failures; every other non-success Result is `failed`.
_STATE_BY_RESULT = {"timeout": JobState.TIMED_OUT, "unknown": JobState.UNKNOWN}


def judge(outcome: UnitOutcome, *, cancel_requested: bool) -> Verdict:
    """The job state an attempt's outcome stands for.

    systemd reports a stop (SIGTERM, also SIGINT/SIGHUP) as Result=success, so a cancel is
    recognised from automd's own record that it asked for one, not from the Result. An outcome
    read back from the journal after a clean end carries no exit status (PID 1 logs one only
    for unclean exits), so Result=success without a signal counts as success.
    """
    if cancel_requested:
        if outcome.result == "success" and outcome.exit_code == 0:
            return Verdict(JobState.SUCCEEDED, "exited with status 0 before the cancel took")
        return Verdict(JobState.CANCELLED, f"cancelled ({_how_it_stopped(outcome)})")
    if outcome.result == "success" and outcome.signal is None:
        return Verdict(JobState.SUCCEEDED, "exited successfully")
    return Verdict(_STATE_BY_RESULT.get(outcome.result, JobState.FAILED), _failure(outcome))


def _how_it_stopped(outcome: UnitOutcome) -> str:
    """systemd calls a unit that ended on its stop signal a success; after a cancel, say how."""
    if outcome.result.startswith(NEVER_RAN_PREFIX):
        return "before its unit ran"
    if outcome.signal == signal.SIGTERM or (outcome.result == "success" and outcome.signal is None):
        return "stopped with SIGTERM"
    if outcome.signal == signal.SIGKILL:
        return "killed with SIGKILL: it outlived the stop timeout"
    if outcome.signal is not None:
        return f"ended by {_signal_name(outcome.signal)}"
    if outcome.exit_code is not None:
        return f"exited with status {outcome.exit_code} when stopped"
    return f"stopped: {outcome.result}"


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


_FAILURE_BY_RESULT = {
    "timeout": "ran past its runtime limit",
    "unknown": "the unit vanished without a recorded outcome",
    "start-rejected": "systemd refused to start its unit",
}


def _failure(outcome: UnitOutcome) -> str:
    if (said := _FAILURE_BY_RESULT.get(outcome.result)) is not None:
        return said
    if outcome.result.startswith(NEVER_RAN_PREFIX):
        how = outcome.result.removeprefix(NEVER_RAN_PREFIX)
        return f"its unit's start ended before it ran ({how})"
    if outcome.signal is not None:
        # Includes Result=success with a clean-kill signal sent by someone other than automd.
        return f"killed by signal {outcome.signal} ({outcome.result})"
    setup = setup_failure(outcome.exit_code)
    if setup is not None:
        return setup
    if outcome.exit_code is not None:
        return f"exited with status {outcome.exit_code}"
    return f"failed: {outcome.result}"


def should_retry(outcome: UnitOutcome, verdict: Verdict, policy: RetryPolicy, attempt: int) -> bool:
    if verdict.state not in (JobState.FAILED, JobState.TIMED_OUT) or attempt >= policy.max_attempts:
        return False
    if outcome.result == "exit-code" and setup_failure(outcome.exit_code) is not None:
        return False  # the same definition on the same host fails the same way again
    if outcome.result not in policy.on_results:
        return False
    if outcome.result == "exit-code" and policy.on_exit_codes is not None:
        return outcome.exit_code in policy.on_exit_codes
    return True


def backoff_delay(policy: RetryPolicy, attempt: int, random_unit: float) -> float:
    """Delay before attempt `attempt + 1`: exponential, capped, with ± jitter.

    `random_unit` is a uniform draw from [0, 1), passed in so the decision stays pure.
    """
    base = policy.initial_delay_seconds * policy.multiplier ** (attempt - 1)
    capped = min(base, policy.max_delay_seconds)
    spread = capped * policy.jitter
    return max(0.0, capped - spread + 2 * spread * random_unit)
