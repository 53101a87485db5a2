"""Job output from journald: pages by cursor, and following while a job runs.

A job's units carry LogExtraFields AUTOMD_JOB_ID / AUTOMD_ATTEMPT, so its output is the
entries matching AUTOMD_JOB_ID that have an AUTOMD_ATTEMPT (automd's own lines about the job
carry AUTOMD_JOB_ID only). Reading runs in a small thread pool of its own, never on the event
loop; one shared journal handle tells every follower when the journal changed, so a hundred
idle followers cost no threads and no polling (systemd-facts.md §5).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from systemd import journal

from automd.api.jobs import LogEntryView
from automd.api.system import HealthCheck
from automd.errors import InvalidParams, ServerBusy
from automd.journald import JournalSync

log = logging.getLogger(__name__)
T = TypeVar("T")

#: When journald cannot be asked to synchronize (journald.py), a finished job's output is
#: taken as complete this long after the job ended (journald batches at 250 ms).
FINISH_GRACE_SECONDS = 1.0
#: An idle follower re-checks its job at least this often (a missed wake-up costs no more).
RECHECK_SECONDS = 2.0
#: With no output for this long a follower sends an empty page, so clients and proxies can
#: tell a quiet job from a dead connection.
HEARTBEAT_SECONDS = 10.0

# Raw values: timestamps as µs since the epoch, the message as bytes (it may not be UTF-8).
_CONVERTERS: dict[str, Callable[[Any], Any]] = {
    "__REALTIME_TIMESTAMP": lambda value: value,
    "MESSAGE": lambda value: value,
}


@dataclass(frozen=True)
class LogPage:
    entries: list[LogEntryView]
    #: Where the next read continues: the last entry's cursor, else the cursor given.
    cursor: str | None
    #: More entries were there than the limit allowed.
    more: bool


@dataclass(frozen=True)
class LogQuery:
    job_id: str
    attempt: int | None = None
    cursor: str | None = None
    #: Start with the last `tail` entries instead of the first (ignored with a cursor).
    tail: int | None = None
    limit: int = 500


def entry_from_journal(fields: dict[str, Any]) -> LogEntryView | None:
    """A journal entry as the API shows it; None for entries that are not a job's output."""
    attempt = fields.get("AUTOMD_ATTEMPT")
    if not isinstance(attempt, str) or not attempt.isdigit():
        return None
    raw = fields.get("MESSAGE", b"")
    if isinstance(raw, list):  # a field may repeat; journalctl shows the first
        raw = raw[0] if raw else b""
    if isinstance(raw, str):
        raw = raw.encode()
    try:
        message, encoded = raw.decode("utf-8"), None
    except UnicodeDecodeError:
        message = raw.decode("utf-8", errors="replace")
        encoded = base64.b64encode(raw).decode("ascii")
    priority = fields.get("PRIORITY")
    return LogEntryView(
        cursor=str(fields["__CURSOR"]),
        at=datetime.fromtimestamp(int(fields["__REALTIME_TIMESTAMP"]) / 1e6, UTC),
        attempt=int(attempt),
        priority=priority if isinstance(priority, int) else None,
        stream=str(fields.get("_TRANSPORT", "unknown")),
        message=message,
        message_base64=encoded,
    )


class _Cursor:
    """One reader positioned in one job's output; used by one thread at a time."""

    def __init__(self, query: LogQuery, path: str | None) -> None:
        self.query = query
        self.reader = journal.Reader(path=path, converters=_CONVERTERS)
        self.reader.add_match(AUTOMD_JOB_ID=query.job_id)
        if query.attempt is not None:
            self.reader.add_match(AUTOMD_ATTEMPT=str(query.attempt))
        self.position = query.cursor
        self._positioned = False

    def close(self) -> None:
        self.reader.close()

    def _seek(self) -> list[LogEntryView]:
        """Place the reader; returns entries already read doing so (a tail)."""
        self._positioned = True
        if self.position is not None:
            try:
                self.reader.seek_cursor(self.position)
            except (OSError, ValueError):
                raise InvalidParams(
                    data={"field": "cursor", "reason": "not a journal cursor"}
                ) from None
            first = self.reader.get_next()
            # The entry at the cursor itself comes back first: skip it (systemd-facts.md §5).
            # A cursor from elsewhere lands on the next entry of ours: keep that one.
            if not first or self.reader.test_cursor(self.position):
                return []
            entry = entry_from_journal(first)
            return [] if entry is None else [entry]
        if self.query.tail is None:
            return []
        # seek_tail() on a match with no entries yet misreads later appends; read the tail
        # backwards instead, then continue from its newest entry.
        self.reader.seek_tail()
        tail: list[LogEntryView] = []
        newest: str | None = None
        while len(tail) < self.query.tail:
            fields = self.reader.get_previous()
            if not fields:
                break
            newest = newest or fields["__CURSOR"]
            entry = entry_from_journal(fields)
            if entry is not None:
                tail.append(entry)
        if newest is None:
            self.reader.seek_head()
        else:
            self.reader.seek_cursor(newest)
            self.reader.get_next()
        tail.reverse()
        return tail

    def read(self, limit: int) -> LogPage:
        entries = self._seek() if not self._positioned else []
        more = False
        while True:
            if len(entries) >= limit:
                more = True
                break
            fields = self.reader.get_next()
            if not fields:
                break
            entry = entry_from_journal(fields)
            if entry is not None:
                entries.append(entry)
        if len(entries) > limit:  # a tail longer than the page
            entries = entries[:limit]
            self.reader.seek_cursor(entries[-1].cursor)
            self.reader.get_next()
        if entries:
            self.position = entries[-1].cursor
        return LogPage(entries=entries, cursor=self.position, more=more)


