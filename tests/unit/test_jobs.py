"""Job lifecycle logic against a real store and a fake systemd (the real one: integration)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from automd.api.jobs import JobListParams, JobState
from automd.config import JobsSettings
from automd.definitions.model import RetryPolicy
from automd.definitions.registry import DefinitionRegistry
from automd.errors import (
    IdempotencyConflict,
    InvalidJobState,
    InvalidParams,
    JobNotFound,
    QueueFull,
    SystemdUnavailable,
    UnknownDefinition,
)
from automd.jobs.ids import encode_ulid, new_job_id
from automd.jobs.plan import RunPlan, parse_unit_name, unit_name, unit_spec
from automd.jobs.policy import backoff_delay, judge, should_retry
from automd.jobs.queries import JobQueries
from automd.jobs.service import Caller, JobService
from automd.store import jobs as rows
from automd.store.db import Store
from automd.systemd.events import UnitEventStream, UnitFinished, UnitStarted
from automd.systemd.units import UnitOutcome, UnitSpec

CALLER = Caller(uid=1000, pid=4242)
WAIT_SECONDS = 5.0


def outcome(unit: str = "u", result: str = "success", exit_code: int | None = 0,
            signal: int | None = None) -> UnitOutcome:  # fmt: skip
    return UnitOutcome(unit=unit, invocation_id="ab" * 16, result=result, exit_code=exit_code,
                       signal=signal, source="dbus")  # fmt: skip


class FakeSystemd:
    """Records what the service asks of systemd; the test decides what systemd answers."""

    def __init__(self) -> None:
        self.started: list[UnitSpec] = []
        self.stopped: list[str] = []
        self.loaded: list[str] = []
        self.journal: dict[str, UnitOutcome] = {}
        self.unavailable = False
        self.changed = asyncio.Condition()
        self.events = UnitEventStream()

    def report_started(self, unit: str, invocation_id: str) -> None:
        self.events.publish(UnitStarted(unit, invocation_id))

    def report_finished(self, outcome: UnitOutcome) -> None:
        self.events.publish(UnitFinished(outcome))

    async def start_unit(self, spec: UnitSpec) -> None:
        if self.unavailable:
            raise SystemdUnavailable()
        async with self.changed:
            self.started.append(spec)
            self.changed.notify_all()

    async def stop_unit(self, name: str) -> None:
        self.stopped.append(name)

    async def reset_failed(self, name: str) -> None:
        pass

    def following(self, name: str) -> bool:
        return (
            name in self.loaded
            or any(spec.name == name for spec in self.started)
            or self.events.holds(name)
        )

    async def adopt(self) -> list[str]:
        if self.unavailable:
            raise SystemdUnavailable()
        return list(self.loaded)

    async def outcome_from_journal(
        self, unit: str, invocation_id: str | None
    ) -> UnitOutcome | None:
        return self.journal.get(unit)


def write_definitions(directory: Path) -> None:
    directory.mkdir(exist_ok=True)
    (directory / "echo.toml").write_text(
        'executable = "/usr/bin/echo"\nargv = ["{text}"]\nconcurrency = 2\n'
        '[parameters.text]\ntype = "string"\ndefault = "hi"\n'
    )
    (directory / "flaky.toml").write_text(
        'executable = "/bin/false"\n[retry]\nmax_attempts = 3\ninitial_delay_seconds = 0.05\n'
        'jitter = 0\non_results = ["exit-code"]\n'
    )


class Harness:
    def __init__(self, tmp_path: Path, settings: JobsSettings) -> None:
        self.tmp_path = tmp_path
        self.settings = settings
        self.systemd = FakeSystemd()
        self.store: Store
        self.service: JobService
        self.registry: DefinitionRegistry

    async def open(self) -> JobService:
        write_definitions(self.tmp_path / "jobs.d")
        self.registry = registry = DefinitionRegistry(self.tmp_path / "jobs.d")
        registry.reload()
        self.store = await Store.open(self.tmp_path / "state")
        self.service = JobService(self.store, registry, self.systemd, self.settings)  # type: ignore[arg-type]
        await self.service.start()
        await asyncio.wait_for(self.service.reconciled.wait(), 5)
        return self.service

    async def restart(self) -> JobService:
        return await self.restart_with_loaded([])

    async def restart_with_loaded(self, loaded: list[str]) -> JobService:
        """Stop automd (units keep running) and start it again with these units loaded."""
        await self.close()
        self.systemd = FakeSystemd()
        self.systemd.loaded = loaded
        return await self.open()

    async def close(self) -> None:
        await self.service.stop()
        await self.store.close()

    async def wait_for(self, job_id: str, *states: JobState) -> rows.JobRecord:
        """Poll the store: job state changes have no notification hook to wait on."""
        async with asyncio.timeout(WAIT_SECONDS):
            while True:
                job = await self.service.get(job_id)
                if job.state in states:
                    return job
                await asyncio.sleep(0.01)

    async def wait_started(self, count: int) -> None:
        async with asyncio.timeout(WAIT_SECONDS), self.systemd.changed:
            await self.systemd.changed.wait_for(lambda: len(self.systemd.started) >= count)

    def finish(self, spec: UnitSpec, result: str = "success", exit_code: int | None = 0,
               signal: int | None = None) -> None:  # fmt: skip
        self.systemd.report_started(spec.name, "ab" * 16)
        self.systemd.report_finished(outcome(spec.name, result, exit_code, signal))


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    h = Harness(tmp_path, JobsSettings(max_running=4, max_unfinished=1000))
    await h.open()
    yield h
    await h.close()


def detail(
    harness: Harness, job_id: str
) -> tuple[rows.JobRecord, list[rows.AttemptRecord], list[rows.EventRecord]]:
    found = harness.store.lookup(lambda conn: rows.job_detail(conn, job_id))
    assert found is not None
    return found


# --- pure policy -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("result", "code", "sig", "reason"),
    [
        ("success", None, 15, "cancelled (stopped with SIGTERM)"),
        ("success", None, None, "cancelled (stopped with SIGTERM)"),  # from the journal
        ("signal", None, 9, "cancelled (killed with SIGKILL: it outlived the stop timeout)"),
        ("signal", None, 2, "cancelled (ended by SIGINT)"),
        ("exit-code", 1, None, "cancelled (exited with status 1 when stopped)"),
        ("start-canceled", None, None, "cancelled (before its unit ran)"),  # stop overtook start
    ],
)
def test_a_cancel_says_how_the_job_stopped(
    result: str, code: int | None, sig: int | None, reason: str
) -> None:
    verdict = judge(outcome(result=result, exit_code=code, signal=sig), cancel_requested=True)
    assert (verdict.state, verdict.reason) == (JobState.CANCELLED, reason)


@pytest.mark.parametrize(
    ("result", "code", "sig", "cancel", "state"),
    [
        ("success", 0, None, False, JobState.SUCCEEDED),
        ("exit-code", 3, None, False, JobState.FAILED),
        ("exit-code", 203, None, False, JobState.FAILED),
        ("timeout", None, 15, False, JobState.TIMED_OUT),
        ("signal", None, 9, False, JobState.FAILED),
        ("success", None, 15, True, JobState.CANCELLED),  # systemd calls a stop "success"
        ("success", None, 15, False, JobState.FAILED),  # someone else stopped it
        ("success", 0, None, True, JobState.SUCCEEDED),  # it finished before the cancel hit
        ("exit-code", 1, None, True, JobState.CANCELLED),
        ("success", None, None, False, JobState.SUCCEEDED),  # from the journal: no status logged
        ("success", None, None, True, JobState.CANCELLED),  # ...but a stop looks the same
        ("unknown", None, None, False, JobState.UNKNOWN),
        ("start-canceled", None, None, False, JobState.FAILED),  # never ran: no success
        ("start-canceled", None, None, True, JobState.CANCELLED),
    ],
)
def test_judge(
    result: str, code: int | None, sig: int | None, cancel: bool, state: JobState
) -> None:
    assert (
        judge(outcome(result=result, exit_code=code, signal=sig), cancel_requested=cancel).state
        == state
    )


def test_retry_policy() -> None:
    policy = RetryPolicy(max_attempts=3, on_results=("exit-code",), on_exit_codes=(75,))
    failed = outcome(result="exit-code", exit_code=75)
    verdict = judge(failed, cancel_requested=False)
    assert should_retry(failed, verdict, policy, attempt=1)
    assert not should_retry(failed, verdict, policy, attempt=3)  # budget spent
    other = outcome(result="exit-code", exit_code=1)
    assert not should_retry(other, judge(other, cancel_requested=False), policy, attempt=1)
    timeout = outcome(result="timeout", exit_code=None, signal=15)
    assert not should_retry(timeout, judge(timeout, cancel_requested=False), policy, attempt=1)


def test_backoff_is_exponential_capped_and_jittered() -> None:
    policy = RetryPolicy(initial_delay_seconds=2, multiplier=3, max_delay_seconds=30, jitter=0.5)
    assert backoff_delay(policy, 1, 0.5) == 2
    assert backoff_delay(policy, 2, 0.5) == 6
    assert backoff_delay(policy, 5, 0.5) == 30
    assert backoff_delay(policy, 5, 0.0) == 15
    assert backoff_delay(policy, 5, 0.999999) == pytest.approx(45, rel=1e-4)


def test_unit_names_round_trip() -> None:
    name = unit_name("my-def_2", "01jd3k5x2q8v7n4m6p9r0s1t2u", 3)
    assert name == "automd-my-def_2-01jd3k5x2q8v7n4m6p9r0s1t2u-3.service"
    assert parse_unit_name(name) == ("01jd3k5x2q8v7n4m6p9r0s1t2u", 3)
    assert parse_unit_name("automd.service") is None
    assert parse_unit_name("automd-x-short-1.service") is None


# --- the service -------------------------------------------------------------------------------


async def test_submit_then_run_to_success(harness: Harness) -> None:
    job, replayed = await harness.service.submit("echo", {"text": "$(id)"}, None, CALLER)
    assert (job.state, replayed) == (JobState.QUEUED, False)
    await harness.wait_started(1)
    spec = harness.systemd.started[0]
    assert spec.argv == ("/usr/bin/echo", "$(id)")
    assert spec.name == unit_name("echo", job.id, 1)
    assert spec.environment["AUTOMD_JOB_ID"] == job.id
    assert spec.log_extra_fields == {"AUTOMD_JOB_ID": job.id, "AUTOMD_DEFINITION": "echo",
                                     "AUTOMD_ATTEMPT": "1"}  # fmt: skip
    harness.finish(spec)
    done = await harness.wait_for(job.id, JobState.SUCCEEDED)
    assert (done.exit_code, done.result, done.attempts) == (0, "success", 1)
    events = [e.state for e in detail(harness, job.id)[2]]
    assert events == ["queued", "starting", "running", "succeeded"]


async def test_submit_errors(harness: Harness) -> None:
    with pytest.raises(UnknownDefinition):
        await harness.service.submit("nope", {}, None, CALLER)
    with pytest.raises(InvalidParams) as info:
        await harness.service.submit("echo", {"text": "-rf"}, None, CALLER)
    assert info.value.data["field"] == "params.text"


async def test_idempotent_replay_and_conflict(harness: Harness) -> None:
    first, _ = await harness.service.submit("echo", {"text": "a"}, "key-1", CALLER)
    again, replayed = await harness.service.submit("echo", {"text": "a"}, "key-1", CALLER)
    assert (again.id, replayed) == (first.id, True)
    with pytest.raises(IdempotencyConflict) as info:
        await harness.service.submit("echo", {"text": "b"}, "key-1", CALLER)
    assert info.value.data == {"idempotency_key": "key-1", "job": first.id}
    # Keys belong to a caller: another uid's identical key is a new job.
    other, replayed = await harness.service.submit("echo", {"text": "a"}, "key-1", Caller(1001, 1))
    assert (other.id != first.id, replayed) == (True, False)


async def test_200_concurrent_submits_of_50_keys_make_50_jobs(harness: Harness) -> None:
    harness.service.settings = JobsSettings(max_running=1, max_unfinished=1000)
    results = await asyncio.gather(
        *(harness.service.submit("echo", {"text": f"t{i % 50}"}, f"k{i % 50}", CALLER)
          for i in range(200))
    )  # fmt: skip
    assert len({job.id for job, _ in results}) == 50
    assert sum(not replayed for _, replayed in results) == 50
    all_jobs = await rows.list_jobs(harness.store, limit=1000)
    assert len(all_jobs) == 50


async def test_concurrency_limits_hold(harness: Harness) -> None:
    ids = [(await harness.service.submit("echo", {}, None, CALLER))[0].id for _ in range(6)]
    await harness.wait_started(2)
    await asyncio.sleep(0.1)
    assert len(harness.systemd.started) == 2  # echo's concurrency = 2, though max_running = 4
    harness.finish(harness.systemd.started[0])
    await harness.wait_started(3)
    for spec in list(harness.systemd.started):
        harness.finish(spec)
    await harness.wait_started(5)
    for spec in harness.systemd.started[3:]:
        harness.finish(spec)
    await harness.wait_started(6)
    harness.finish(harness.systemd.started[5])
    for job_id in ids:
        await harness.wait_for(job_id, JobState.SUCCEEDED)


async def test_a_reload_changes_what_the_next_submit_runs(harness: Harness) -> None:
    """Each definition keeps the fixed part of its plans (made once, not on every submit): a
    reload loads new definitions, so the next submit runs the new one, and a job queued before
    keeps the plan it was submitted with. So does a reloaded log rate limit setting."""
    before, _ = await harness.service.submit("echo", {"text": "a"}, None, CALLER)
    (harness.tmp_path / "jobs.d" / "echo.toml").write_text(
        'executable = "/usr/bin/printf"\nargv = ["{text}"]\nconcurrency = 2\n'
        "[limits]\nruntime_max_seconds = 60\n[sandbox]\nprivate_network = true\n"
        '[parameters.text]\ntype = "string"\ndefault = "hi"\n'
    )
    harness.registry.reload()
    after, _ = await harness.service.submit("echo", {"text": "b"}, None, CALLER)
    harness.service.settings = harness.settings.model_copy(update={"log_rate_limit_burst": 7})
    quieter, _ = await harness.service.submit("echo", {"text": "c"}, None, CALLER)
    old, new, last = (RunPlan.model_validate_json(job.plan) for job in (before, after, quieter))
    assert (old.argv, new.argv, last.argv) == (
        ("/usr/bin/echo", "a"), ("/usr/bin/printf", "b"), ("/usr/bin/printf", "c")
    )  # fmt: skip
    assert (old.runtime_max_usec, new.runtime_max_usec) == (3_600_000_000, 60_000_000)
    assert (old.sandbox["PrivateNetwork"], new.sandbox["PrivateNetwork"]) == (False, True)
    assert (new.log_rate_limit_burst, last.log_rate_limit_burst) == (10_000, 7)
    stored = await harness.service.get(before.id)
    assert RunPlan.model_validate_json(stored.plan).argv == ("/usr/bin/echo", "a")


async def test_queue_full(tmp_path: Path) -> None:
    h = Harness(tmp_path, JobsSettings(max_running=1, max_unfinished=2))
    await h.open()
    try:
        await h.service.submit("echo", {}, None, CALLER)
        await h.service.submit("echo", {}, None, CALLER)
        with pytest.raises(QueueFull):
            await h.service.submit("echo", {}, None, CALLER)
    finally:
        await h.close()


async def test_a_replay_is_answered_when_the_queue_is_full(tmp_path: Path) -> None:
    """A client retrying its keyed submit gets its job back, not 1005 (found while adding the
    Idempotency-Key header: the draft says a replay returns the first result). Checked: fails
    on the code before the fix."""
    h = Harness(tmp_path, JobsSettings(max_running=1, max_unfinished=1))
    await h.open()
    try:
        first, _ = await h.service.submit("echo", {}, "k1", CALLER)
        with pytest.raises(QueueFull):
            await h.service.submit("echo", {}, "k2", CALLER)
        again, replayed = await h.service.submit("echo", {}, "k1", CALLER)
        assert (again.id, replayed) == (first.id, True)
    finally:
        await h.close()


async def test_failed_attempts_are_retried_with_backoff_then_fail(harness: Harness) -> None:
    job, _ = await harness.service.submit("flaky", {}, None, CALLER)
    for attempt in (1, 2, 3):
        await harness.wait_started(attempt)
        spec = harness.systemd.started[attempt - 1]
        assert spec.name == unit_name("flaky", job.id, attempt)
        harness.finish(spec, "exit-code", 1)
    done = await harness.wait_for(job.id, JobState.FAILED)
    assert (done.attempts, done.exit_code) == (3, 1)
    # The 50 ms waits are too short to catch by polling (a loaded machine missed one): the
    # recorded events show each of them.
    _, attempts, events = detail(harness, job.id)
    assert [e.state for e in events].count(JobState.WAITING_RETRY) == 2
    assert [a.retry_reason is not None for a in attempts] == [True, True, False]
    assert "retrying in" in (attempts[0].retry_reason or "")


async def test_cancel_queued_running_and_finished(harness: Harness) -> None:
    harness.service.settings = JobsSettings(max_running=1, max_unfinished=1000)
    running, _ = await harness.service.submit("echo", {}, None, CALLER)
    queued, _ = await harness.service.submit("echo", {}, None, CALLER)
    await harness.wait_started(1)
    cancelled = await harness.service.cancel(queued.id)
    assert cancelled.state == JobState.CANCELLED
    requested = await harness.service.cancel(running.id)
    assert requested.cancel_requested
    assert harness.systemd.stopped == [unit_name("echo", running.id, 1)]
    # systemd reports the stop as success with SIGTERM; automd knows it asked.
    harness.finish(harness.systemd.started[0], "success", None, 15)
    stopped = await harness.wait_for(running.id, JobState.CANCELLED)
    # Issue 16.4: it reads as a cancel, not as systemd's "success".
    # Checked: fails on the code before (no outcome; the verdict said only "cancelled").
    assert (stopped.signal, stopped.outcome) == (15, "cancelled (stopped with SIGTERM)")
    assert (await harness.service.get(queued.id)).outcome == "cancelled before it ran"
    with pytest.raises(InvalidJobState):
        await harness.service.cancel(running.id)
    await asyncio.sleep(0.1)
    assert len(harness.systemd.started) == 1  # the dequeued job never started


async def test_manual_retry_of_a_finished_job(harness: Harness) -> None:
    job, _ = await harness.service.submit("echo", {}, None, CALLER)
    await harness.wait_started(1)
    harness.finish(harness.systemd.started[0], "exit-code", 2)
    await harness.wait_for(job.id, JobState.FAILED)
    with pytest.raises(InvalidJobState):
        await harness.service.retry((await harness.service.submit("echo", {}, None, CALLER))[0].id)
    retried = await harness.service.retry(job.id)
    assert retried.state == JobState.QUEUED
    await harness.wait_started(3)  # the job, the unfinished one above, then the retry
    names = {spec.name for spec in harness.systemd.started}
    assert unit_name("echo", job.id, 2) in names


async def test_restart_readopts_running_units_and_resumes_retries(harness: Harness) -> None:
    running, _ = await harness.service.submit("echo", {}, None, CALLER)
    flaky, _ = await harness.service.submit("flaky", {}, None, CALLER)
    await harness.wait_started(2)
    by_name = {s.name: s for s in harness.systemd.started}
    harness.systemd.report_started(unit_name("echo", running.id, 1), "cd" * 16)
    harness.finish(by_name[unit_name("flaky", flaky.id, 1)], "exit-code", 1)
    await harness.wait_for(running.id, JobState.RUNNING)
    await harness.wait_for(flaky.id, JobState.WAITING_RETRY)

    await harness.restart_with_loaded([unit_name("echo", running.id, 1)])
    # The running unit is followed again; its outcome arrives from the new Systemd.
    harness.systemd.report_finished(outcome(unit_name("echo", running.id, 1)))
    await harness.wait_for(running.id, JobState.SUCCEEDED)
    # The persisted retry fires after the restart: attempt 2 starts exactly once.
    await harness.wait_started(1)
    assert [s.name for s in harness.systemd.started] == [unit_name("flaky", flaky.id, 2)]


async def test_restart_takes_outcomes_from_the_journal(harness: Harness) -> None:
    job, _ = await harness.service.submit("echo", {}, None, CALLER)
    await harness.wait_started(1)
    unit = harness.systemd.started[0].name
    harness.systemd.report_started(unit, "ef" * 16)
    await harness.wait_for(job.id, JobState.RUNNING)
    await harness.service.stop()
    await harness.store.close()
    harness.systemd = FakeSystemd()
    harness.systemd.journal[unit] = outcome(unit, "exit-code", 7)
    await harness.open()
    done = await harness.wait_for(job.id, JobState.FAILED)
    assert done.exit_code == 7
    attempts = detail(harness, job.id)[1]
    assert attempts[0].outcome_source == "dbus"  # as reported by the (fake) journal source


async def test_restart_requeues_a_start_that_never_reached_systemd(harness: Harness) -> None:
    harness.systemd.unavailable = True
    job, _ = await harness.service.submit("echo", {}, None, CALLER)
    await harness.wait_for(job.id, JobState.STARTING)
    await harness.service.stop()
    await harness.store.close()
    harness.systemd = FakeSystemd()  # no such unit loaded, nothing in the journal
    await harness.open()
    await harness.wait_started(1)
    assert harness.systemd.started[0].name == unit_name("echo", job.id, 1)


async def test_restart_marks_a_vanished_running_job_unknown(harness: Harness) -> None:
    job, _ = await harness.service.submit("echo", {}, None, CALLER)
    await harness.wait_started(1)
    harness.systemd.report_started(harness.systemd.started[0].name, "12" * 16)
    await harness.wait_for(job.id, JobState.RUNNING)
    await harness.restart()
    assert (await harness.wait_for(job.id, JobState.UNKNOWN)).finished_at is not None


async def test_idempotency_keys_expire_after_their_window(tmp_path: Path) -> None:
    now = [1_000_000.0]
    h = Harness(tmp_path, JobsSettings(max_running=1, idempotency_window_seconds=60))
    await h.open()
    try:
        h.service._clock = lambda: now[0]  # a controllable clock for the window
        first, _ = await h.service.submit("echo", {}, "nightly", CALLER)
        now[0] += 30
        assert (await h.service.submit("echo", {}, "nightly", CALLER)) == (first, True)
        now[0] += 31  # past the window: the key is forgotten, a new job starts
        second, replayed = await h.service.submit("echo", {}, "nightly", CALLER)
        assert (second.id != first.id, replayed) == (True, False)
        now[0] += 61
        assert await h.service.purge_expired_keys() == 1
        keys = await h.store.fetch_all("SELECT key FROM idempotency_keys")
        assert keys == []
    finally:
        await h.close()


# --- job.get's cache -------------------------------------------------------------------------


async def test_job_get_cache_is_dropped_by_every_write_of_the_job(harness: Harness) -> None:
    """At every step of a job's life, the cached job.get equals a read straight from SQLite
    as soon as the write that made the step has returned (nothing acknowledged reads stale).

    Steps made by the dispatcher or follower are acknowledged to nobody: for those the test
    waits until the cache shows them, then compares. (SQLite has a commit a moment before the
    cache hears of it; only an acknowledged write must never be read stale.)"""
    cached, uncached = JobQueries(harness.store), JobQueries(harness.store, cache_size=0)

    async def check(job_id: str) -> JobState:
        first = await cached.get(job_id)
        assert first == await uncached.get(job_id)
        assert await cached.get(job_id) is first  # the second read came from the cache
        return first.job.state

    async def reaches(job_id: str, state: JobState) -> None:
        async with asyncio.timeout(WAIT_SECONDS):
            while (await cached.get(job_id)).job.state != state:  # noqa: ASYNC110 (no hook)
                await asyncio.sleep(0.005)
        assert await check(job_id) == state

    harness.service.settings = JobsSettings(max_running=1, max_unfinished=1000)
    job, _ = await harness.service.submit("echo", {}, None, CALLER)
    await reaches(job.id, JobState.STARTING)  # the dispatcher's write, not awaited by anyone
    await harness.wait_started(1)
    harness.systemd.report_started(harness.systemd.started[0].name, "ab" * 16)
    await reaches(job.id, JobState.RUNNING)
    queued, _ = await harness.service.submit("echo", {}, None, CALLER)
    assert await check(queued.id) == JobState.QUEUED  # the one run slot is taken
    await harness.service.cancel(queued.id)  # an acknowledged write: no waiting allowed
    assert await check(queued.id) == JobState.CANCELLED
    assert (await cached.get(queued.id)).events[-1].detail == "cancelled before it ran"
    await harness.service.cancel(job.id)
    assert (await cached.get(job.id)).job.cancel_requested
    harness.finish(harness.systemd.started[0], "success", None, 15)
    await reaches(job.id, JobState.CANCELLED)
    # Another job takes the run slot first, so the retried one stays queued: nothing but the
    # acknowledged retry writes it before the check.
    blocker, _ = await harness.service.submit("echo", {}, None, CALLER)
    await reaches(blocker.id, JobState.STARTING)
    await harness.service.retry(job.id)
    assert await check(job.id) == JobState.QUEUED
    assert [a.number for a in (await cached.get(job.id)).attempts] == [1]


async def test_job_get_cache_keeps_owners_apart_and_stays_bounded(harness: Harness) -> None:
    queries = JobQueries(harness.store, cache_size=2)
    ids = [(await harness.service.submit("echo", {}, None, CALLER))[0].id for _ in range(3)]
    for job_id in ids:
        assert (await queries.get(job_id, owner=CALLER.uid)).job.id == job_id
        with pytest.raises(JobNotFound):  # cached or not, another uid's job is not found
            await queries.get(job_id, owner=CALLER.uid + 1)
    assert len(queries._cache) == 2
    assert ids[0] not in queries._cache  # the oldest entry was dropped
    with pytest.raises(JobNotFound):
        await queries.get("0" * 26)


def test_job_ids_are_ulids_in_crockford_base32() -> None:
    # The ULID spec's example time, 1469918176385 ms, reads 01ARYZ6S41.
    assert encode_ulid(1469918176385, 0) == "01aryz6s410000000000000000"
    assert encode_ulid(0, (1 << 80) - 1) == "0000000000zzzzzzzzzzzzzzzz"
    assert encode_ulid((1 << 48) - 1, 0) == "7zzzzzzzzz0000000000000000"
    assert encode_ulid(0, 1 << 80) == "0" * 26  # the random part wraps, never spills over


def test_job_ids_increase_within_a_millisecond() -> None:
    ids = [new_job_id() for _ in range(1000)]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    assert all(len(job_id) == 26 for job_id in ids)


class _AdoptDeliversWhileJournalWaits(FakeSystemd):
    """adopt() reports a unit that ended while automd was down, as the real one does (its
    lookup delivers the outcome at once); the journal read for another job is held until
    that outcome is recorded, so reconciliation's list of unfinished jobs is stale by then."""

    def __init__(self, store: Store, finished: UnitOutcome, held_unit: str, job_id: str) -> None:
        super().__init__()
        self.store = store
        self.finished = finished
        self.held_unit = held_unit
        self.job_id = job_id

    async def adopt(self) -> list[str]:
        self.report_finished(self.finished)
        return [self.finished.unit]

    async def outcome_from_journal(
        self, unit: str, invocation_id: str | None
    ) -> UnitOutcome | None:
        if unit == self.held_unit:
            async with asyncio.timeout(WAIT_SECONDS):
                while True:
                    job = rows.get_job(self.store, self.job_id)
                    if job is not None and job.state == JobState.WAITING_RETRY:
                        break
                    await asyncio.sleep(0.01)
        return await super().outcome_from_journal(unit, invocation_id)


