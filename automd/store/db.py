"""The SQLite state store: WAL, durable commits, one serialised writer, readers on their own."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import aiosqlite

from automd import __version__
from automd.errors import StoreError
from automd.store.migrations import LATEST_VERSION, MIGRATIONS

log = logging.getLogger(__name__)

DB_FILENAME = "automd.db"


@contextmanager
def _translate(action: str) -> Iterator[None]:
    """sqlite3 and OS errors become StoreError at this boundary; the detail stays in the chain."""
    try:
        yield
    except (sqlite3.Error, OSError) as exc:
        log.error("state store: %s failed: %s", action, exc)
        raise StoreError(data={"action": action}) from exc


async def _connect(path: Path, *, readonly: bool) -> aiosqlite.Connection:
    uri = f"file:{path}?mode=ro" if readonly else f"file:{path}"
    # isolation_level=None: no implicit transactions; the writer issues BEGIN IMMEDIATE itself.
    conn = await aiosqlite.connect(uri, uri=True, isolation_level=None)
    await conn.execute("PRAGMA busy_timeout = 5000")
    return conn


class Store:
    """Owns the database file. Writes go through `transaction()`, one at a time."""

    def __init__(
        self, path: Path, writer: aiosqlite.Connection, reader: aiosqlite.Connection
    ) -> None:
        self.path = path
        self._writer = writer
        self._reader = reader
        self._write_lock = asyncio.Lock()

    @classmethod
    async def open(cls, directory: Path) -> Store:
        with _translate("open"):
            await asyncio.to_thread(directory.mkdir, mode=0o750, parents=True, exist_ok=True)
            path = directory / DB_FILENAME
            writer = await _connect(path, readonly=False)
            try:
                # WAL lets readers run beside the writer; synchronous=FULL makes every
                # COMMIT reach the disk before it returns, so an acknowledged write survives
                # power loss (NORMAL would only survive a crash of automd itself).
                await writer.execute("PRAGMA journal_mode = WAL")
                await writer.execute("PRAGMA synchronous = FULL")
                await writer.execute("PRAGMA foreign_keys = ON")
                await _migrate(writer)
                await writer.executemany(
                    "INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)",
                    [("created_at", str(time.time())), ("created_by_version", __version__)],
                )
                reader = await _connect(path, readonly=True)
            except BaseException:
                await writer.close()
                raise
        return cls(path, writer, reader)

    async def close(self) -> None:
        with _translate("close"):
            await self._reader.close()
            await self._writer.close()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """One write transaction; it is committed (and synced) when the block exits cleanly."""
        async with self._write_lock:
            with _translate("write"):
                await self._writer.execute("BEGIN IMMEDIATE")
                try:
                    yield self._writer
                except BaseException:
                    await self._writer.execute("ROLLBACK")
                    raise
                await self._writer.execute("COMMIT")

    async def schema_version(self) -> int:
        with _translate("read"):
            async with self._reader.execute("PRAGMA user_version") as cursor:
                row = await cursor.fetchone()
        return int(row[0]) if row else 0

    async def get_meta(self, key: str) -> str | None:
        with _translate("read"):
            async with self._reader.execute("SELECT value FROM meta WHERE key = ?", (key,)) as cur:
                row = await cur.fetchone()
        return None if row is None else str(row[0])


async def _migrate(conn: aiosqlite.Connection) -> None:
    async with conn.execute("PRAGMA user_version") as cursor:
        row = await cursor.fetchone()
    current = int(row[0]) if row else 0
    if current > LATEST_VERSION:
        raise sqlite3.DatabaseError(
            f"schema version {current} is newer than this automd understands ({LATEST_VERSION})"
        )
    for migration in MIGRATIONS:
        if migration.version <= current:
            continue
        await conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in migration.statements:
                await conn.execute(statement)
            # PRAGMA takes no parameters; the version is an int from our own table.
            await conn.execute(f"PRAGMA user_version = {int(migration.version)}")
        except BaseException:
            await conn.execute("ROLLBACK")
            raise
        await conn.execute("COMMIT")
        log.info("state store migrated to schema %d: %s", migration.version, migration.summary)