class JobLogs:
    """Reads and follows job output; `watch()` must run for followers to hear of changes."""

    def __init__(
        self,
        *,
        path: str | None = None,
        threads: int = 4,
        max_followers: int = 64,
        sync: JournalSync | None = None,
    ) -> None:
        self._path = path
        self._sync = sync or JournalSync()
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="joblog")
        self._changed = asyncio.Condition()
        self._generation = 0
        self._closing = False
        self.followers = 0
        #: Each follower holds a journal reader, and so every journal file open: the cap
        #: keeps them within the open-file budget (fdbudget.py).
        self.max_followers = max_followers
        self.watching = False

    async def complete(self, ended_at: float | None, *, wait: float | None = None) -> bool:
        """Whether the journal holds all the output of a job that ended at wall-clock time
        `ended_at` (None: just now): journald says so (journald.py); or, when it cannot,
        FINISH_GRACE_SECONDS have passed since. `wait`: at most this long for journald's
        answer (a page must not hang on a journald busy fsyncing; the request goes on, and a
        later call gets its answer), then False: not known yet."""
        try:
            async with asyncio.timeout(wait):
                synced = await self._sync.synchronized_since(ended_at or time.time())
        except TimeoutError:
            return False
        if synced:
            return True
        return ended_at is not None and time.time() - ended_at >= FINISH_GRACE_SECONDS

    async def health(self) -> HealthCheck:
        """Whether job output can be read: the journal watch runs and journal files exist."""
        if not self.watching:
            return HealthCheck(ok=False, detail="not watching the journal")
        try:
            async with asyncio.timeout(2.0):
                found = await self._in_pool(_journal_files, self._path)
        except (OSError, TimeoutError) as exc:
            detail = f"journal not readable: {exc or type(exc).__name__}"
            return HealthCheck(ok=False, detail=detail)
        if not found:
            detail = "no journal files found (is systemd-journald running?)"
            return HealthCheck(ok=False, detail=detail)
        return HealthCheck(ok=True, detail=f"{found} files readable; {self.followers} following")

    async def page(self, query: LogQuery) -> LogPage:
        return await self._in_pool(_read_once, query, self._path)

    async def follow(
        self, query: LogQuery, finished: Callable[[], Awaitable[bool]]
    ) -> AsyncGenerator[LogPage, None]:
        """Pages as the job writes them; ends once `finished()` says all its output is stored
        in the journal, or when automd shuts down (the last page's cursor resumes it)."""
        if self.followers >= self.max_followers:
            raise ServerBusy(
                "Server busy: too many log followers",
                data={"max_log_followers": self.max_followers},
            )
        self.followers += 1  # counted before its reader opens: the cap bounds readers
        try:
            cursor = await self._in_pool(_Cursor, query, self._path)
        except BaseException:
            self.followers -= 1
            raise
        try:
            quiet_since = asyncio.get_running_loop().time()
            ended = False
            while not self._closing:
                generation = self._generation
                page = await self._in_pool(cursor.read, query.limit)
                now = asyncio.get_running_loop().time()
                if page.entries:
                    quiet_since = now
                    yield page
                    if page.more:
                        continue
                elif now - quiet_since >= HEARTBEAT_SECONDS:
                    quiet_since = now
                    yield page
                if ended:  # this read came after the output was complete: nothing more
                    return
                # Once true, all the output is stored: one more read, and the follow ends.
                ended = await finished()
                if not ended:
                    await self._wait_for_change(generation, RECHECK_SECONDS)
        finally:
            self.followers -= 1
            self._pool.submit(cursor.close)

    def reader_descriptors(self) -> int:
        """Descriptors one journal reader holds now (one per journal file), counted by opening
        one; other threads must not be opening or closing descriptors meanwhile."""
        before = len(os.listdir("/proc/self/fd"))
        reader = journal.Reader(path=self._path)
        try:
            return max(1, len(os.listdir("/proc/self/fd")) - before)
        finally:
            reader.close()

    async def watch(self) -> None:
        """Wake followers whenever the journal changes; runs until cancelled."""
        reader = journal.Reader(path=self._path)
        loop = asyncio.get_running_loop()
        fd = reader.fileno()
        loop.add_reader(fd, self._journal_changed, reader)
        self.watching = True
        try:
            await asyncio.Event().wait()
        finally:
            self.watching = False
            loop.remove_reader(fd)
            reader.close()

    def close(self) -> None:
        """End every follow at its next wake-up (shutdown), and wake them now."""
        self._closing = True
        asyncio.get_running_loop().create_task(self._notify())

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _journal_changed(self, reader: journal.Reader) -> None:
        # process() only consumes the inotify events (cheap); entries are read in the pool.
        if reader.process() != journal.NOP:
            asyncio.get_running_loop().create_task(self._notify())

    async def _notify(self) -> None:
        async with self._changed:
            self._generation += 1
            self._changed.notify_all()

    async def _wait_for_change(self, seen: int, at_most: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(at_most), self._changed:
                await self._changed.wait_for(lambda: self._generation != seen or self._closing)

    async def _in_pool(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)


def _journal_files(path: str | None) -> str:
    """Which journal files a reader sees: "runtime", "persistent", both, or "" for none."""
    reader = journal.Reader(path=path)
    try:
        kinds = [("runtime", reader.has_runtime_files()),
                 ("persistent", reader.has_persistent_files())]  # fmt: skip
    finally:
        reader.close()
    return " and ".join(name for name, present in kinds if present)


def _read_once(query: LogQuery, path: str | None) -> LogPage:
    cursor = _Cursor(query, path)
    try:
        return cursor.read(query.limit)
    finally:
        cursor.close()
