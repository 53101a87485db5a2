"""Definition revisions against a real store: what counts as a change, canaries judged by
their jobs, rollback by command, and what survives a restart (jobs/revisions.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from automd.definitions.registry import DefinitionRegistry
from automd.definitions.revision import Rollout, canary_verdict, takes_canary
from automd.errors import InvalidParams, StoreUnavailable, UnknownRevision
from automd.jobs.records import Caller, new_job_record, replanned
from automd.jobs.revisions import Revisions
from automd.jobs.states import JobState
from automd.store import audit as audit_rows
from automd.store import jobs as rows
from automd.store import revisions as revision_rows
from automd.store.db import Store

BACKUP = """\
description = "Back up"
executable = "/usr/bin/true"
argv = ["{target}"]
[parameters.target]
type = "string"
[limits]
memory_max = "512M"
"""

# The same definition: comments, another key order, and a default spelled out.
BACKUP_REWORDED = """\
# a comment
executable = "/usr/bin/true"   # the program
argv = [ "{target}" ]
description = "Back up"
[limits]
runtime_max_seconds = 3600.0
memory_max = 536870912
[parameters.target]
type = "string"
required = true
"""

CANARY = "\n[rollout]\ncanary_percent = 50\npromote_after_successes = 3\nmin_finished = 2\n"


@dataclass
class Setup:
    directory: Path
    store: Store
    registry: DefinitionRegistry
    revisions: Revisions

    def write(self, text: str) -> None:
        (self.directory / "backup.toml").write_text(text)

    async def restart(self) -> None:
        self.registry = DefinitionRegistry(self.directory)
        self.revisions = Revisions(self.store, self.registry)
        await self.revisions.reload("start")

    async def events(self) -> list[tuple[int, str]]:
        found = await self.store.read(lambda conn: revision_rows.events_of(conn, "backup"))
        return [(e.revision, e.event) for e in reversed(found)]

    async def finish(self, revision: int, state: JobState) -> None:
        """A finished job of `revision` of backup, as if it had run."""
        definition = self.registry.served("backup")
        assert definition is not None
        job = new_job_record(definition.active, {"target": "x"}, Caller(0, 1), None, 1.0)
        job = replace(job, revision=revision, state=state, finished_at=2.0)
        await self.store.write(lambda conn: rows.insert_job(conn, job))
        judging = self.revisions.job_finished(job)
        if judging is not None:
            await judging


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[Setup]:
    directory = tmp_path / "jobs.d"
    directory.mkdir()
    (directory / "backup.toml").write_text(BACKUP)
    store = await Store.open(tmp_path / "state")
    registry = DefinitionRegistry(directory)
    revisions = Revisions(store, registry, clock=lambda: 1.0)
    await revisions.reload("start")
    try:
        yield Setup(directory, store, registry, revisions)
    finally:
        await revisions.stop()
        await store.close()


def active(setup: Setup) -> int | None:
    definition = setup.registry.get("backup")
    return None if definition is None else definition.revision


async def test_a_comment_key_order_or_spelled_out_default_is_no_new_revision(setup: Setup) -> None:
    setup.write(BACKUP_REWORDED)
    await setup.revisions.reload("reload by SIGHUP")
    assert active(setup) == 1
    assert await setup.events() == [(1, "loaded"), (1, "activated")]


async def test_an_edit_is_the_next_revision_and_going_back_is_the_old_one(setup: Setup) -> None:
    setup.write(BACKUP.replace("512M", "1G"))
    await setup.revisions.reload("reload by SIGHUP")
    assert active(setup) == 2
    setup.write(BACKUP)
    await setup.revisions.reload("reload by SIGHUP")
    assert active(setup) == 1  # the same content is the same revision, active again
    assert await setup.events() == [
        (1, "loaded"), (1, "activated"), (2, "loaded"), (2, "activated"), (1, "activated"),
    ]  # fmt: skip
    definition, record = await setup.revisions.revision("backup", 2)
    assert definition.limits.memory_max == 1024**3
    assert record.source == "reload by SIGHUP"
    with pytest.raises(UnknownRevision):
        await setup.revisions.revision("backup", 3)


async def test_a_new_job_records_the_revision_it_runs(setup: Setup) -> None:
    chosen = setup.registry.choose("backup")
    assert chosen is not None
    job = new_job_record(chosen, {"target": "x"}, Caller(0, 1), None, 1.0)
    assert job.revision == 1


def test_the_canary_share_is_spread_evenly() -> None:
    assert [takes_canary(50, n) for n in range(4)] == [False, True, False, True]
    assert sum(takes_canary(10, n) for n in range(100)) == 10
    assert sum(takes_canary(33, n) for n in range(100)) == 33


def test_failure_is_judged_before_promotion_and_only_over_the_minimum_sample() -> None:
    rollout = Rollout(canary_percent=50, promote_after_successes=3, max_failure_rate=0.2,
                      min_finished=4)  # fmt: skip
    assert canary_verdict(rollout, 0, 3) is None  # too few finished to judge
    assert canary_verdict(rollout, 1, 3) == "roll-back"
    assert canary_verdict(rollout, 3, 1) == "roll-back"  # 25% failed, though 3 succeeded
    assert canary_verdict(rollout, 4, 1) == "promote"  # 20% is not more than 20%
    assert canary_verdict(rollout, 2, 0) is None


async def test_a_failing_canary_is_rolled_back_with_an_audit_entry(setup: Setup) -> None:
    setup.write(BACKUP.replace("512M", "1G") + CANARY)
    await setup.revisions.reload("reload by SIGHUP")
    served = setup.registry.served("backup")
    assert served is not None
    assert served.canary is not None
    assert active(setup) == 1
    chosen = [setup.registry.choose("backup") for _ in range(4)]
    assert [d.revision for d in chosen if d is not None] == [1, 2, 1, 2]
    await setup.finish(2, JobState.FAILED)
    await setup.finish(1, JobState.FAILED)  # the active revision's failures do not count
    await setup.finish(2, JobState.CANCELLED)  # nor do cancelled jobs
    assert setup.registry.served("backup").canary is not None  # type: ignore[union-attr]
    await setup.finish(2, JobState.TIMED_OUT)
    served = setup.registry.served("backup")
    assert served is not None
    assert served.canary is None
    assert served.active.revision == 1
    assert served.diverged
    assert setup.revisions.rollbacks[("backup", "canary")] == 1
    assert (2, "canary-failed") in await setup.events()
    trail = await audit_rows.page(setup.store, since=None, uid=None, method=None, outcome=None,
                                  before_id=None, limit=10)  # fmt: skip
    assert [(e.method, e.process, e.definition) for e in trail] == [
        ("definition.rollback", "automd", "backup")
    ]
    assert "2 failed" in (trail[0].detail or "")
    await setup.restart()  # the file still holds the canary: it stays rolled back
    assert active(setup) == 1
    assert setup.registry.served("backup").canary is None  # type: ignore[union-attr]


async def test_a_succeeding_canary_is_promoted_after_its_count(setup: Setup) -> None:
    setup.write(BACKUP.replace("512M", "1G") + CANARY)
    await setup.revisions.reload("reload by SIGHUP")
    for _ in range(2):
        await setup.finish(2, JobState.SUCCEEDED)
    assert active(setup) == 1
    await setup.restart()  # the canary survives a restart
    assert setup.registry.served("backup").canary is not None  # type: ignore[union-attr]
    await setup.finish(2, JobState.SUCCEEDED)
    served = setup.registry.served("backup")
    assert served is not None
    assert served.canary is None
    assert active(setup) == 2
    assert not served.diverged
    assert (await setup.events())[-1] == (2, "promoted")


async def test_rollback_by_command_holds_until_the_file_changes(setup: Setup) -> None:
    with pytest.raises(UnknownRevision):  # nothing earlier to go back to
        await setup.revisions.rollback("backup", None, actor="uid 0")
    setup.write(BACKUP.replace("512M", "1G"))
    await setup.revisions.reload("reload by SIGHUP")
    done = await setup.revisions.rollback("backup", None, actor="uid 0")
    assert (done.active, done.previous, done.file) == (1, 2, 2)
    assert active(setup) == 1
    assert setup.registry.served("backup").diverged  # type: ignore[union-attr]
    await setup.restart()  # the same file: the rollback stands
    assert active(setup) == 1
    setup.write(BACKUP.replace("512M", "2G"))
    await setup.revisions.reload("reload by SIGHUP")  # a new edit is active as usual
    assert active(setup) == 3
    assert not setup.registry.served("backup").diverged  # type: ignore[union-attr]
    assert (1, "rollback") in await setup.events()


async def test_retry_under_the_current_revision_refuses_secret_params(setup: Setup) -> None:
    definition = setup.registry.get("backup")
    assert definition is not None
    job = new_job_record(definition, {"target": "x"}, Caller(0, 1), None, 1.0)
    changes = replanned(replace(job, revision=7), definition, (30.0, 1000))
    assert changes["revision"] == 1
    assert '"x"' in changes["plan"]
    with pytest.raises(InvalidParams) as refused:
        replanned(replace(job, params={"target": "***"}), definition, (30.0, 1000))
    assert "secret" in refused.value.data["reason"]
    with pytest.raises(InvalidParams) as refused:
        replanned(replace(job, params={"target": 3}), definition, (30.0, 1000))
    assert "refuses" in refused.value.data["reason"]


async def test_a_file_may_not_set_its_revision(setup: Setup) -> None:
    setup.write("revision = 4\n" + BACKUP)
    loaded = await setup.revisions.reload("reload by SIGHUP")
    assert [(e.key, "numbers the revisions" in e.reason) for e in loaded.errors] == [
        ("revision", True)
    ]


async def test_a_store_that_cannot_write_still_serves_what_it_recorded(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    setup.write(BACKUP.replace("512M", "1G"))
    await setup.revisions.reload("reload by SIGHUP")
    await setup.revisions.rollback("backup", 1, actor="uid 0")

    async def full_disk(*args: object, **kwargs: object) -> None:
        raise StoreUnavailable(data={"reason": "disk full"})

    monkeypatch.setattr(setup.store, "write", full_disk)
    await setup.restart()  # the file unchanged: the rollback stands
    assert active(setup) == 1
    setup.write(BACKUP.replace("512M", "2G"))
    await setup.revisions.reload("reload by SIGHUP")  # content never recorded: unnumbered
    served = setup.registry.served("backup")
    assert served is not None
    assert (served.active.revision, served.active.limits.memory_max) == (None, 2 * 1024**3)


async def test_rolling_back_to_the_files_revision_serves_it_numbered(setup: Setup) -> None:
    """Regression: a rollback to the revision the file holds served the file's definition
    unnumbered, so new jobs recorded no revision and the next rollback failed (-32603)."""
    await setup.revisions.rollback("backup", 1, actor="uid 0")
    assert active(setup) == 1
    with pytest.raises(UnknownRevision):
        await setup.revisions.rollback("backup", 99, actor="uid 0")
