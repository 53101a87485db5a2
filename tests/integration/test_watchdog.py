"""systemd's watchdog restarts a stopped automd; a job running meanwhile survives, run once."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from tests.integration.conftest import CHECKOUT, TEST_USER
from tests.integration.container import Container
from tests.integration.test_jobs import Api

AUTOMCTL = str(CHECKOUT / ".venv" / "bin" / "automctl")
LIMIT = 20.0  # WatchdogSec= in units/automd.service


@pytest.fixture
def api(container: Container) -> Api:
    return Api(container)


def journal(c: Container, *matches: str, since: float) -> list[dict[str, Any]]:
    out = c.run(["journalctl", "--no-pager", "-o", "json", f"--since=@{int(since)}", *matches])
    return [json.loads(line) for line in out.stdout.decode().splitlines() if line]


def last_ping(api: Api) -> int:
    """When systemd last got WATCHDOG=1 (or READY=1, which resets the timer), monotonic µs."""
    return int(
        api.show("automd.service", "WatchdogTimestampMonotonic")["WatchdogTimestampMonotonic"]
    )


async def test_a_stopped_event_loop_is_restarted_by_the_watchdog(
    api: Api, container: Container
) -> None:
    await api.call("system.version")  # socket activation: automd runs
    props = api.show("automd.service", "WatchdogUSec", "WatchdogSignal", "TimeoutAbortUSec")
    assert props == {"WatchdogUSec": "20s", "WatchdogSignal": "6", "TimeoutAbortUSec": "5s"}

    # The event loop pings on its own, every LIMIT / 2: wait for the next one.
    first = last_ping(api)
    async with asyncio.timeout(LIMIT / 2 + 3):
        while True:
            pinged = last_ping(api)
            if pinged != first:
                break
            await asyncio.sleep(0.1)
    assert 0 < (pinged - first) / 1e6 < LIMIT

    # Started after the ping, the job outlives the restart, which comes about LIMIT + 2 s later.
    job = await api.submit("hold", seconds=30, text="wd")
    await api.wait(job["id"], "running")
    unit = f"automd-hold-{job['id']}-1.service"
    before = api.show("automd.service", "MainPID", "NRestarts")
    old_pid = before["MainPID"]
    since = time.time() - 1
    container.run(["kill", "-STOP", old_pid])
    stopped = time.monotonic()
    seen: list[dict[str, str]] = []
    try:
        ping = last_ping(api)
        assert ping == pinged  # no ping from the stopped loop, none in flight
        deadline = stopped + LIMIT + 20
        while True:
            after = api.show(
                "automd.service", "MainPID", "NRestarts", "ActiveState", "SubState", "Result"
            )
            if after not in seen:
                seen.append(after)
            if after["MainPID"] not in ("0", old_pid) and after["SubState"] == "running":
                break
            assert time.monotonic() < deadline, seen
            await asyncio.sleep(0.1)
        restarted = time.monotonic() - stopped
        # Jobs live in their own units: this one ran on through automd's death and restart.
        assert api.show(unit, "ActiveState")["ActiveState"] == "active"
    finally:
        # If the watchdog failed to act, do not leave a stopped daemon to the next tests.
        container.run(["kill", "-CONT", old_pid], check=False)
    print(f"restarted {restarted:.1f} s after SIGSTOP; automd.service states seen: {seen}")
    assert int(after["NRestarts"]) == int(before["NRestarts"]) + 1

    # PID 1 says why, and when: LIMIT after the last ping it received.
    pid1 = journal(container, "_PID=1", "UNIT=automd.service", since=since)
    messages = [e["MESSAGE"] for e in pid1]
    print("\n".join(messages))
    timeout = next(
        e for e in pid1 if e["MESSAGE"] == "automd.service: Watchdog timeout (limit 20s)!"
    )
    fired_after = (int(timeout["__MONOTONIC_TIMESTAMP"]) - ping) / 1e6
    print(f"watchdog fired {fired_after:.2f} s after the last ping")
    assert LIMIT <= fired_after <= LIMIT + 2
    assert f"automd.service: Killing process {old_pid} (automd) with signal SIGABRT." in messages
    assert "automd.service: Failed with result 'watchdog'." in messages
    # SIGABRT (systemd sends SIGCONT after it) reached Python's faulthandler: the traceback of
    # every thread is in the journal, for finding where a really hung loop was stuck.
    old = journal(container, "_SYSTEMD_UNIT=automd.service", f"_PID={old_pid}", since=since)
    assert "Fatal Python error: Aborted" in [e["MESSAGE"] for e in old]

    # The new daemon answers, and follows the job to its real end: one attempt, run once.
    health = container.run([AUTOMCTL, "health"], user=TEST_USER, check=False)
    assert health.returncode == 0, health
    done = await api.wait(job["id"], "succeeded", "failed", "unknown")
    assert (done["state"], done["attempts"], done["exit_code"]) == ("succeeded", 1, 0), done
    detail = await api.call("job.get", id=job["id"])
    assert detail["attempts"][0]["outcome_source"] == "dbus"  # seen live by the new daemon
    assert await api.journal_lines(job["id"], 2) == ["start 2:wd", "done"]
