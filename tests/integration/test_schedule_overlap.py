"""Overlap policies against the container's real systemd, with gated jobs (they run until
the test opens their gate) longer than the 5 s between firings: skip, queue and replace each
as documented, and jobs.max_running and a definition's concurrency still hold."""

from __future__ import annotations

import itertools
from typing import Any

from tests.integration.conftest import wait_for_async
from tests.integration.container import Container
from tests.integration.schedule_kit import GATED, Schedules, at, schedule_table, timer


async def _gated(schedules: Schedules, name: str, table: str) -> None:
    """A definition like jobs.d/gated.toml (its jobs wait for a gate) with schedule "s"."""
    await schedules.install(name, GATED + table, timer(name, "s"))


async def test_overlap_skip_skips_while_the_last_job_runs(
    container: Container, schedules: Schedules, new_gate: Any
) -> None:
    gate = new_gate()
    table = schedule_table("s", overlap="skip", params={"gate": gate.name})
    await _gated(schedules, "sched-skip", table)
    firings = await wait_for_async(
        "two firings skipped", lambda: schedules.firings("sched-skip"),
        lambda found: sum("skipped" in f["detail"] for f in found) >= 2, within=90,
    )  # fmt: skip
    jobs = await schedules.jobs("sched-skip")
    assert [j["state"] for j in jobs] == ["running"], jobs
    assert firings[0]["job_id"] == jobs[0]["id"]
    assert all(f["job_id"] is None for f in firings[1:]), firings
    gate.open()
    await wait_for_async("a new job after the first ended", lambda: schedules.jobs("sched-skip"),
                         lambda found: len(found) >= 2, within=60)  # fmt: skip


async def test_overlap_queue_runs_one_after_another_within_concurrency(
    container: Container, schedules: Schedules, new_gate: Any
) -> None:
    gate = new_gate()
    # Two schedules of one definition with concurrency = 1: "q" queues its own firings, and
    # "other" (same calendar) must wait for the definition's one run slot.
    tables = [
        schedule_table(n, overlap="queue", params={"gate": gate.name}) for n in ("q", "other")
    ]
    # A top-level key must precede GATED's tables ([limits], [sandbox]).
    text = "concurrency = 1\n" + GATED + "".join(tables)
    await schedules.install("sched-queue", text, timer("sched-queue", "q"),
                            timer("sched-queue", "other"))  # fmt: skip
    jobs = await wait_for_async(
        "three firings of q", lambda: schedules.jobs("sched-queue", "q"),
        lambda found: len(found) >= 3, within=90,
    )  # fmt: skip
    everyone = await schedules.jobs("sched-queue")
    running = [j for j in everyone if j["state"] in ("starting", "running")]
    assert len(running) == 1, everyone  # concurrency = 1 across both schedules
    assert [j["state"] for j in jobs[1:]] == ["queued"] * (len(jobs) - 1), jobs
    await schedules.remove("sched-queue", timer("sched-queue", "q"), timer("sched-queue", "other"))
    gate.open()
    ids = [j["id"] for j in jobs]
    done = [await schedules.api.wait(i, "succeeded") for i in ids]
    details = [(await schedules.api.call("job.get", id=i)) for i in ids]
    spans = [(at(d["attempts"][0]["started_at"]), at(d["attempts"][0]["finished_at"]))
             for d in details]  # fmt: skip
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert start >= end, spans  # one after another
    assert len(done) == len(ids)


async def test_overlap_replace_cancels_the_running_job_and_says_why(
    container: Container, schedules: Schedules, new_gate: Any
) -> None:
    gate = new_gate()
    table = schedule_table("s", overlap="replace", params={"gate": gate.name})
    await _gated(schedules, "sched-replace", table)
    jobs = await wait_for_async(
        "a job replaced", lambda: schedules.jobs("sched-replace"),
        lambda found: len(found) >= 2 and found[0]["state"] == "cancelled", within=90,
    )  # fmt: skip
    first, second = jobs[0], jobs[1]
    assert first["outcome"].startswith(f"replaced by the firing of {second['trigger_at'][:19]}")
    second = await schedules.api.wait(second["id"], "running", "cancelled")
    detail = await schedules.api.call("job.get", id=first["id"])
    replacing = await schedules.api.call("job.get", id=second["id"])
    assert at(replacing["attempts"][0]["started_at"]) >= at(detail["job"]["finished_at"])


async def test_firings_wait_for_max_running(
    container: Container, schedules: Schedules, new_gate: Any
) -> None:
    gate = new_gate()
    config = "/etc/automd/automd.toml"
    container.write_file(config, "[jobs]\nmax_running = 1\n")
    container.run(["systemctl", "try-reload-or-restart", "automd.service"])
    try:
        names = ("sched-cap-a", "sched-cap-b")
        for name in names:
            table = schedule_table("s", overlap="queue", params={"gate": gate.name})
            await schedules.install(name, GATED + table, timer(name, "s"))

        async def unfinished() -> list[dict[str, Any]]:
            return [j for n in names for j in await schedules.jobs(n)]

        jobs = await wait_for_async("a job of each", unfinished,
                                    lambda found: {j["definition"] for j in found} == set(names),
                                    within=60)  # fmt: skip
        for name in names:
            await schedules.remove(name, timer(name, "s"))
        gate.open_all()
        spans = []
        for job in await unfinished():
            await schedules.api.wait(job["id"], "succeeded")
            attempt = (await schedules.api.call("job.get", id=job["id"]))["attempts"][0]
            spans.append((at(attempt["started_at"]), at(attempt["finished_at"])))
        spans.sort()
        for (_, end), (start, _) in itertools.pairwise(spans):
            assert start >= end, spans  # jobs.max_running = 1 over both schedules
        assert len(spans) >= len(jobs)
    finally:
        container.run(["rm", "-f", config])
        container.run(["systemctl", "try-reload-or-restart", "automd.service"])
        gate.open_all()