async def test_restart_race_a_job_finished_during_reconcile_keeps_no_run_slot(
    tmp_path: Path,
) -> None:
    """Issue 13.1: an outcome delivered by adopting a unit, recorded while reconciliation
    awaited the journal for another job, must not be re-added as running from the stale
    list: the job's slot would be held forever and its retry would stay queued for good.

    Checked: fails on the code before the fix (the retry of `flaky` never starts).
    """
    h = Harness(tmp_path, JobsSettings(max_running=1, max_unfinished=1000))
    await h.open()
    try:
        h.service.settings = JobsSettings(max_running=2, max_unfinished=1000)
        earlier, _ = await h.service.submit("echo", {}, None, CALLER)
        flaky, _ = await h.service.submit("flaky", {}, None, CALLER)
        await h.wait_started(2)
        for spec in h.systemd.started:
            h.systemd.report_started(spec.name, "cd" * 16)
        await h.wait_for(earlier.id, JobState.RUNNING)
        await h.wait_for(flaky.id, JobState.RUNNING)
        await h.service.stop()
        await h.store.close()

        # Both ended while automd was down: flaky failed (and retries), echo succeeded.
        echo_unit = unit_name("echo", earlier.id, 1)
        flaky_unit = unit_name("flaky", flaky.id, 1)
        h.store = await Store.open(tmp_path / "state")
        fake = _AdoptDeliversWhileJournalWaits(
            h.store, outcome(flaky_unit, "exit-code", 1), echo_unit, flaky.id
        )
        fake.journal[echo_unit] = outcome(echo_unit)
        registry = DefinitionRegistry(tmp_path / "jobs.d")
        registry.reload()
        h.systemd = fake
        h.service = JobService(h.store, registry, fake, JobsSettings(max_running=1))  # type: ignore[arg-type]
        await h.service.start()
        await asyncio.wait_for(h.service.reconciled.wait(), WAIT_SECONDS)

        await h.wait_for(earlier.id, JobState.SUCCEEDED)
        # The retry of flaky must get the one run slot: attempt 2 starts.
        await h.wait_started(1)
        assert [s.name for s in fake.started] == [unit_name("flaky", flaky.id, 2)]
        h.finish(fake.started[0])
        await h.wait_for(flaky.id, JobState.SUCCEEDED)
        assert h.service.running_count == 0
    finally:
        await h.close()


