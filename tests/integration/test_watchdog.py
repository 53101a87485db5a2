"""systemd's watchdog restarts a stopped automd; a job running meanwhile survives, run once."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from tests.integration.conftest import CHECKOUT, TEST_USER, WAIT_SECONDS, Gate, wait_for
from tests.integration.container import Container
from tests.integration.test_jobs import GATED_TAIL, Api

AUTOMCTL = str(CHECKOUT / ".venv" / "bin" / "automctl")
LIMIT = 20.0  # WatchdogSec= in units/automd.service
ABORT = 5.0  # TimeoutAbortSec=


@pytest.fixture
def api(container: Container) -> Api:
    return Api(container)


def last_ping(api: Api) -> int:
    """When systemd last got WATCHDOG=1 (or READY=1, which resets the timer), monotonic µs."""
    return int(
        api.show("automd.service", "WatchdogTimestampMonotonic")["WatchdogTimestampMonotonic"]
    )


async def test_a_stopped_event_loop_is_restarted_by_the_watchdog(
    api: Api, container: Container, new_gate: Callable[[], Gate]
) -> None:
    await api.call("system.version")  # socket activation: automd runs
    props = api.show("automd.service", "WatchdogUSec", "WatchdogSignal", "TimeoutAbortUSec")
    assert props == {"WatchdogUSec": "20s", "WatchdogSignal": "6", "TimeoutAbortUSec": "5s"}

    # The event loop pings on its own, every LIMIT / 2: the next ping comes within LIMIT.
    first = last_ping(api)
    pinged = wait_for("a watchdog ping", lambda: last_ping(api), lambda ping: ping != first,
                      within=LIMIT + WAIT_SECONDS)  # fmt: skip
    assert 0 < (pinged - first) / 1e6 < LIMIT

    # The job runs until the test opens its gate: through automd's death and restart.
    gate = new_gate()
    job = await api.submit("gated", gate=gate.name)
    unit = (await api.wait(job["id"], "running"))["unit"]
    before = api.show("automd.service", "MainPID", "NRestarts")
    old_pid = before["MainPID"]
    since = time.time() - 1
    container.run(["kill", "-STOP", old_pid])
    stopped = time.monotonic()
    seen: list[dict[str, str]] = []
    pings: set[int] = set()  # what PID 1 had from the stopped process while it counted

    def service() -> dict[str, str]:
        state = api.show("automd.service", "MainPID", "NRestarts", "ActiveState", "SubState",
                         "Result", "WatchdogTimestampMonotonic")  # fmt: skip
        ping = state.pop("WatchdogTimestampMonotonic")
        # Only while it runs: once the watchdog fired (stop-watchdog) PID 1 stamps that time.
        if (state["MainPID"], state["SubState"]) == (old_pid, "running"):
            pings.add(int(ping))
        if state not in seen:
            seen.append(state)
        return state

    try:
        after = wait_for(
            "automd restarted by the watchdog",
            service,
            lambda s: s["MainPID"] not in ("0", old_pid) and s["SubState"] == "running",
            within=LIMIT + ABORT + WAIT_SECONDS,
        )
        restarted = time.monotonic() - stopped
        # Jobs live in their own units: this one ran on through automd's death and restart.
        assert api.show(unit, "ActiveState")["ActiveState"] == "active"
    finally:
        # If the watchdog failed to act, do not leave a stopped daemon to the next tests.
        container.run(["kill", "-CONT", old_pid], check=False)
    print(f"restarted {restarted:.1f} s after SIGSTOP; automd.service states seen: {seen}")
    assert int(after["NRestarts"]) == int(before["NRestarts"]) + 1

    # PID 1 says why, and when: not before LIMIT after the last ping it received. (The ping
    # is the last one read while the old process ran: one may still have been on its way
    # when the loop stopped. Only a lower bound: PID 1 may well be late on a busy machine.)
    pid1 = container.journal("_PID=1", "UNIT=automd.service", since=since)
    messages = [e["MESSAGE"] for e in pid1]
    print("\n".join(messages))
    timeout = next(
        e for e in pid1 if e["MESSAGE"] == "automd.service: Watchdog timeout (limit 20s)!"
    )
    fired_after = (int(timeout["__MONOTONIC_TIMESTAMP"]) - max(pings)) / 1e6
    print(f"watchdog fired {fired_after:.2f} s after the last ping")
    assert fired_after >= LIMIT
    assert f"automd.service: Killing process {old_pid} (automd) with signal SIGABRT." in messages
    assert "automd.service: Failed with result 'watchdog'." in messages
    # SIGABRT (systemd sends SIGCONT after it) reached Python's faulthandler: the traceback of
    # every thread is in the journal, for finding where a really hung loop was stuck.
    old = container.journal("_SYSTEMD_UNIT=automd.service", f"_PID={old_pid}", since=since)
    assert "Fatal Python error: Aborted" in [e["MESSAGE"] for e in old]

    # The new daemon answers, and follows the job to its real end: one attempt, run once.
    health = container.run([AUTOMCTL, "health"], user=TEST_USER, check=False)
    assert health.returncode == 0, health
    api.wait_reconciled(after["MainPID"])
    gate.open()
    done = await api.wait(job["id"], "succeeded", "failed", "unknown")
    assert (done["state"], done["attempts"], done["exit_code"]) == ("succeeded", 1, 0), done
    detail = await api.call("job.get", id=job["id"])
    assert detail["attempts"][0]["outcome_source"] == "dbus"  # seen live by the new daemon
    assert api.output(job["id"]) == ["line 1", *GATED_TAIL]
