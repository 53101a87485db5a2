"""One dispatch round in the store (jobs/dispatcher.py's claim_free_slots): the oldest queued
jobs fill the free slots, jobs of a definition at its concurrency limit are passed over, and
the pages a round reads grow from the free slots' size."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from automd.definitions.registry import DefinitionRegistry
from automd.definitions.render import validate_params
from automd.jobs.dispatcher import claim_free_slots
from automd.jobs.records import new_job_record
from automd.store import jobs as rows
from automd.store.db import Store
from automd.store.jobs import JobRecord
from tests.unit.test_jobs import CALLER, write_definitions


async def queue(store: Store, registry: DefinitionRegistry, name: str, count: int) -> list[str]:
    definition = registry.get(name)
    assert definition is not None
    values = validate_params(definition, {})
    made = [new_job_record(definition, values, CALLER, None, 1.0) for _ in range(count)]

    def insert(conn: sqlite3.Connection) -> None:
        for job in made:
            rows.insert_job(conn, job)

    await store.write(insert)
    return [job.id for job in made]


class Rounds:
    """A store with echo (concurrency 2) and flaky (no limit) loaded, counting the page sizes
    claim_free_slots asks for."""

    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        write_definitions(tmp_path / "jobs.d")
        self.registry = DefinitionRegistry(tmp_path / "jobs.d")
        self.registry.reload()
        self.path = tmp_path / "state"
        self.pages: list[int] = []
        paged = rows.queued_after

        def counting(conn: sqlite3.Connection, after_id: str, limit: int) -> list[JobRecord]:
            self.pages.append(limit)
            return paged(conn, after_id, limit)

        monkeypatch.setattr(rows, "queued_after", counting)  # as the dispatcher reads it

    async def round(self, store: Store, max_running: int) -> list[str]:
        """The ids one round claims."""
        self.pages.clear()
        claimed, _ = await store.write(lambda conn: claim_free_slots(conn, max_running, 2.0))
        return [c.job.id for c in claimed]


@pytest.fixture
def rounds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Rounds:
    return Rounds(tmp_path, monkeypatch)


async def test_one_free_slot_and_a_startable_oldest_job_read_one_row(rounds: Rounds) -> None:
    store = await Store.open(rounds.path)
    try:
        first, _second = await queue(store, rounds.registry, "flaky", 2)
        assert await rounds.round(store, 1) == [first]
        assert rounds.pages == [1]  # was a page of 64, each row parsed with its plan
    finally:
        await store.close()


async def test_jobs_at_their_limit_are_passed_over_in_growing_pages(rounds: Rounds) -> None:
    store = await Store.open(rounds.path)
    try:
        echoes = await queue(store, rounds.registry, "echo", 102)
        # echo's concurrency is 2: a round with 3 slots starts two and passes over the rest.
        assert await rounds.round(store, 3) == echoes[:2]
        (flaky,) = await queue(store, rounds.registry, "flaky", 1)
        # One slot left, 100 echo jobs in front of the flaky one: found, in pages that
        # double from the one free slot (1, 2, 4, ... 64) rather than 64 rows at once.
        assert await rounds.round(store, 3) == [flaky]
        assert rounds.pages[:7] == [1, 2, 4, 8, 16, 32, 64]
        assert sum(rounds.pages[:-1]) < 101 <= sum(rounds.pages)
    finally:
        await store.close()
