"""Months of operation against the real systemd: per-job journald rate limits, a full disk."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.integration.conftest import CHECKOUT, Gate, install_automd, wait_for_async
from tests.integration.container import Container
from tests.integration.test_jobs import Api

STATE_DIR = "/var/lib/automd"
#: Submits sent at once while the disk is full.
BURST = 1000

# journald's "Suppressed N messages from UNIT" entry (SD_MESSAGE_JOURNAL_DROPPED).
JOURNAL_DROPPED = "a596d6fe7bfa4994828e72309e95d61e"


async def test_a_flooding_job_is_rate_limited_by_journald(
    container: Container, new_gate: Callable[[], Gate]
) -> None:
    api = Api(container)
    gate = new_gate()
    job = await api.submit("flood", lines=20000, gate=gate.name)
    unit = f"automd-flood-{job['id']}-1.service"
    # journald says what it dropped, as itself: the job's unit only in OBJECT_ fields. On a
    # loaded machine its work may span several intervals, each with its own entry. The job
    # waits, alive, until they are all there (flood.toml says why).
    await wait_for_async(
        "the line after the flood",
        lambda: asyncio.to_thread(api.output, job["id"]),
        lambda kept: bool(kept) and kept[-1] == "after the flood",
    )
    dropped = container.journal(f"MESSAGE_ID={JOURNAL_DROPPED}", f"OBJECT_SYSTEMD_UNIT={unit}")
    gate.open()
    await api.wait(job["id"], "succeeded")
    kept = api.output(job["id"])
    # The burst (10, scaled by journald up to 6x with free disk space) per 1 s interval: a
    # fraction of the 20000 lines, and the line after the interval comes through.
    assert 10 <= len(kept) < 20000 // 10, len(kept)
    assert kept[-1] == "after the flood"
    assert dropped, "no journald entry about the lines it dropped"
    assert {entry["_SYSTEMD_UNIT"] for entry in dropped} == {"systemd-journald.service"}
    assert sum(int(entry["N_DROPPED"]) for entry in dropped) + len(kept) == 20000 + 1
    assert not any("AUTOMD_JOB_ID" in entry for entry in dropped)
    # So job.logs, which reads the job's own entries, shows the lines kept and not the notice.
    page = await wait_for_async(
        "job.logs of the whole output",
        lambda: api.call("job.logs", id=job["id"], limit=5000),
        lambda page: bool(page["finished"]),
    )
    assert [e["message"] for e in page["entries"]] == kept


@pytest.fixture(scope="module")
def small_disk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Container]:
    """A container of its own whose /var/lib/automd is a 16 MB tmpfs, mounted before automd
    first starts: the state directory's file system can be filled without touching others."""
    log_path = tmp_path_factory.mktemp("small-disk") / "nspawn.log"
    with Container(CHECKOUT, log_path=log_path) as c:
        c.run(["mkdir", "-p", STATE_DIR])
        c.run(["mount", "-t", "tmpfs", "-o", "size=16M,mode=0750", "tmpfs", STATE_DIR])
        install_automd(c)
        yield c


async def submit_burst(api: Api, fill_after: int) -> list[dict[str, Any]]:
    """BURST submits, at most 64 at once (under server.max_connections_per_user); the disk
    is filled once `fill_after` of them were acknowledged, while the rest are under way."""
    slots = asyncio.Semaphore(64)
    acked = 0
    filling: asyncio.Task[None] | None = None

    async def submit() -> dict[str, Any]:
        nonlocal acked, filling
        async with slots:
            reply = await api.reply("job.submit", definition="sleepexit", params={"seconds": 0})
        acked += "result" in reply
        if acked >= fill_after and filling is None:
            filling = asyncio.create_task(asyncio.to_thread(fill, api.container))
        return reply

    replies = await asyncio.gather(*(submit() for _ in range(BURST)))
    assert filling is not None
    await filling
    return list(replies)


def fill(c: Container) -> None:
    """Fill the state directory's file system to the last byte (dd stops at ENOSPC)."""
    c.run(["sh", "-c", f"dd if=/dev/zero of={STATE_DIR}/filler bs=64k 2>/dev/null; true"])
    assert c.run(["stat", "-f", "-c", "%a", STATE_DIR]).stdout.strip() == b"0"


async def test_a_full_disk_loses_no_acknowledged_job(small_disk: Container) -> None:
    c, api = small_disk, Api(small_disk)
    gate = Gate(c)
    running = await api.submit("gated", gate=gate.name)
    await api.wait(running["id"], "running")
    # A burst of submits, the disk filling up during it: each is acknowledged or refused.
    replies = await submit_burst(api, fill_after=50)
    acked = [r["result"]["job"]["id"] for r in replies if "result" in r]
    refused = [r["error"] for r in replies if "error" in r]
    assert len(acked) + len(refused) == BURST
    assert len(acked) >= 50, "the disk filled before the burst began"
    assert refused, "the disk never filled during the burst"
    assert {e["code"] for e in refused} == {1008}, refused[:3]
    assert {e["data"]["reason"] for e in refused} == {"disk full"}
    health = await wait_for_async(
        "the store check saying the disk is full",
        lambda: api.call("system.health"),
        lambda h: not h["checks"]["store"]["ok"],
    )
    assert "disk full" in health["checks"]["store"]["detail"]
    # The running job ends while nothing can be written: its outcome waits, it is not lost.
    gate.open_all()
    print(f"full disk: {len(acked)} acknowledged, {len(refused)} refused with 1008")
    c.run(["rm", f"{STATE_DIR}/filler"])
    # Space is back: automd recovers by itself; every acknowledged job reaches its end.
    for job_id in [running["id"], *acked]:
        await api.wait(job_id, "succeeded")
    after = await api.submit("sleepexit", seconds=0)
    await api.wait(after["id"], "succeeded")
    health = await api.call("system.health")
    assert health["checks"]["store"]["ok"], health
    # automctl health says how much history there is and how long it is kept.
    shown = c.run([str(CHECKOUT / ".venv/bin/automctl"), "health"]).stdout.decode()
    assert f"{len(acked) + 2} finished jobs kept" in shown, shown
    assert "retention: succeeded 30 d, failed 90 d" in shown, shown