async def test_self_check_repairs_a_slot_held_with_nothing_following_the_unit(
    harness: Harness,
) -> None:
    job, _ = await harness.service.submit("echo", {}, None, CALLER)
    await harness.wait_started(1)
    unit = harness.systemd.started[0].name
    harness.systemd.report_started(unit, "ab" * 16)
    await harness.wait_for(job.id, JobState.RUNNING)
    # systemd lost track of it (no signal will come), and the journal has its outcome.
    harness.systemd.started.clear()
    harness.systemd.journal[unit] = outcome(unit, "exit-code", 4)
    reconciler = harness.service.reconciler
    await reconciler.self_check()  # first sighting: could be an outcome being written
    assert (await harness.service.get(job.id)).state == JobState.RUNNING
    assert reconciler.repairs["unfollowed_unit"] == 0
    await reconciler.self_check()
    done = await harness.wait_for(job.id, JobState.FAILED)
    assert done.exit_code == 4
    assert reconciler.repairs["unfollowed_unit"] == 1
    await reconciler.self_check()  # nothing left to repair
    assert reconciler.repairs["unfollowed_unit"] == 1


async def test_self_check_rearms_a_lost_retry_timer(harness: Harness) -> None:
    job, _ = await harness.service.submit("flaky", {}, None, CALLER)
    harness.service.timers.disarm(job.id)  # none yet; the outcome below arms it
    await harness.wait_started(1)
    harness.service.settings = JobsSettings(max_running=4, max_unfinished=1000)
    waiting_retry = harness.service.follower.record_finished
    await waiting_retry(job.id, 1, outcome(harness.systemd.started[0].name, "exit-code", 1))
    assert harness.service.timers.armed(job.id)
    harness.service.timers.disarm(job.id)
    await harness.service.reconciler.self_check()
    assert harness.service.reconciler.repairs["retry_timer"] == 1
    await harness.wait_started(2)  # the re-armed timer queued attempt 2
    assert harness.systemd.started[1].name == unit_name("flaky", job.id, 2)


