"""The SQLite store: durable settings, migrations, one writer, errors translated."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from automd import __version__
from automd.api.codes import ErrorCode
from automd.errors import AutomdError, StoreError
from automd.store.db import DB_FILENAME, Store
from automd.store.migrations import LATEST_VERSION, MIGRATIONS


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
            )
        )
        assert pragmas == (("wal",), (2,))  # synchronous=2 is FULL
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
