"""The SQLite store: durable settings, migrations, one writer, errors translated."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from automd import __version__
from automd.errors import StoreError
from automd.store.db import DB_FILENAME, Store
from automd.store.migrations import LATEST_VERSION, MIGRATIONS


async def test_open_creates_the_database_with_wal_and_full_sync(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "state")
    try:
        assert (tmp_path / "state" / DB_FILENAME).exists()
        assert oct((tmp_path / "state").stat().st_mode & 0o777) == "0o750"
        async with store.transaction() as conn:
            async with conn.execute("PRAGMA journal_mode") as cursor:
                assert await cursor.fetchone() == ("wal",)
            async with conn.execute("PRAGMA synchronous") as cursor:
                assert await cursor.fetchone() == (2,)  # FULL
        assert await store.schema_version() == LATEST_VERSION
        assert await store.get_meta("created_by_version") == __version__
    finally:
        await store.close()


def test_migrations_are_numbered_one_by_one() -> None:
    assert [m.version for m in MIGRATIONS] == list(range(1, len(MIGRATIONS) + 1))


async def test_reopen_keeps_data_and_does_not_migrate_again(tmp_path: Path) -> None:
    store = await Store.open(tmp_path)
    created = await store.get_meta("created_at")
    async with store.transaction() as conn:
        await conn.execute("INSERT INTO meta VALUES ('k', 'v')")
    await store.close()
    store = await Store.open(tmp_path)
    try:
        assert await store.get_meta("k") == "v"
        assert await store.get_meta("created_at") == created
    finally:
        await store.close()


async def test_failed_transaction_rolls_back(tmp_path: Path) -> None:
    store = await Store.open(tmp_path)
    try:

        async def insert_then_fail() -> None:
            async with store.transaction() as conn:
                await conn.execute("INSERT INTO meta VALUES ('gone', 'x')")
                raise RuntimeError("abort")

        with pytest.raises(RuntimeError):
            await insert_then_fail()
        assert await store.get_meta("gone") is None
        # The writer is usable again afterwards.
        async with store.transaction() as conn:
            await conn.execute("INSERT INTO meta VALUES ('kept', 'y')")
        assert await store.get_meta("kept") == "y"
    finally:
        await store.close()


async def test_sqlite_errors_become_store_errors(tmp_path: Path) -> None:
    store = await Store.open(tmp_path)
    try:
        with pytest.raises(StoreError) as info:
            async with store.transaction() as conn:
                await conn.execute("INSERT INTO meta VALUES ('created_at', 'dup')")
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