async def test_counts_are_the_stores(harness: Harness) -> None:
    """running/unfinished (STATUS=, metrics, health) are counted in the store by each round."""
    harness.service.settings = JobsSettings(max_running=1, max_unfinished=1000)
    first, _ = await harness.service.submit("echo", {}, None, CALLER)
    await harness.service.submit("echo", {}, None, CALLER)
    await harness.wait_started(1)
    await harness.service.dispatcher.round()
    assert (harness.service.running_count, harness.service.unfinished_count) == (1, 2)
    harness.finish(harness.systemd.started[0])
    await harness.wait_for(first.id, JobState.SUCCEEDED)
    await harness.wait_started(2)
    await harness.service.dispatcher.round()
    assert (harness.service.running_count, harness.service.unfinished_count) == (1, 1)


# A plan as automd before the plan/unit-template merge stored it (be2a910, key order and all).
_STORED_PLAN = (
    '{"description":"automd job echo","argv":["/usr/bin/echo","hi"],"environment":{},'
    '"working_directory":null,"user":null,"memory_max":67108864,"cpu_quota_per_sec_usec":null,'
    '"tasks_max":null,"runtime_max_usec":3600000000,"sandbox":{"NoNewPrivileges":true,'
    '"ProtectSystem":"strict","ProtectHome":"yes","PrivateTmp":true,"PrivateNetwork":false},'
    '"read_write_paths":[],"retry":{"max_attempts":1,"initial_delay_seconds":5.0,'
    '"max_delay_seconds":300.0,"multiplier":2.0,"jitter":0.2,"on_results":["exit-code"],'
    '"on_exit_codes":null},"concurrency":2}'
)


