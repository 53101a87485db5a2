"""The one writer: a thread that owns the write connection and commits queued ops in groups.

Ops queued while a commit is being synced join the next transaction, so N concurrent
writes cost about one fsync instead of N. Each op runs in its own SAVEPOINT (a failing op is
undone alone) and its caller is answered only after the transaction holding it committed.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
Outcome = tuple[asyncio.Future[Any], Any, BaseException | None]  # future, result, error
WriteFn = Callable[[sqlite3.Connection], T]

_STOP = object()


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

    async def run(self, fn: WriteFn[T]) -> T:
        """Run `fn` in the next group transaction; returns once that transaction committed."""
        assert self._loop is not None, "writer not started"
        future: asyncio.Future[T] = self._loop.create_future()
        self._queue.put((fn, future))
        return await future

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
            while True:
                first = self._queue.get()
                if first is _STOP:
                    return
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
                self._commit(conn, batch)
        finally:
            conn.close()

    def _commit(
        self, conn: WriteConnection, batch: list[tuple[WriteFn[Any], asyncio.Future[Any]]]
    ) -> None:
        outcomes: list[Outcome] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            for fn, future in batch:
                conn.execute("SAVEPOINT op")
                try:
                    result = fn(conn)
                except Exception as exc:
                    conn.execute("ROLLBACK TO op")
                    conn.execute("RELEASE op")
                    outcomes.append((future, None, exc))
                else:
                    conn.execute("RELEASE op")
                    outcomes.append((future, result, None))
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            log.error("state store: group commit of %d writes failed: %s", len(batch), exc)
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            outcomes = [(future, None, exc) for _fn, future in batch]
        else:
            self.commits += 1
            self.ops += len(batch)
        # After a rollback too: dropping a cache entry that was still right costs one read.
        changed, conn.changed = conn.changed, set()
        self._settle(outcomes, changed)
