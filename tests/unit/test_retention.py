"""Retention: expired finished jobs purged in batches, never an unfinished one, the space
given back, and the queries served by the jobs_finished index."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from automd.api.jobs import FINISHED_STATES
from automd.config import JobsSettings, RetentionSettings
from automd.jobs.retention import BATCH_MAX, BATCH_MIN, BATCH_SECONDS, FINISHED, Retention
from automd.jobs.states import JobState
from automd.store import retention as rows
from automd.store.db import DB_FILENAME, Store
from automd.system import SystemInfo
from automd.systemd.bus import SystemdBus
from automd.systemd.manager import Manager
from bench.history import add_finished_jobs, add_unfinished_jobs

NOW = 1_800_000_000.0
DAY = 86400.0
WINDOW = DAY  # jobs.idempotency_window_seconds


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    store = await Store.open(tmp_path)
    yield store
    await store.close()


def retention(store: Store, **settings: float) -> Retention:
    return Retention(store, RetentionSettings(**settings), lambda: WINDOW, clock=lambda: NOW)


async def states(store: Store) -> dict[str, int]:
    found = await store.fetch_all("SELECT state, count(*) FROM jobs GROUP BY state")
    return {state: count for state, count in found}


async def test_expired_jobs_go_by_their_final_state_and_unfinished_ones_stay(store: Store) -> None:
    def history(conn: sqlite3.Connection) -> None:
        add_finished_jobs(conn, 3, finished_at=NOW - 40 * DAY)  # expired: succeeded, 30 days
        add_finished_jobs(conn, 2, finished_at=NOW - 40 * DAY, state=JobState.FAILED)  # 90 days
        add_finished_jobs(conn, 1, finished_at=NOW - 100 * DAY, state=JobState.TIMED_OUT)
        add_finished_jobs(conn, 1, finished_at=NOW - 40 * DAY, state=JobState.CANCELLED)
        # Unfinished, however old, are never purged.
        add_unfinished_jobs(conn, [JobState.QUEUED, JobState.RUNNING], created_at=NOW - 400 * DAY)
        add_finished_jobs(conn, 2, finished_at=NOW - 10 * DAY)  # the newest events

    await store.write(history)
    purged = await retention(store).purge()
    assert purged == 3 + 1 + 1
    assert await states(store) == {"succeeded": 2, "failed": 2, "queued": 1, "running": 1}
    for table in ("attempts", "job_events"):  # no row outlives its job
        orphans = await store.fetch_one(
            f"SELECT count(*) FROM {table} WHERE job_id NOT IN (SELECT id FROM jobs)"
        )
        assert orphans is not None
        assert orphans[0] == 0, table


async def test_purged_jobs_take_their_own_expired_keys_only(store: Store) -> None:
    def history(conn: sqlite3.Connection) -> list[str]:
        old = add_finished_jobs(conn, 2, finished_at=NOW - 40 * DAY, key_prefix="k")
        # The same key used again after its window: its row now names the newer job.
        add_finished_jobs(conn, 1, finished_at=NOW - 10 * DAY, key_prefix="k")
        return old

    old = await store.write(history)
    await retention(store).purge()
    keys = await store.fetch_all("SELECT key, job_id FROM idempotency_keys ORDER BY key")
    assert [key for key, _job in keys] == ["k0"]
    assert keys[0][1] not in old


async def test_the_count_limit_takes_the_oldest_but_none_inside_the_key_window(
    store: Store,
) -> None:
    def history(conn: sqlite3.Connection) -> None:
        add_finished_jobs(conn, 1200, finished_at=NOW - 5 * DAY, spread=DAY)
        add_finished_jobs(conn, 1100, finished_at=NOW - WINDOW / 2, spread=60.0)

    await store.write(history)
    keeper = retention(store, max_finished_jobs=1000)
    purged = await keeper.purge()
    # 1300 over the limit, but the 1100 finished inside the key window stay.
    assert purged == 1200
    assert await rows.history(store, FINISHED) == (1100, NOW - WINDOW / 2)
    assert keeper.longest_batch > 0


async def test_a_purge_goes_in_batches_of_a_few_hundred(store: Store) -> None:
    def history(conn: sqlite3.Connection) -> None:
        add_finished_jobs(conn, 2 * BATCH_MAX + 1, finished_at=NOW - 40 * DAY)
        add_finished_jobs(conn, 1, finished_at=NOW)  # the newest events

    await store.write(history)
    before = store.writer.commits
    assert await retention(store).purge() == 2 * BATCH_MAX + 1
    assert store.writer.commits - before >= 3


async def test_the_newest_event_keeps_its_job_so_no_rowid_is_handed_out_twice(
    store: Store,
) -> None:
    """Regression: with every job expired, the purge deleted the newest event too, and SQLite
    gave its rowid (max + 1 of what is left) to the next event, which the metrics, whose
    cursor had passed that rowid, never counted."""
    newest = await store.write(
        lambda conn: add_finished_jobs(conn, 3, finished_at=NOW - 40 * DAY)[-1]
    )
    cursor = await store.fetch_one("SELECT max(rowid) FROM job_events")
    assert await retention(store).purge() == 2
    assert await states(store) == {"succeeded": 1}
    await store.write(lambda conn: add_finished_jobs(conn, 1, finished_at=NOW))
    after = await store.fetch_all(f"SELECT rowid FROM job_events WHERE job_id != '{newest}'")
    assert cursor is not None
    assert min(rowid for (rowid,) in after) > cursor[0]


def test_batches_shrink_when_slow_and_grow_back_when_fast(store: Store) -> None:
    keeper = retention(store)
    for _ in range(20):
        keeper._adapt(BATCH_SECONDS * 3)
    assert keeper.batch == BATCH_MIN
    for _ in range(50):
        keeper._adapt(BATCH_SECONDS / 4)
    assert keeper.batch == BATCH_MAX


@pytest.mark.parametrize(
    ("table", "sql"),
    [
        ("job_events", "DELETE FROM job_events WHERE job_id IN ('a', 'b')"),
        ("attempts", "DELETE FROM attempts WHERE job_id IN ('a', 'b')"),
        ("idempotency_keys", "DELETE FROM idempotency_keys "
                             "WHERE caller_uid = 1 AND key = 'k' AND job_id = 'a'"),
        ("jobs", "DELETE FROM jobs WHERE id IN ('a', 'b')"),
    ],
)  # fmt: skip
async def test_purge_deletes_search_by_key(store: Store, table: str, sql: str) -> None:
    plan = " ".join(row[3] for row in await store.fetch_all(f"EXPLAIN QUERY PLAN {sql}"))
    assert plan.startswith(f"SEARCH {table} USING"), plan


async def test_a_checkpoint_does_not_wait_for_a_reader_and_truncates_after_it(
    store: Store,
) -> None:
    await store.write(lambda conn: add_finished_jobs(conn, 50, finished_at=NOW))
    reader = sqlite3.connect(store.path)
    try:
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM jobs").fetchone()  # a long read holds the WAL
        await store.write(lambda conn: add_finished_jobs(conn, 50, finished_at=NOW))
        done, pages = await store.maintain(rows.checkpoint)
        assert not done
        assert pages > 0
    finally:
        reader.close()
    assert await store.maintain(rows.checkpoint) == (True, 0)
    assert store.sizes()[1] == 0  # truncated


@pytest.mark.parametrize("query", ["expired", "count", "oldest"])
async def test_purge_queries_read_the_jobs_finished_index(store: Store, query: str) -> None:
    sql = {
        "expired": f"SELECT finished_at, id FROM {rows._FINISHED} "
        "WHERE state = 'succeeded' AND finished_at < 1 ORDER BY finished_at LIMIT 500",
        "count": f"SELECT count(*) FROM {rows._FINISHED} WHERE finished_at IS NOT NULL",
        "oldest": f"SELECT min(finished_at) FROM {rows._FINISHED} "
        "WHERE state = 'failed' AND finished_at IS NOT NULL",
    }[query]
    plan = " ".join(row[3] for row in await store.fetch_all(f"EXPLAIN QUERY PLAN {sql}"))
    assert "INDEX jobs_finished" in plan, plan
    assert "TEMP B-TREE" not in plan, plan  # ordered by the index, not sorted


async def test_compact_gives_the_freed_pages_back_and_truncates_the_wal(store: Store) -> None:
    def history(conn: sqlite3.Connection) -> None:
        add_finished_jobs(conn, 3000, finished_at=NOW - 40 * DAY)
        add_finished_jobs(conn, 1, finished_at=NOW)  # the newest events

    await store.write(history)
    keeper = retention(store)
    await keeper.compact()
    full, _wal = store.sizes()
    await keeper.purge()
    await keeper.compact()
    size, wal = store.sizes()
    assert size < full / 4, (size, full)
    assert wal == 0
    free = await store.fetch_one("PRAGMA freelist_count")
    assert free is not None
    assert free[0] == 0
    described = await keeper.describe()
    assert described.startswith("1 finished jobs kept, oldest finished "), described
    assert described.endswith(
        "; retention: succeeded 30 d, failed 90 d, cancelled 30 d, at most 1000000"
    )


async def test_an_existing_database_is_switched_to_incremental_vacuum(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / DB_FILENAME)
    conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) STRICT")
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    assert conn.execute("PRAGMA auto_vacuum").fetchone() == (0,)
    conn.close()
    store = await Store.open(tmp_path)
    try:
        assert await store.fetch_one("PRAGMA auto_vacuum") == (2,)  # INCREMENTAL
    finally:
        await store.close()


def test_every_final_state_has_a_retention() -> None:
    assert set(FINISHED) == set(FINISHED_STATES)


def test_no_age_limit_is_shorter_than_the_longest_key_window() -> None:
    """So an age purge never deletes a job whose idempotency key can still be replayed."""
    shortest = min(
        RetentionSettings.model_json_schema()["properties"][name]["minimum"]
        for name in ("succeeded_days", "failed_days", "cancelled_days")
    )
    longest = JobsSettings.model_json_schema()["properties"]["idempotency_window_seconds"]
    assert shortest * DAY >= longest["maximum"]


async def test_the_store_check_says_what_is_kept_and_why_the_disk_refuses(store: Store) -> None:
    await store.write(lambda conn: add_finished_jobs(conn, 3, finished_at=NOW - 10 * DAY))
    keeper = retention(store)
    await keeper.purge()
    system = SystemInfo(store, Manager(SystemdBus()), history=keeper.describe)
    check = await system._check_store()
    assert check.ok
    assert "3 finished jobs kept, oldest finished " in check.detail
    store.writer.unwritable = "disk full"
    check = await system._check_store()
    assert not check.ok
    assert check.detail.startswith("cannot write: disk full in ")
