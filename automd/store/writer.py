"""The one writer: a thread that owns the write connection and commits queued ops in groups.

Ops queued while a commit is being synced join the next transaction, so N concurrent
writes cost about one fsync instead of N. Each op runs in its own SAVEPOINT (a failing op is
undone alone) and its caller is answered only after the transaction holding it committed.

When the disk is full or failing (SQLITE_FULL, SQLITE_IOERR) the whole transaction is undone:
ops that can answer an error (`fail_fast`: API calls, housekeeping) get it at once; the others
(outcomes of jobs already acknowledged) stay queued and are retried with a growing pause until
the disk takes them again. The thread never dies of it and never spins.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
Outcome = tuple[asyncio.Future[Any], Any, BaseException | None]  # future, result, error
WriteFn = Callable[[sqlite3.Connection], T]

_STOP = object()

#: Primary result codes that mean the disk, not the op, is at fault (sqlite3.h).
_DISK_ERRORS = {13: "disk full", 10: "I/O error"}  # SQLITE_FULL, SQLITE_IOERR
#: The pause between attempts to write held ops on an unwritable disk: from the first to the
#: last, doubling (a freed disk is noticed within the last; a full one costs a try a minute).
_RETRY_FIRST, _RETRY_LAST = 0.05, 5.0


def disk_error(exc: BaseException) -> str | None:
    """Why the disk refused a write ("disk full", "I/O error"), or None for any other error."""
    code = getattr(exc, "sqlite_errorcode", None)
    return None if code is None else _DISK_ERRORS.get(code & 0xFF)


class _DiskError(Exception):
    """Raised inside a group to undo all of it: the disk refused a write (`reason`)."""

    def __init__(self, reason: str, cause: sqlite3.Error) -> None:
        super().__init__(reason)
        self.reason = reason
        self.cause = cause


@dataclass(frozen=True)
class _Op:
    fn: WriteFn[Any]
    future: asyncio.Future[Any]
    #: Answer a disk error at once instead of waiting for the disk to take the write.
    fail_fast: bool
    #: Run alone, outside any transaction (VACUUM, checkpoints), after the group it came with.
    bare: bool = False


class WriteConnection(sqlite3.Connection):
    """The writer's connection: ops name the keys (job ids) they change, so that caches of
    committed data (job.get's) are dropped when the commit is done (`on_commit`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.changed: set[str] = set()


def note_change(conn: sqlite3.Connection, key: str) -> None:
    """Record that the current write changes `key`; a no-op on any other connection."""
    if isinstance(conn, WriteConnection):
        conn.changed.add(key)


class GroupCommitWriter:
    def __init__(self, path: Path, *, max_batch: int = 512) -> None:
        self.path = path
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.commits = 0
        self.ops = 0
        #: Why the disk refuses writes now ("disk full", "I/O error"), None while it takes them.
        self.unwritable: str | None = None
        #: Commits the disk refused, by reason (automd_store_write_failures_total).
        self.disk_failures: dict[str, int] = {}
        # Ops whose write the disk refused and that wait for it (not fail_fast).
        self._held: list[_Op] = []
        #: Told, on the loop, of the keys each transaction changed, before its writers are
        #: answered: nothing acknowledged can then be read back stale from a cache.
        self.on_commit: list[Callable[[set[str]], None]] = []

    async def start(self, setup: WriteFn[None]) -> None:
        """Open the connection in the writer thread and run `setup` (pragmas, migrations)."""
        self._loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = self._loop.create_future()
        self._thread = threading.Thread(
            target=self._main, args=(setup, ready), name="automd-store-writer", daemon=True
        )
        self._thread.start()
        await ready

    @property
    def alive(self) -> bool:
        """The writer thread runs: writes can complete (the watchdog asks, docs/systemd.md)."""
        return self._thread is not None and self._thread.is_alive()

    async def run(self, fn: WriteFn[T], *, fail_fast: bool = False) -> T:
        """Run `fn` in the next group transaction; returns once that transaction committed.

        On an unwritable disk, `fail_fast` ops raise the sqlite3 error at once; the others
        wait until the disk takes them (see the module's docstring).
        """
        assert self._loop is not None, "writer not started"
        future: asyncio.Future[T] = self._loop.create_future()
        self._queue.put(_Op(fn, future, fail_fast))
        return await future

    async def run_bare(self, fn: WriteFn[T]) -> T:
        """Run `fn` on the write connection outside any transaction, between two groups
        (statements SQLite refuses inside one: incremental_vacuum, wal_checkpoint)."""
        assert self._loop is not None, "writer not started"
        future: asyncio.Future[T] = self._loop.create_future()
        self._queue.put(_Op(fn, future, fail_fast=True, bare=True))
        return await future

    @property
    def held(self) -> int:
        """Writes waiting for the disk to take them."""
        return len(self._held)

    async def stop(self) -> None:
        if self._thread is None:
            return
        self._queue.put(_STOP)
        await asyncio.to_thread(self._thread.join)
        self._thread = None

    def _settle(self, outcomes: list[Outcome], changed: set[str] | None = None) -> None:
        """Answer the callers on the loop: one wake-up for a whole group, not one per write."""
        assert self._loop is not None

        def settle() -> None:
            if changed:
                for listener in self.on_commit:
                    listener(changed)
            for future, result, error in outcomes:
                if future.done():  # the caller was cancelled; the write itself still happened
                    continue
                if error is not None:
                    future.set_exception(error)
                else:
                    future.set_result(result)

        self._loop.call_soon_threadsafe(settle)

    def _main(self, setup: WriteFn[None], ready: asyncio.Future[None]) -> None:
        try:
            conn = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=True, factory=WriteConnection
            )
            setup(conn)
        except BaseException as exc:
            self._settle([(ready, None, exc)])
            return
        self._settle([(ready, None, None)])
        try:
            pause = _RETRY_FIRST
            while True:
                batch = self._next_batch(pause if self._held else None)
                if batch is None:
                    return
                group = [*self._held, *(op for op in batch if not op.bare)]
                if group and not self._commit(conn, group):
                    pause = min(pause * 2, _RETRY_LAST)
                else:
                    pause = _RETRY_FIRST
                for op in batch:
                    if op.bare:
                        self._run_bare(conn, op)
        finally:
            conn.close()

    def _next_batch(self, wait: float | None) -> list[_Op] | None:
        """The ops queued now (waiting up to `wait` seconds, None: forever, for the first);
        None to stop. Held ops are retried after `wait` even when nothing new arrived."""
        try:
            first = self._queue.get(timeout=wait)
        except queue.Empty:
            return []
        if first is _STOP:
            if self._held:  # never drop an acknowledged job's outcome; they wait for space
                log.error("state store: stopping with %d writes the disk refused", self.held)
                self._answer_held()
            return None
        batch = [first]
        while len(batch) < self._max_batch:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is _STOP:
                self._queue.put(_STOP)  # finish this batch, then stop
                break
            batch.append(item)
        return batch

    def _answer_held(self) -> None:
        error = sqlite3.OperationalError(
            f"stopped while the disk refused writes: {self.unwritable}"
        )
        self._settle([(op.future, None, error) for op in self._held])
        self._held = []

    def _commit(self, conn: WriteConnection, batch: list[_Op]) -> bool:
        """Run `batch` in one transaction; False when the disk refused it (ops held or failed)."""
        outcomes: list[Outcome] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            for op in batch:
                outcomes.append(self._run_op(conn, op))
            conn.execute("COMMIT")
        except (sqlite3.Error, _DiskError) as exc:
            self._rollback(conn)
            reason = exc.reason if isinstance(exc, _DiskError) else disk_error(exc)
            cause = exc.cause if isinstance(exc, _DiskError) else exc
            if reason is not None:
                conn.changed = set()
                self._refused(batch, reason, cause)
                return False
            log.error("state store: group commit of %d writes failed: %s", len(batch), exc)
            outcomes = [(op.future, None, exc) for op in batch]
        else:
            self.commits += 1
            self.ops += len(batch)
            if self.unwritable is not None:
                log.warning("state store: the disk takes writes again (%s before)", self.unwritable)
                self.unwritable = None
        self._held = []
        # After a rollback too: dropping a cache entry that was still right costs one read.
        changed, conn.changed = conn.changed, set()
        self._settle(outcomes, changed)
        return True

    @staticmethod
    def _run_op(conn: WriteConnection, op: _Op) -> Outcome:
        conn.execute("SAVEPOINT op")
        try:
            result = op.fn(conn)
        except Exception as exc:
            reason = disk_error(exc)
            if reason is not None and isinstance(exc, sqlite3.Error):
                raise _DiskError(reason, exc) from exc  # the disk, not the op: undo the group
            conn.execute("ROLLBACK TO op")
            conn.execute("RELEASE op")
            return (op.future, None, exc)
        conn.execute("RELEASE op")
        return (op.future, result, None)

    def _run_bare(self, conn: WriteConnection, op: _Op) -> None:
        try:
            result = op.fn(conn)
        except Exception as exc:
            self._settle([(op.future, None, exc)])
        else:
            self._settle([(op.future, result, None)])

    @staticmethod
    def _rollback(conn: WriteConnection) -> None:
        # SQLite may have rolled back already (it can, on SQLITE_FULL); a failing ROLLBACK
        # on a failing disk leaves nothing more to undo.
        try:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
        except sqlite3.Error as exc:
            log.error("state store: rollback failed: %s", exc)

    def _refused(self, batch: list[_Op], reason: str, cause: sqlite3.Error) -> None:
        """The disk refused `batch`: fail_fast ops get the error, the others are held."""
        if self.unwritable is None:
            log.error("state store: %s; holding job outcomes until it takes writes", cause)
        self.unwritable = reason
        self.disk_failures[reason] = self.disk_failures.get(reason, 0) + 1
        self._held = [op for op in batch if not op.fail_fast]
        self._settle([(op.future, None, cause) for op in batch if op.fail_fast])
