"""The SQLite store: durable settings, migrations, one writer, errors translated."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from automd import __version__
from automd.api.codes import ErrorCode
from automd.errors import AutomdError, StoreError, StoreUnavailable
from automd.store import jobs as job_rows
from automd.store.db import DB_FILENAME, Store
from automd.store.migrations import LATEST_VERSION, MIGRATIONS
from bench.history import add_finished_jobs


class ConflictError(AutomdError):
    code = ErrorCode.INVALID_PARAMS


async def test_open_creates_the_database_with_wal_and_full_sync(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "state")
    try:
        assert (tmp_path / "state" / DB_FILENAME).exists()
        assert oct((tmp_path / "state").stat().st_mode & 0o777) == "0o750"
        pragmas = await store.write(
            lambda conn: (
                conn.execute("PRAGMA journal_mode").fetchone(),
                conn.execute("PRAGMA synchronous").fetchone(),
                conn.execute("PRAGMA auto_vacuum").fetchone(),
            )
        )
        assert pragmas == (("wal",), (2,), (2,))  # synchronous=2 is FULL, auto_vacuum INCREMENTAL
        assert await store.schema_version() == LATEST_VERSION
        assert await store.get_meta("created_by_version") == __version__
    finally:
        await store.close()


def test_migrations_are_numbered_one_by_one() -> None:
    assert [m.version for m in MIGRATIONS] == list(range(1, len(MIGRATIONS) + 1))


async def test_reopen_keeps_data_and_does_not_migrate_again(tmp_path: Path) -> None:
    store = await Store.open(tmp_path)
    created = await store.get_meta("created_at")
    await store.write(lambda conn: conn.execute("INSERT INTO meta VALUES ('k', 'v')"))
    await store.close()
    store = await Store.open(tmp_path)
    try:
        assert await store.get_meta("k") == "v"
        assert await store.get_meta("created_at") == created
    finally:
        await store.close()


async def test_a_failing_write_is_undone_alone(tmp_path: Path) -> None:
    store = await Store.open(tmp_path)
    try:

        def insert_then_fail(conn: sqlite3.Connection) -> None:
            conn.execute("INSERT INTO meta VALUES ('gone', 'x')")
            raise ConflictError()

        def insert(key: str) -> Callable[[sqlite3.Connection], object]:
            return lambda conn: conn.execute("INSERT INTO meta VALUES (?, 'y')", (key,)).rowcount

        # Queued together, so they share one transaction: the failure is undone on its own.
        results = await asyncio.gather(
            store.write(insert("a")),
            store.write(insert_then_fail),
            store.write(insert("b")),
            return_exceptions=True,
        )
        assert results[0] == 1
        assert results[2] == 1
        assert isinstance(results[1], ConflictError)  # domain errors pass through unchanged
        assert await store.get_meta("gone") is None
        assert (await store.get_meta("a"), await store.get_meta("b")) == ("y", "y")
    finally:
        await store.close()


async def test_concurrent_writes_share_commits(tmp_path: Path) -> None:
    store = await Store.open(tmp_path)
    try:
        commits_before = store.writer.commits

        def insert(i: int) -> Callable[[sqlite3.Connection], object]:
            return lambda conn: conn.execute("INSERT INTO meta VALUES (?, 'v')", (f"k{i}",))

        await asyncio.gather(*(store.write(insert(i)) for i in range(500)))
        commits = store.writer.commits - commits_before
        assert commits < 100, commits  # 500 writes, far fewer fsynced commits
        rows = await store.fetch_all("SELECT count(*) FROM meta WHERE key LIKE 'k%'")
        assert rows[0][0] == 500
    finally:
        await store.close()


async def test_sqlite_errors_become_store_errors(tmp_path: Path) -> None:
    store = await Store.open(tmp_path)
    try:
        with pytest.raises(StoreError) as info:
            await store.write(
                lambda conn: conn.execute("INSERT INTO meta VALUES ('created_at', 'x')")
            )
        assert isinstance(info.value.__cause__, sqlite3.IntegrityError)
        assert "UNIQUE" not in info.value.message  # the detail stays off the wire
    finally:
        await store.close()


async def test_database_from_a_newer_automd_is_refused(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / DB_FILENAME)
    conn.execute(f"PRAGMA user_version = {LATEST_VERSION + 1}")
    conn.close()
    with pytest.raises(StoreError) as info:
        await Store.open(tmp_path)
    assert "newer than this automd" in str(info.value.__cause__)


async def test_unwritable_directory_is_a_store_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(StoreError):
        await Store.open(blocker / "state")


async def test_the_writer_reports_whether_it_is_alive(tmp_path: Path) -> None:
    store = await Store.open(tmp_path)
    assert store.writer.alive
    await store.close()
    assert not store.writer.alive


async def _fill_to_the_limit(store: Store) -> None:
    """Make the writer's connection refuse to grow the file: SQLITE_FULL without root."""

    def cap(conn: sqlite3.Connection) -> None:
        (pages,) = conn.execute("PRAGMA page_count").fetchone()
        conn.execute(f"PRAGMA max_page_count = {pages}")

    await store.write(cap)


