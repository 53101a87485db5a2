"""Issue 13.1 against real systemd: jobs that end while automd is down keep no run slot.

The acceptance run that found it: a mix of jobs is running, automd is SIGKILLed and stays down
(socket stopped) until they all ended, then comes back. In about half of the attempts a
finished job kept its run slot forever: `health` said "N running" with no unit active, the
retried job stayed queued for good, and later bursts ran with fewer slots than max_running.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.conftest import wait_for, wait_for_async
from tests.integration.container import Container
from tests.integration.test_jobs import Api

# Above the 9 jobs of a round: all run when automd is killed, as in the acceptance run.
MAX_RUNNING = 10
ROUNDS = 5


@pytest.fixture
def api(container: Container) -> Iterator[Api]:
    """automd with jobs.max_running = MAX_RUNNING (read at a restart); restored after."""
    container.write_file("/etc/automd/automd.toml", f"[jobs]\nmax_running = {MAX_RUNNING}\n")
    container.stop_units("automd.service")  # the next connection starts it with the setting
    yield Api(container)
    container.run(["rm", "-f", "/etc/automd/automd.toml"])
    container.stop_units("automd.service")


def job_units_active(container: Container) -> str:
    """automd-* job units activating, active or deactivating, as systemctl lists them."""
    return container.run(
        ["systemctl", "list-units", "--plain", "--no-legend",
         "--state=activating,active,deactivating", "automd-*-*.service"]
    ).stdout.decode().strip()  # fmt: skip


async def running_jobs(api: Api) -> list[dict[str, Any]]:
    result = await api.call("job.list", state=["starting", "running"], limit=100)
    jobs: list[dict[str, Any]] = result["jobs"]
    return jobs


async def test_restart_race_jobs_ending_while_automd_is_down_free_their_slots(api: Api) -> None:
    """The acceptance run's repro, five times in a row. Checked: on the code before the fix
    (be2a910) it failed, the retried `fail` job staying queued for good."""
    c = api.container
    for round_number in range(ROUNDS):
        ok = [await api.submit("sleepexit", seconds=2, status=0) for _ in range(4)]
        bad = [await api.submit("sleepexit", seconds=2, status=3) for _ in range(4)]
        failing = await api.submit("fail", code=1)  # attempt 1 fails at once; one retry
        for job in [*ok, *bad, failing]:
            await api.wait(job["id"], "running", "waiting_retry", "succeeded", "failed")

        c.run(["systemctl", "kill", "--signal=SIGKILL", "--kill-who=main", "automd.service"])
        c.stop_units("automd.service", "automd.socket")
        # Everything that was running ends while automd is down.
        wait_for("job units ended", lambda: job_units_active(c), lambda out: out == "")
        c.start_units("automd.socket")

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
    running = await wait_for_async(
        f"{MAX_RUNNING} jobs running", lambda: running_jobs(api), lambda r: len(r) >= MAX_RUNNING
    )
    assert len(running) == MAX_RUNNING
    health = await api.call("system.health")
    queue = health["checks"]["queue"]
    assert queue["detail"].startswith(f"{MAX_RUNNING} running (max {MAX_RUNNING})"), queue
    for job in burst:
        await api.call("job.cancel", id=job["id"])
    for job in burst:
        try:
            await api.wait(job["id"], "cancelled", "succeeded")
        except AssertionError as stuck:
            raise AssertionError(f"{stuck}\n{await what_automd_saw(api, job['id'])}") from None


async def what_automd_saw(api: Api, job_id: str) -> str:
    """A stuck job's record, its unit as systemd has it, and automd's journal."""
    detail = await api.call("job.get", id=job_id)
    unit = detail["job"]["unit"] or f"automd-hold-{job_id}-1.service"
    c = api.container
    status = c.run(["systemctl", "status", "--no-pager", "-n", "20", unit], check=False)
    journal = c.run(["journalctl", "-b", "--no-pager", "-o", "short-monotonic", "-n", "300",
                     "_SYSTEMD_UNIT=automd.service", "+", f"UNIT={unit}"], check=False)  # fmt: skip
    return "\n".join([
        f"job.get: {detail}",
        f"--- systemctl status {unit} ---", status.stdout.decode(errors="replace"),
        "--- automd's journal and the unit's ---", journal.stdout.decode(errors="replace"),
    ])  # fmt: skip
