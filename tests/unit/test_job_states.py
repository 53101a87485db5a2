"""The job state table, the one function that changes a job's state, and the store's copies."""

from __future__ import annotations

from pathlib import Path

import pytest

from automd.definitions.registry import DefinitionRegistry
from automd.jobs import states
from automd.jobs.records import new_job_record
from automd.jobs.states import (
    FINISHED_STATES,
    HOLDING_SLOT,
    TRANSITIONS,
    UNFINISHED_STATES,
    IllegalTransition,
    JobState,
    move,
)
from automd.store import jobs as rows
from automd.store.db import Store
from tests.unit.test_jobs import CALLER, write_definitions


def test_every_state_has_its_transitions_and_final_states_only_go_back_to_queued() -> None:
    assert set(TRANSITIONS) == set(JobState)
    for state in FINISHED_STATES:
        assert TRANSITIONS[state] == {JobState.QUEUED}  # job.retry, nothing else
    # Nothing re-enters a slot but through the dispatcher's queued -> starting.
    entering = {s for s, targets in TRANSITIONS.items() if targets & set(HOLDING_SLOT)}
    assert entering == {JobState.QUEUED, JobState.STARTING}
    assert TRANSITIONS[JobState.QUEUED] == {JobState.STARTING, JobState.CANCELLED}


def test_the_stores_state_groups_are_the_same_states() -> None:
    # The store spells them out for its partial indexes (migrations 1 and 5).
    assert set(rows.UNFINISHED) == UNFINISHED_STATES
    assert rows.HOLDING_SLOT == HOLDING_SLOT


async def test_the_dispatch_and_self_check_reads_are_served_by_their_indexes(
    tmp_path: Path,
) -> None:
    """INDEXED BY makes SQLite refuse a query its index cannot serve: running each proves it
    reads a partial index instead of scanning every job ever run."""
    store = await Store.open(tmp_path)
    try:
        await store.write(rows.holding_slot_per_definition)
        await store.write(rows.count_unfinished)
        await store.write(lambda conn: rows.queued_after(conn, "", 10))
        assert await rows.unfinished_jobs(store) == []
        assert await rows.jobs_waiting_retry(store) == []
        assert await rows.jobs_holding_slot(store) == []
    finally:
        await store.close()


async def test_an_illegal_transition_raises_is_counted_and_changes_nothing(
    tmp_path: Path,
) -> None:
    write_definitions(tmp_path / "jobs.d")
    registry = DefinitionRegistry(tmp_path / "jobs.d")
    registry.reload()
    definition = registry.get("echo")
    assert definition is not None
    job = new_job_record(definition, {"text": "hi"}, CALLER, None, 1.0)
    store = await Store.open(tmp_path / "state")
    try:
        await store.write(lambda conn: rows.insert_job(conn, job))
        before = states.illegal_transitions["queued->running"]
        with pytest.raises(IllegalTransition):
            await store.write(lambda conn: move(conn, job, JobState.RUNNING, 2.0))
        assert states.illegal_transitions["queued->running"] == before + 1
        stored = rows.get_job(store, job.id)
        assert stored is not None
        assert stored.state == JobState.QUEUED
        moved = await store.write(lambda conn: move(conn, job, JobState.CANCELLED, 3.0))
        assert (moved.state, moved.finished_at, moved.updated_at) == ("cancelled", 3.0, 3.0)
    finally:
        await store.close()