def test_a_plan_stored_by_the_previous_version_still_makes_its_unit() -> None:
    plan = RunPlan.model_validate_json(_STORED_PLAN)
    spec = unit_spec(plan, definition="echo", job_id="01jd3k5x2q8v7n4m6p9r0s1t2u", attempt=2)
    assert (spec.argv, spec.memory_max, spec.sandbox["ProtectHome"]) == (
        ("/usr/bin/echo", "hi"), 67108864, "yes",
    )  # fmt: skip
    assert spec.environment["AUTOMD_ATTEMPT"] == "2"
    assert spec.name == unit_name("echo", "01jd3k5x2q8v7n4m6p9r0s1t2u", 2)


async def test_job_list_by_caller_within_the_owner_scope(harness: Harness) -> None:
    """job.list's caller_uid (issue 16.13: automctl list --user): an administrator (no owner
    scope) sees that uid's jobs; a caller limited to their own sees none of another's."""
    mine, _ = await harness.service.submit("echo", {}, None, CALLER)
    theirs, _ = await harness.service.submit("echo", {}, None, Caller(uid=2000, pid=1))
    queries = JobQueries(harness.store)

    async def listed(owner: int | None, **params: Any) -> list[str]:
        result = await queries.list(JobListParams(**params), owner=owner)
        assert all(job.caller_uid in (CALLER.uid, 2000) for job in result.jobs)
        return [job.id for job in result.jobs]

    assert await listed(None, caller_uid=2000) == [theirs.id]
    assert set(await listed(None)) == {mine.id, theirs.id}
    assert await listed(CALLER.uid, caller_uid=2000) == []
    assert await listed(CALLER.uid, caller_uid=CALLER.uid) == [mine.id]
