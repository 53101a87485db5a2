"""Schedules against the container's real systemd: the generator's timers fire the jobs, once
per firing, with each overlap policy, with and without catch-up, and reloads add and remove
timers (issue 19's "Done when").

Schedules here fire every 5 s (`*:*:0/5`); tests wait on jobs, audit entries, the journal and
unit properties, never for a time, except where the point is a firing time passing while the
timer is stopped (then they wait for the wall clock to pass it).
"""

from __future__ import annotations

import itertools
import json
import math
import time
from collections.abc import AsyncIterator
from datetime import datetime
from functools import partial
from typing import Any

import pytest

from tests.daemon.harness import Connection
from tests.integration.conftest import (
    CHECKOUT,
    HERE,
    JOBS_DIR,
    TEST_USER,
    Gate,
    wait_for,
    wait_for_async,
)
from tests.integration.container import Container
from tests.integration.test_jobs import Api

EVERY_5S = "*:*:0/5"
AUTOMCTL = str(CHECKOUT / ".venv" / "bin" / "automctl")
GATED = (HERE / "jobs.d" / "gated.toml").read_text()


def timer(definition: str, schedule: str) -> str:
    return f"automd-schedule-{definition}:{schedule}.timer"


def schedule_table(name: str, calendar: str = EVERY_5S, **keys: Any) -> str:
    lines = ["", "[[schedule]]", f'name = "{name}"', f'calendar = "{calendar}"']
    for key, value in keys.items():
        shown = (
            ("true" if value else "false") if isinstance(value, bool)
            else f"{{ {', '.join(f'{k} = {v!r}' for k, v in value.items())} }}"
            if isinstance(value, dict) else f'"{value}"'
        )  # fmt: skip
        lines.append(f"{key} = {shown}".replace("'", '"'))
    return "\n".join(lines) + "\n"


def timer_state(c: Container, unit: str) -> str:
    shown = c.show(unit, "LoadState", "ActiveState")
    return f"{shown['LoadState']}/{shown['ActiveState']}"


class Schedules:
    """Definitions with schedules written into the container's jobs.d for one test, and removed
    (their timers stopped by automd's reload) after it."""

    def __init__(self, c: Container, api: Api) -> None:
        self.c = c
        self.api = api
        self.written: list[str] = []

    async def install(self, name: str, text: str, *timers: str) -> None:
        self.c.write_file(f"{JOBS_DIR}/{name}.toml", text)
        self.written.append(name)
        await self.api.call("system.reload")
        for unit in timers:
            wait_for(f"{unit} active", partial(timer_state, self.c, unit), "loaded/active".__eq__)

    async def remove(self, name: str, *timers: str) -> None:
        self.c.run(["rm", "-f", f"{JOBS_DIR}/{name}.toml"])
        self.written.remove(name)
        await self.api.call("system.reload")
        for unit in timers:
            wait_for(f"{unit} gone", partial(timer_state, self.c, unit),
                     lambda s: not s.endswith("/active"))  # fmt: skip

    async def jobs(self, definition: str, schedule: str | None = None) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"definition": definition, "limit": 500}
        if schedule is not None:
            params["schedule"] = schedule
        listed = await self.api.call("job.list", **params)
        return list(reversed(listed["jobs"]))  # oldest first

    async def firings(self, definition: str) -> list[dict[str, Any]]:
        """schedule.fire's audit entries for the definition, oldest first."""
        # audit.list's "method" param cannot pass through Api.call(method, **params).
        conn = await Connection.open(self.api.socket)
        try:
            reply = await conn.call("audit.list", {"method": "schedule.fire", "limit": 1000})
        finally:
            await conn.close()
        listed = reply["result"]
        return [e for e in reversed(listed["entries"]) if e["definition"] == definition]


@pytest.fixture
async def schedules(container: Container, new_gate: Any) -> AsyncIterator[Schedules]:
    made = Schedules(container, Api(container))
    yield made
    for name in list(made.written):
        await made.remove(name)


