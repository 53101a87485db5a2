"""Schedules against the container's real systemd: the generator's timers fire the jobs, once
per firing, with and without catch-up, and reloads add and remove timers (issue 19's "Done
when"; the overlap policies: test_schedule_overlap.py).

Schedules here fire every 5 s (`*:*:0/5`); tests wait on jobs, audit entries, the journal and
unit properties, never for a time, except where the point is a firing time passing while the
timer is stopped (then they wait for the wall clock to pass it).
"""

from __future__ import annotations

import json
import math
import time
from functools import partial
from typing import Any

from tests.integration.conftest import (
    JOBS_DIR,
    TEST_USER,
    wait_for,
    wait_for_async,
)
from tests.integration.container import Container
from tests.integration.schedule_kit import (
    AUTOMCTL,
    Schedules,
    at,
    schedule_table,
    timer,
    timer_state,
)


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
    triggers = [at(job["trigger_at"]) for job in jobs]
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
            lambda found: any(at(j["trigger_at"]) >= following for j in found), within=60,
        )  # fmt: skip
    for name, expected in (("catchup", 1), ("nocatch", 0)):
        jobs = await schedules.jobs("sched-persist", name)
        between = [j for j in jobs if started - 0.5 <= at(j["trigger_at"]) < following]
        assert len(between) == expected, (name, started, following, jobs)
        assert not [j for j in jobs if stopped < at(j["trigger_at"]) < started - 0.5], jobs


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
    assert 0 < at(mine["hourly"]["next_elapse"]) - time.time() <= 3600
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