def _big_row(key: str) -> Callable[[sqlite3.Connection], object]:
    return lambda conn: conn.execute("INSERT INTO meta VALUES (?, ?)", (key, "x" * 100_000))


async def test_a_full_disk_fails_a_fail_fast_write_at_once(tmp_path: Path) -> None:
    store = await Store.open(tmp_path)
    try:
        await _fill_to_the_limit(store)
        with pytest.raises(StoreUnavailable) as info:
            await store.write(_big_row("refused"), fail_fast=True)
        assert info.value.code == ErrorCode.STORE_UNAVAILABLE
        assert info.value.data == {"reason": "disk full"}
        assert store.writer.unwritable == "disk full"
        assert await store.get_meta("refused") is None
    finally:
        await store.close()


async def test_a_full_disk_holds_other_writes_until_space_returns(tmp_path: Path) -> None:
    """Regression: a failed group commit answered every write with an error, so a job's
    outcome written while the disk was full was lost."""
    store = await Store.open(tmp_path)
    freed = threading.Event()
    loop = asyncio.get_running_loop()
    retried = asyncio.Event()
    tries = 0

    def outcome(conn: sqlite3.Connection) -> str:
        nonlocal tries
        tries += 1
        if tries == 2:  # refused, then tried again
            loop.call_soon_threadsafe(retried.set)
        if freed.is_set():  # space returns: the file may grow again
            conn.execute("PRAGMA max_page_count = 1073741823")
        _big_row("outcome")(conn)
        return "recorded"

    try:
        await _fill_to_the_limit(store)
        held = asyncio.create_task(store.write(outcome))
        await retried.wait()
        assert not held.done()
        assert store.writer.held == 1
        with pytest.raises(StoreUnavailable):  # meanwhile a caller is told at once
            await store.write(_big_row("refused"), fail_fast=True)
        freed.set()
        assert await held == "recorded"
        assert store.writer.unwritable is None
        assert await store.get_meta("outcome") == "x" * 100_000
        await store.write(_big_row("after"), fail_fast=True)
        assert store.writer.alive
    finally:
        await store.close()


async def test_job_detail_searches_each_table_by_its_key(tmp_path: Path) -> None:
    """job.get's read (jobs.job_detail) must stay key searches, ordered by the index: on a
    history of a million jobs a scan or a sort would cost milliseconds, not microseconds
    (bench/README.md, "A million finished jobs"). The plans of the statements it runs."""
    store = await Store.open(tmp_path)
    try:
        (job_id,) = await store.write(lambda conn: add_finished_jobs(conn, 1, finished_at=1.0))
        statements: list[str] = []
        plans = []

        def read(conn: sqlite3.Connection) -> None:
            conn.set_trace_callback(statements.append)
            try:
                assert job_rows.job_detail(conn, job_id) is not None
            finally:
                conn.set_trace_callback(None)
            for sql in statements:
                args = (job_id,) * sql.count("?")
                steps = conn.execute(f"EXPLAIN QUERY PLAN {sql}", args).fetchall()
                plans.append(" | ".join(step[3] for step in steps))

        store.lookup(read)
        assert [plan.split(" USING ")[0] for plan in plans] == [
            "SEARCH jobs", "SEARCH attempts", "SEARCH job_events"
        ], plans  # fmt: skip
        assert not any("SCAN" in plan or "TEMP B-TREE" in plan for plan in plans), plans
    finally:
        await store.close()
