"""Issue 13.1 against real systemd: jobs that end while automd is down keep no run slot.

The acceptance run that found it: a mix of jobs is running, automd is SIGKILLed and stays down
(socket stopped) until they all ended, then comes back. In about half of the attempts a
finished job kept its run slot forever: `health` said "N running" with no unit active, the
retried job stayed queued for good, and later bursts ran with fewer slots than max_running.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.integration.container import Container
from tests.integration.test_jobs import WAIT_SECONDS, Api

# Above the 9 jobs of a round: all run when automd is killed, as in the acceptance run.
MAX_RUNNING = 10
ROUNDS = 5


@pytest.fixture
def api(container: Container) -> Any:
    """automd with jobs.max_running = MAX_RUNNING (read at a restart); restored after."""
    container.write_file("/etc/automd/automd.toml", f"[jobs]\nmax_running = {MAX_RUNNING}\n")
    restart_automd(container)
    yield Api(container)
    container.run(["rm", "-f", "/etc/automd/automd.toml"])
    restart_automd(container)


def restart_automd(container: Container) -> None:
    """Stop the service (the socket stays), so the next connection starts it afresh."""
    container.run(["systemctl", "stop", "automd.service"])
    container.run(["systemctl", "reset-failed", "automd.service", "automd.socket"], check=False)
    container.run(["systemctl", "start", "automd.socket"])


async def wait_no_job_unit_active(container: Container) -> None:
    """Until systemd has no automd-* job unit activating, active or deactivating."""
    async with asyncio.timeout(WAIT_SECONDS):
        while True:
            out = container.run(
                ["systemctl", "list-units", "--plain", "--no-legend",
                 "--state=activating,active,deactivating", "automd-*-*.service"]
            ).stdout.decode()  # fmt: skip
            if not out.strip():
                return
            await asyncio.sleep(0.2)


async def running_jobs(api: Api) -> list[dict[str, Any]]:
    result = await api.call("job.list", state=["starting", "running"], limit=100)
    jobs: list[dict[str, Any]] = result["jobs"]
    return jobs


async def test_restart_race_jobs_ending_while_automd_is_down_free_their_slots(api: Api) -> None:
    """Checked: fails on the code before the fix (see the closing note of issue 13)."""
    c = api.container
    for round_number in range(ROUNDS):
        ok = [await api.submit("sleepexit", seconds=2, status=0) for _ in range(4)]
        bad = [await api.submit("sleepexit", seconds=2, status=3) for _ in range(4)]
        failing = await api.submit("fail", code=1)  # attempt 1 fails at once; one retry
        for job in [*ok, *bad, failing]:
            await api.wait(job["id"], "running", "waiting_retry", "succeeded", "failed")

        c.run(["systemctl", "kill", "--signal=SIGKILL", "--kill-who=main", "automd.service"])
        c.run(["systemctl", "stop", "automd.service", "automd.socket"])
        await wait_no_job_unit_active(c)  # everything that was running ended while down
        c.run(["systemctl", "reset-failed", "automd.service", "automd.socket"], check=False)
        c.run(["systemctl", "start", "automd.socket"])

        for job in ok:
            done = await api.wait(job["id"], "succeeded", "failed", "unknown", "timed_out")
            assert (done["state"], done["exit_code"]) == ("succeeded", 0), (round_number, done)
        for job in bad:
            done = await api.wait(job["id"], "succeeded", "failed", "unknown", "timed_out")
            assert (done["state"], done["exit_code"]) == ("failed", 3), (round_number, done)
        done = await api.wait(failing["id"], "succeeded", "failed", "unknown", "timed_out")
        assert (done["state"], done["attempts"], done["exit_code"]) == ("failed", 2, 1), done
        assert await running_jobs(api) == [], round_number

    # Afterwards all max_running slots are usable: a burst runs MAX_RUNNING at once.
    burst = [await api.submit("hold", seconds=120, text=f"b{i}") for i in range(MAX_RUNNING + 2)]
    async with asyncio.timeout(WAIT_SECONDS):
        while True:
            running = await running_jobs(api)
            if len(running) >= MAX_RUNNING:
                break
            await asyncio.sleep(0.2)
    assert len(running) == MAX_RUNNING
    health = await api.call("system.health")
    queue = health["checks"]["queue"]
    assert queue["detail"].startswith(f"{MAX_RUNNING} running (max {MAX_RUNNING})"), queue
    for job in burst:
        await api.call("job.cancel", id=job["id"])
    for job in burst:
        await api.wait(job["id"], "cancelled", "succeeded")