def _at(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


async def test_a_5s_schedule_fires_on_time_once_per_firing(
    container: Container, schedules: Schedules
) -> None:
    text = 'executable = "/bin/true"\n' + schedule_table("tick")
    unit = timer("sched-tick", "tick")
    await schedules.install("sched-tick", text, unit)
    jobs = await wait_for_async("6 firings' jobs", lambda: schedules.jobs("sched-tick"),
                                lambda found: len(found) >= 6, within=90)  # fmt: skip
    await schedules.remove("sched-tick", unit)
    service = unit.replace(".timer", ".service")
    wait_for("the last firing done", lambda: timer_state(container, service),
             lambda s: not s.endswith("/activating"))  # fmt: skip
    # Every start of the firing service that systemd ran to its end is one firing.
    ran = container.journal("_PID=1", f"UNIT={service}", "JOB_RESULT=done")
    jobs = await schedules.jobs("sched-tick")
    firings = await schedules.firings("sched-tick")
    assert len(jobs) == len(ran) == len(firings) >= 6
    assert all(f["outcome"] == "ok" and f["params"]["trigger_usec"] for f in firings), firings
    # Trigger times are systemd's (TRIGGER_TIMER_REALTIME_USEC), one per 5 s slot, on time.
    triggers = [_at(job["trigger_at"]) for job in jobs]
    assert len({math.floor(t / 5) for t in triggers}) == len(triggers), triggers
    late = [t - 5 * math.floor(t / 5) for t in triggers]
    assert max(late) < 2.5, late
    assert {job["schedule"] for job in jobs} == {"tick"}
    assert all(job["state"] == "succeeded" for job in jobs), jobs
    # Its runs carry AUTOMD_SCHEDULE= in the journal.
    assert container.journal("AUTOMD_SCHEDULE=tick", f"AUTOMD_JOB_ID={jobs[0]['id']}")


async def test_a_firing_delivered_twice_creates_one_job(
    container: Container, schedules: Schedules
) -> None:
    text = 'executable = "/bin/true"\n' + schedule_table("once", "2099-01-01 00:00:00")
    await schedules.install("sched-once", text, timer("sched-once", "once"))
    service = "automd-schedule-sched-once:once.service"
    trigger = "1767225600000000"  # 2026-01-01 00:00:00 UTC
    container.run(["systemctl", "set-environment", f"TRIGGER_TIMER_REALTIME_USEC={trigger}"])
    try:
        for _ in range(2):
            container.run(["systemctl", "start", service])
    finally:
        container.run(["systemctl", "unset-environment", "TRIGGER_TIMER_REALTIME_USEC"])
    jobs = await schedules.jobs("sched-once")
    assert [job["trigger_at"] for job in jobs] == ["2026-01-01T00:00:00Z"], jobs
    firings = await schedules.firings("sched-once")
    assert [f["job_id"] for f in firings] == [jobs[0]["id"]] * 2
    assert "already taken" in firings[1]["detail"]
    # Started by hand without a timer's trigger time, each start is a firing of its own (now).
    container.run(["systemctl", "start", service])
    assert len(await schedules.jobs("sched-once")) == 2


async def _gated(schedules: Schedules, name: str, gate: Gate, *tables: str) -> None:
    text = GATED + "".join(tables)
    units = [timer(name, t.split('name = "')[1].split('"')[0]) for t in tables]
    await schedules.install(name, text, *units)
    _ = gate


async def test_overlap_skip_skips_while_the_last_job_runs(
    container: Container, schedules: Schedules, new_gate: Any
) -> None:
    gate = new_gate()
    table = schedule_table("s", overlap="skip", params={"gate": gate.name})
    await _gated(schedules, "sched-skip", gate, table)
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
    spans = [(_at(d["attempts"][0]["started_at"]), _at(d["attempts"][0]["finished_at"]))
             for d in details]  # fmt: skip
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert start >= end, spans  # one after another
    assert len(done) == len(ids)


async def test_overlap_replace_cancels_the_running_job_and_says_why(
    container: Container, schedules: Schedules, new_gate: Any
) -> None:
    gate = new_gate()
    table = schedule_table("r", overlap="replace", params={"gate": gate.name})
    await _gated(schedules, "sched-replace", gate, table)
    jobs = await wait_for_async(
        "a job replaced", lambda: schedules.jobs("sched-replace"),
        lambda found: len(found) >= 2 and found[0]["state"] == "cancelled", within=90,
    )  # fmt: skip
    first, second = jobs[0], jobs[1]
    assert first["outcome"].startswith(f"replaced by the firing of {second['trigger_at'][:19]}")
    second = await schedules.api.wait(second["id"], "running", "cancelled")
    detail = await schedules.api.call("job.get", id=first["id"])
    replacing = await schedules.api.call("job.get", id=second["id"])
    assert _at(replacing["attempts"][0]["started_at"]) >= _at(detail["job"]["finished_at"])


async def test_persistent_catches_up_once_and_non_persistent_not_at_all(
    container: Container, schedules: Schedules
) -> None:
    """Downtime is what systemd forgets across: the schedules disabled (their timers stopped
    and unloaded) and automd stopped across a firing time, then enabled again. (A timer merely
    stopped and started within one boot catches up whatever Persistent= says: systemd 252
    bases its next elapse on the last trigger it remembers; docs/definitions.md.)"""
    every = "*:*:0/10"
    units = [timer("sched-persist", "catchup"), timer("sched-persist", "nocatch")]

    def text(enabled: bool) -> str:
        return (
            'executable = "/bin/true"\n'
            + schedule_table("catchup", every, persistent=True, enabled=enabled)
            + schedule_table("nocatch", every, persistent=False, enabled=enabled)
        )

    await schedules.install("sched-persist", text(True), *units)
    # Both fire once (the persistent one then has a stamp of its last trigger).
    for name in ("catchup", "nocatch"):
        await wait_for_async(f"{name} fired", partial(schedules.jobs, "sched-persist", name),
                             bool, within=60)  # fmt: skip
    container.write_file(f"{JOBS_DIR}/sched-persist.toml", text(False))
    await schedules.api.call("system.reload")
    for unit in units:
        wait_for(f"{unit} stopped", partial(timer_state, container, unit),
                 lambda s: not s.endswith("/active"))  # fmt: skip
    container.stop_units("automd.service")
    stopped = time.time()
    missed = 10 * math.floor(stopped / 10) + 10
    # Past a firing time, and early in a 10 s slot: enabling them again (a reload, a
    # daemon-reload) is done before the next firing time, which tells the catch-up from it.
    wait_for("a firing time passed while stopped", time.time,
             lambda now: now > missed + 1 and 1 <= now % 10 < 3)  # fmt: skip
    started = time.time()
    following = 10 * math.floor(started / 10) + 10
    await schedules.install("sched-persist", text(True), *units)  # automd starts for it
    assert time.time() < following, "enabling took a whole 10 s slot: cannot tell catch-up"
    for name in ("catchup", "nocatch"):
        await wait_for_async(
            f"{name} fired after {following}", partial(schedules.jobs, "sched-persist", name),
            lambda found: any(_at(j["trigger_at"]) >= following for j in found), within=60,
        )  # fmt: skip
    for name, expected in (("catchup", 1), ("nocatch", 0)):
        jobs = await schedules.jobs("sched-persist", name)
        between = [j for j in jobs if started - 0.5 <= _at(j["trigger_at"]) < following]
        assert len(between) == expected, (name, started, following, jobs)
        assert not [j for j in jobs if stopped < _at(j["trigger_at"]) < started - 0.5], jobs


async def test_a_bad_calendar_is_reported_and_a_removed_schedule_loses_its_timer(
    container: Container, schedules: Schedules
) -> None:
    good = schedule_table("good", "daily")
    bad = schedule_table("bad", "*-*-* 25:00:00")
    await schedules.install("sched-bad", 'executable = "/bin/true"\n' + bad + good,
                            timer("sched-bad", "good"))  # fmt: skip
    listed = await schedules.api.call("definition.list")
    errors = [e for e in listed["errors"] if e["file"].endswith("/sched-bad.toml")]
    assert [(e["key"], e["reason"][:33]) for e in errors] == [
        ("schedule.bad.calendar", "not a systemd calendar expression")
    ]
    assert timer_state(container, timer("sched-bad", "bad")) != "loaded/active"
    names = {
        (s["definition"], s["name"])
        for s in (await schedules.api.call("schedule.list"))["schedules"]
    }
    assert ("sched-bad", "good") in names
    assert ("sched-bad", "bad") not in names
    assert (await schedules.api.submit("hello", name="still works"))["id"]
    # The good schedule removed from the file: its timer goes on reload.
    await schedules.install("sched-bad", 'executable = "/bin/true"\n')
    wait_for("timer of the removed schedule stopped",
             lambda: timer_state(container, timer("sched-bad", "good")),
             lambda s: not s.endswith("/active"))  # fmt: skip
    gone = container.run(["ls", "/run/systemd/generator"]).stdout.decode()
    assert "sched-bad" not in gone


async def test_schedules_are_listed_with_their_timers_run_now_and_measured(
    container: Container, schedules: Schedules
) -> None:
    text = (
        'executable = "/bin/true"\n'
        + schedule_table("hourly", "hourly")
        + schedule_table("off", "daily", enabled=False)
    )
    await schedules.install("sched-list", text, timer("sched-list", "hourly"))
    listed = json.loads(container.run([AUTOMCTL, "schedules", "--json"]).stdout)
    mine = {s["name"]: s for s in listed["schedules"] if s["definition"] == "sched-list"}
    assert mine["hourly"]["timer_state"] == "active"
    assert 0 < _at(mine["hourly"]["next_elapse"]) - time.time() <= 3600
    assert (mine["off"]["enabled"], mine["off"]["next_elapse"]) == (False, None)
    table = container.run([AUTOMCTL, "schedules"]).stdout.decode().splitlines()
    assert table[0].split() == ["NEXT", "LEFT", "LAST", "SCHEDULE", "DEFINITION", "LAST", "STATE"]
    assert any("hourly" in row and "sched-list" in row for row in table[1:])
    # Fired now by a member of group automd (run permission), with the schedule's own params.
    ran = container.run([AUTOMCTL, "--json", "schedule", "run", "sched-list:hourly"],
                        user=TEST_USER)  # fmt: skip
    fired = json.loads(ran.stdout)
    assert fired["outcome"] == "created"
    job = fired["job"]
    assert (job["schedule"], job["caller_uid"]) == ("hourly", container.user(TEST_USER).uid)
    await schedules.api.wait(job["id"], "succeeded")
    got = await schedules.api.call("schedule.get", definition="sched-list", schedule="hourly")
    assert (got["schedule"]["last_job"], got["schedule"]["last_state"]) == (job["id"], "succeeded")
    unknown = await schedules.api.error("schedule.get", definition="sched-list", schedule="nope")
    assert unknown["code"] == 1009
    page = container.run(["curl", "-s", "--unix-socket", "/run/automd.sock",
                          "http://automd/metrics"]).stdout.decode()  # fmt: skip
    series = [line for line in page.splitlines() if 'definition="sched-list"' in line]
    assert any(s.startswith("automd_schedule_next_fire_timestamp_seconds{") for s in series)
    assert any(s.startswith("automd_schedule_last_job{") and 'state="succeeded"' in s
               and s.endswith(" 1.0") for s in series), series  # fmt: skip
    assert any(s.startswith("automd_schedule_firings_total{") and 'outcome="created"' in s
               for s in series), series  # fmt: skip


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
            spans.append((_at(attempt["started_at"]), _at(attempt["finished_at"])))
        spans.sort()
        for (_, end), (start, _) in itertools.pairwise(spans):
            assert start >= end, spans  # jobs.max_running = 1 over both schedules
        assert len(spans) >= len(jobs)
    finally:
        container.run(["rm", "-f", config])
        container.run(["systemctl", "try-reload-or-restart", "automd.service"])
        gate.open_all()


async def test_a_daemon_reload_for_schedules_leaves_running_jobs_followed(
    container: Container, schedules: Schedules, new_gate: Any
) -> None:
    gate = new_gate()
    job = await schedules.api.submit("gated", gate=gate.name)
    await schedules.api.wait(job["id"], "running")
    reloads = len(container.journal("_PID=1", "MESSAGE=Reloading."))
    text = 'executable = "/bin/true"\n' + schedule_table("daily", "daily")
    await schedules.install("sched-reload", text, timer("sched-reload", "daily"))
    assert len(container.journal("_PID=1", "MESSAGE=Reloading.")) > reloads  # a daemon-reload
    gate.open()
    done = await schedules.api.wait(job["id"], "succeeded", "failed", "unknown")
    assert done["state"] == "succeeded", done
