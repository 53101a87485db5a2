"""Schedules without systemd: the model and its checks (systemd-analyze on this host), unit
names, the generator's unit files, and a firing's overlap policy in the store."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from automd.config import JobsSettings
from automd.definitions.loader import load_definitions, load_with_schedules
from automd.definitions.names import NAME_PATTERN
from automd.definitions.registry import DefinitionRegistry
from automd.definitions.schedule import (
    calendar_problem,
    parse_unit_base,
    unit_base,
)
from automd.generator import write_units
from automd.jobs.dispatcher import claim_free_slots
from automd.jobs.schedules import ScheduleService
from automd.jobs.service import Caller, JobService
from automd.schedule_units import render_units, written_units
from automd.store import jobs as rows
from automd.store.db import Store

TOML = """\
executable = "/bin/echo"
argv = ["{n}"]
[parameters.n]
type = "integer"
required = true
"""


def schedule(name: str, calendar: str = "daily", **keys: str) -> str:
    extra = "".join(f"{k} = {v}\n" for k, v in keys.items())
    return f'\n[[schedule]]\nname = "{name}"\ncalendar = "{calendar}"\n{extra}'


def test_unit_names_are_distinct_for_every_pair_of_names() -> None:
    names = ["a", "a-b", "b", "b-c", "a_b", "c", "0", "x-"]
    bases = {unit_base(d, s) for d, s in itertools.product(names, names)}
    assert len(bases) == len(names) ** 2
    assert unit_base("a-b", "c") != unit_base("a", "b-c")
    for d, s in itertools.product(names, names):
        assert parse_unit_base(unit_base(d, s) + ".timer") == (d, s)
    # No job unit (automd-<definition>-<26 characters>-<attempt>.service) parses as one.
    assert parse_unit_base("automd-schedule-01m95a9fggqwxhdx54cyj6kjs8-1.service") is None


def test_unit_names_refuse_what_is_not_a_name() -> None:
    with pytest.raises(ValueError, match="not a definition or schedule name"):
        unit_base("a:b", "c")
    assert NAME_PATTERN == r"[a-z0-9][a-z0-9_-]{0,63}"


def test_systemd_decides_what_a_calendar_is() -> None:
    assert calendar_problem("*:*:0/5") is None
    assert calendar_problem("Mon..Fri *-*-* 03:00:00") is None
    reason = calendar_problem("*-*-* 25:00:00")
    assert reason is not None
    assert reason.startswith("not a systemd calendar expression")
    assert calendar_problem("daily\nhourly") is not None


def test_a_bad_schedule_is_reported_and_the_rest_load(tmp_path: Path) -> None:
    path = tmp_path / "j.toml"
    path.write_text(
        TOML
        + schedule("good", params="{ n = 3 }")
        + schedule("badcal", "*-*-* 25:00:00", params="{ n = 1 }")
        + schedule("badparam", params='{ n = "x" }')
        + schedule("unknown", params="{ n = 1, m = 2 }")
        + schedule("good", params="{ n = 4 }")
        + schedule("overlap", params="{ n = 1 }", overlap='"sometimes"')
    )
    loaded = load_with_schedules(path)
    assert isinstance(loaded, tuple)
    definition, errors = loaded
    assert [s.name for s in definition.schedules] == ["good"]
    assert [(e.file, e.key) for e in errors] == [
        (str(path), "schedule.badcal.calendar"),
        (str(path), "schedule.badparam.params.n"),
        (str(path), "schedule.unknown.params.m"),
        (str(path), "schedule.good.name"),
        (str(path), "schedule.overlap.overlap"),
    ]
    assert load_definitions(tmp_path).definitions["j"].schedules == definition.schedules


def test_schedules_is_not_a_key_of_the_file(tmp_path: Path) -> None:
    (tmp_path / "j.toml").write_text(TOML + '\n[[schedules]]\nname = "x"\ncalendar = "daily"\n')
    (error,) = load_definitions(tmp_path).errors
    assert (error.key, error.reason) == ("schedules", "unknown key; did you mean 'schedule'?")


def test_the_generator_writes_timers_services_and_wants_links(tmp_path: Path) -> None:
    jobs = tmp_path / "jobs.d"
    jobs.mkdir()
    (jobs / "backup.toml").write_text(
        TOML
        + schedule(
            "nightly",
            "*-*-* 03:00:00",
            params="{ n = 1 }",
            persistent="true",
            randomized_delay='"15m"',
        )
        + schedule("off", params="{ n = 2 }", enabled="false")
    )
    units = render_units(load_definitions(jobs).definitions, "/usr/bin/automctl")
    out = tmp_path / "generator"
    write_units(units, out)
    assert written_units(out) == units
    nightly = "automd-schedule-backup:nightly"
    assert units.enabled == {f"{nightly}.timer"}
    assert units.timers == {f"{nightly}.timer", "automd-schedule-backup:off.timer"}
    timer = (out / f"{nightly}.timer").read_text()
    for line in ("OnCalendar=*-*-* 03:00:00", "Persistent=yes", "RandomizedDelaySec=15m",
                 "FixedRandomDelay=yes", "AccuracySec=100ms"):  # fmt: skip
        assert line in timer.splitlines()
    service = (out / f"{nightly}.service").read_text().splitlines()
    assert "ExecStart=/usr/bin/automctl __fire backup nightly" in service
    assert "Type=oneshot" in service
    # The parameters stay with automd: the unit names the firing only.
    assert not any("n = 1" in line or "n=1" in line for line in service)
    assert (out / "timers.target.wants" / f"{nightly}.timer").resolve() == out / f"{nightly}.timer"


async def _service(tmp_path: Path, overlap: str) -> tuple[Store, ScheduleService]:
    jobs_dir = tmp_path / "jobs.d"
    jobs_dir.mkdir(exist_ok=True)
    (jobs_dir / "j.toml").write_text(
        TOML + schedule("s", params="{ n = 1 }", overlap=f'"{overlap}"')
    )
    registry = DefinitionRegistry(jobs_dir)
    registry.reload()
    store = await Store.open(tmp_path / "state")
    jobs = JobService(store, registry, None, JobsSettings())  # type: ignore[arg-type]
    return store, ScheduleService(store, registry, jobs, None)  # type: ignore[arg-type]


ROOT = Caller(uid=0, pid=1)


async def test_a_firing_delivered_twice_is_one_job(tmp_path: Path) -> None:
    store, service = await _service(tmp_path, "queue")
    try:
        first = await service.fire("j", "s", 1_000_000, ROOT)
        again = await service.fire("j", "s", 1_000_000, ROOT)
        assert first.job is not None
        assert (again.replayed, again.job) == (True, first.job)
        assert first.job.trigger_at == 1.0
        assert first.job.schedule == "s"
        later = await service.fire("j", "s", 6_000_000, ROOT)
        assert later.job is not None
        assert later.job.id != first.job.id
    finally:
        await store.close()


async def test_skip_creates_no_job_while_one_is_unfinished(tmp_path: Path) -> None:
    store, service = await _service(tmp_path, "skip")
    try:
        first = await service.fire("j", "s", 1, ROOT)
        skipped = await service.fire("j", "s", 2, ROOT)
        assert (skipped.outcome, skipped.job) == ("skipped", None)
        assert first.job is not None
        assert first.job.id in skipped.detail
        assert service.firings[("j", "s", "skipped")] == 1
    finally:
        await store.close()


async def test_replace_cancels_a_queued_job_and_says_why(tmp_path: Path) -> None:
    store, service = await _service(tmp_path, "replace")
    try:
        first = await service.fire("j", "s", 1_000_000, ROOT)
        second = await service.fire("j", "s", 2_000_000, ROOT)
        assert first.job is not None
        assert second.job is not None
        old = rows.get_job(store, first.job.id)
        assert old is not None
        assert old.state == "cancelled"
        assert old.outcome == "replaced by the firing of 1970-01-01T00:00:02.000+00:00"
    finally:
        await store.close()


async def test_the_dispatcher_starts_a_schedules_jobs_one_after_another(tmp_path: Path) -> None:
    store, service = await _service(tmp_path, "queue")
    try:
        first = await service.fire("j", "s", 1, ROOT)
        second = await service.fire("j", "s", 2, ROOT)
        assert first.job is not None
        assert second.job is not None
        claimed, _ = await store.write(lambda conn: claim_free_slots(conn, 10, 3.0))
        assert [c.job.id for c in claimed] == [first.job.id]
        # Still running: nothing more may start, however many slots are free.
        again, _ = await store.write(lambda conn: claim_free_slots(conn, 10, 4.0))
        assert again == []
        done = first.job.id
        await store.write(lambda conn: rows.update_job(conn, done, state="succeeded"))
        after, _ = await store.write(lambda conn: claim_free_slots(conn, 10, 5.0))
        assert [c.job.id for c in after] == [second.job.id]
    finally:
        await store.close()
