"""The SQLite state store: WAL, durable group commits through one writer, async readers."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from automd import __version__
from automd.errors import AutomdError, StoreError, StoreUnavailable
from automd.store.migrations import LATEST_VERSION, MIGRATIONS
from automd.store.writer import GroupCommitWriter, WriteFn, disk_error

log = logging.getLogger(__name__)

DB_FILENAME = "automd.db"
WAL_SUFFIX = "-wal"
AUTO_VACUUM_INCREMENTAL = 2
BUSY_TIMEOUT_MS = 5000
#: Bytes a WAL is cut back to after a checkpoint (SQLite's journal_size_limit).
JOURNAL_SIZE_LIMIT = 64 * 1024 * 1024
T = TypeVar("T")


@contextmanager
def _translate(action: str) -> Iterator[None]:
    """sqlite3 and OS errors become StoreError at this boundary; the detail stays in the chain."""
    try:
        yield
    except (sqlite3.Error, OSError) as exc:
        log.error("state store: %s failed: %s", action, exc)
        raise StoreError(data={"action": action}) from exc


def _setup_writer(conn: sqlite3.Connection) -> None:
    _incremental_vacuum(conn)
    # WAL lets readers run beside the writer; synchronous=FULL makes every COMMIT reach the
    # disk before it returns, so an acknowledged write survives power loss (NORMAL would only
    # survive a crash of automd itself).
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    # After a checkpoint that emptied it, a WAL grown large (behind a long reader, or by a
    # purge) is cut back to this size instead of keeping its peak on disk.
    conn.execute(f"PRAGMA journal_size_limit = {JOURNAL_SIZE_LIMIT}")
    migrate(conn)
    conn.executemany(
        "INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)",
        [("created_at", str(time.time())), ("created_by_version", __version__)],
    )


def _incremental_vacuum(conn: sqlite3.Connection) -> None:
    """auto_vacuum=INCREMENTAL, so pages freed by purges can be given back to the filesystem
    (PRAGMA incremental_vacuum, retention.py). A new database takes it as it is created; an
    existing one only through one VACUUM, which rewrites the whole file once at the first
    start of this version, before READY=1 (0.8 s for 160 MB measured; it needs as much free
    space again: without it the VACUUM fails, changes nothing, and automd serves as before)."""
    (mode,) = conn.execute("PRAGMA auto_vacuum").fetchone()
    if mode == AUTO_VACUUM_INCREMENTAL:
        return
    (pages,) = conn.execute("PRAGMA page_count").fetchone()
    conn.execute(f"PRAGMA auto_vacuum = {AUTO_VACUUM_INCREMENTAL}")
    if pages == 0:  # a new database
        return
    log.warning("state store: rewriting the database once for incremental vacuum")
    started = time.monotonic()
    try:
        conn.execute("VACUUM")
    except sqlite3.OperationalError as exc:  # e.g. no room for the copy: serve as before
        log.error("state store: not rewritten (%s); trying again at the next start", exc)
        return
    log.warning("state store: rewritten in %.1f s", time.monotonic() - started)


def migrate(conn: sqlite3.Connection) -> None:
    """Apply every migration newer than the database, each in its own transaction."""
    current = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if current > LATEST_VERSION:
        raise sqlite3.DatabaseError(
            f"schema version {current} is newer than this automd understands ({LATEST_VERSION})"
        )
    for migration in MIGRATIONS:
        if migration.version <= current:
            continue
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in migration.statements:
                conn.execute(statement)
            # PRAGMA takes no parameters; the version is an int from our own table.
            conn.execute(f"PRAGMA user_version = {int(migration.version)}")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        log.info("state store migrated to schema %d: %s", migration.version, migration.summary)


def where_clause(conditions: Iterable[tuple[str, Any]]) -> tuple[str, list[Any]]:
    """`WHERE ...` joining the conditions whose value is not None, and its parameters.

    Each condition is SQL with one `?`; a list value fills an `IN (?)` with one `?` per item.
    """
    clauses: list[str] = []
    args: list[Any] = []
    for condition, value in conditions:
        if value is None:
            continue
        if isinstance(value, list):
            clauses.append(condition.replace("(?)", f"({', '.join('?' * len(value))})"))
            args.extend(value)
        else:
            clauses.append(condition)
            args.append(value)
    return (f"WHERE {' AND '.join(clauses)}" if clauses else ""), args


class Store:
    """Owns the database file. Writes go through `write()`, reads through `fetch_*()`."""

    def __init__(
        self,
        path: Path,
        writer: GroupCommitWriter,
        reader: aiosqlite.Connection,
        lookup: sqlite3.Connection,
    ) -> None:
        self.path = path
        self.writer = writer
        self._reader = reader
        self._lookup = lookup

    @classmethod
    async def open(cls, directory: Path) -> Store:
        with _translate("open"):
            await asyncio.to_thread(directory.mkdir, mode=0o750, parents=True, exist_ok=True)
            path = directory / DB_FILENAME
            writer = GroupCommitWriter(path)
            await writer.start(_setup_writer)
            try:
                reader = await aiosqlite.connect(f"file:{path}?mode=ro", uri=True)
                await reader.execute("PRAGMA busy_timeout = 5000")
                lookup = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
            except BaseException:
                await writer.stop()
                raise
        return cls(path, writer, reader, lookup)

    async def close(self) -> None:
        with _translate("close"):
            self._lookup.close()
            await self._reader.close()
            await self.writer.stop()

    def on_commit(self, listener: Callable[[set[str]], None]) -> None:
        """Call `listener` with the keys (job ids) each transaction changed, on the loop,
        before that transaction's writers are answered (for caches of committed data)."""
        self.writer.on_commit.append(listener)

    async def write(self, fn: WriteFn[T], *, fail_fast: bool = False) -> T:
        """Run `fn` inside a group transaction; returns after it is committed and synced.

        An AutomdError raised by `fn` (e.g. an idempotency conflict) undoes only `fn`'s own
        changes and reaches the caller unchanged; sqlite3 errors become StoreError, and a
        full or failing disk StoreUnavailable. On such a disk a `fail_fast` write fails at
        once; any other waits until the disk takes it (writer.py): use fail_fast where a
        caller can be told, never for the record of something that already happened.
        """
        try:
            return await self.writer.run(fn, fail_fast=fail_fast)
        except AutomdError:
            raise
        except (sqlite3.Error, OSError) as exc:
            reason = disk_error(exc)
            if reason is not None:
                raise StoreUnavailable(data={"reason": reason}) from exc
            log.error("state store: write failed: %s", exc)
            raise StoreError(data={"action": "write"}) from exc

    async def maintain(self, fn: WriteFn[T]) -> T:
        """Run `fn` on the write connection outside any transaction, between two groups
        (incremental_vacuum, wal_checkpoint); sqlite3 errors become StoreError."""
        try:
            return await self.writer.run_bare(fn)
        except (sqlite3.Error, OSError) as exc:
            log.error("state store: maintenance failed: %s", exc)
            raise StoreError(data={"action": "maintain"}) from exc

    def sizes(self) -> tuple[int, int]:
        """(database bytes, WAL bytes) on disk now: a stat each, for metrics and health."""
        sizes = []
        for path in (self.path, self.path.with_name(self.path.name + WAL_SUFFIX)):
            try:
                sizes.append(path.stat().st_size)
            except FileNotFoundError:
                sizes.append(0)
        return sizes[0], sizes[1]

    def lookup(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run short indexed reads synchronously on the calling (event loop) thread.

        For the hot point lookups (job.get): a WAL read of a few rows takes microseconds,
        while each aiosqlite call costs thread round trips that measured about half of
        job.get's time. Scans go through fetch_*() instead.
        """
        with _translate("read"):
            return fn(self._lookup)

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn` on a read-only connection in a worker thread: reads too long for the
        event loop (counting an index) that fetch_*'s single statement cannot express."""

        def run() -> T:
            conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
            try:
                return fn(conn)
            finally:
                conn.close()

        with _translate("read"):
            return await asyncio.to_thread(run)

    async def fetch_one(self, sql: str, args: Sequence[Any] = ()) -> sqlite3.Row | None:
        with _translate("read"):
            async with self._reader.execute(sql, args) as cursor:
                row = await cursor.fetchone()
        return row

    async def fetch_all(self, sql: str, args: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with _translate("read"):
            async with self._reader.execute(sql, args) as cursor:
                rows = await cursor.fetchall()
        return list(rows)

    async def schema_version(self) -> int:
        row = await self.fetch_one("PRAGMA user_version")
        return int(row[0]) if row else 0

    async def get_meta(self, key: str) -> str | None:
        row = await self.fetch_one("SELECT value FROM meta WHERE key = ?", (key,))
        return None if row is None else str(row[0])
