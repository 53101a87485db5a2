"""JournalSync against a stand-in for journald's varlink socket: answers, shared requests,
and the fallback when journald cannot say (the real journald: tests/integration/test_job_logs)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from automd.joblog import FINISH_GRACE_SECONDS, JobLogs
from automd.journald import JournalSync


class Journald:
    """Answers Synchronize when the test lets it: `hold` keeps requests waiting."""

    def __init__(self, path: Path, reply: dict[str, object] | None = None) -> None:
        self.path = path
        self.reply = {"parameters": {}} if reply is None else reply
        self.requests: list[dict[str, object]] = []
        self.arrived = asyncio.Event()
        self.release = asyncio.Event()
        self.release.set()
        self.closed = asyncio.Event()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            self.requests.append(json.loads((await reader.readuntil(b"\0"))[:-1]))
            self.arrived.set()
            await self.release.wait()
            writer.write(json.dumps(self.reply).encode() + b"\0")
            await writer.drain()
        except ConnectionError:
            pass  # the asker gave up
        finally:
            writer.close()
            self.closed.set()


@pytest.fixture
async def journald(tmp_path: Path) -> AsyncIterator[Journald]:
    fake = Journald(tmp_path / "io.systemd.journal")
    server = await asyncio.start_unix_server(fake.handle, str(fake.path))
    async with server:
        yield fake


async def test_an_answer_covers_everything_logged_before_the_request(journald: Journald) -> None:
    sync = JournalSync(str(journald.path))
    before = time.time()
    assert await sync.synchronized_since(before)
    assert journald.requests == [{"method": "io.systemd.Journal.Synchronize", "parameters": {}}]
    # A job that ended before that request was sent needs no second one...
    assert await sync.synchronized_since(before)
    assert len(journald.requests) == 1
    # ...one that ended after it does.
    assert await sync.synchronized_since(time.time() + 1)
    assert len(journald.requests) == 2


async def test_askers_share_requests_each_sent_after_they_asked(journald: Journald) -> None:
    sync = JournalSync(str(journald.path))
    journald.release.clear()
    first = asyncio.create_task(sync.synchronize())
    await journald.arrived.wait()  # the first request is in flight, unanswered
    # Asked after it was sent: it cannot cover them, so the three share the next request.
    late = [asyncio.create_task(sync.synchronize()) for _ in range(3)]
    await asyncio.sleep(0)
    assert len(journald.requests) == 1
    journald.release.set()
    assert await asyncio.gather(first, *late) == [True] * 4
    assert len(journald.requests) == 2


async def test_an_error_answer_is_no_answer(tmp_path: Path) -> None:
    fake = Journald(tmp_path / "sock", reply={"error": "org.varlink.service.PermissionDenied"})
    async with await asyncio.start_unix_server(fake.handle, str(fake.path)):
        sync = JournalSync(str(fake.path))
        assert not await sync.synchronize()
        assert sync.failures == 1


async def test_no_answer_in_time_is_no_answer(journald: Journald) -> None:
    journald.release.clear()
    sync = JournalSync(str(journald.path), timeout=0.05)
    assert not await sync.synchronize()
    assert sync.failures == 1
    journald.release.set()
    await journald.closed.wait()  # let the stand-in close its end


async def test_without_journald_output_is_complete_a_grace_after_the_end(tmp_path: Path) -> None:
    logs = JobLogs(sync=JournalSync(str(tmp_path / "absent")))
    try:
        assert not await logs.complete(time.time())
        assert not await logs.complete(None)
        assert await logs.complete(time.time() - FINISH_GRACE_SECONDS)
    finally:
        logs.shutdown()


async def test_with_journald_output_is_complete_once_it_answers(journald: Journald) -> None:
    logs = JobLogs(sync=JournalSync(str(journald.path)))
    try:
        assert await logs.complete(time.time())
        assert await logs.complete(None)
    finally:
        logs.shutdown()


async def test_a_bounded_wait_for_a_busy_journald_is_not_yet_complete(journald: Journald) -> None:
    """Regression (make vm-test): a job.logs page of a finished job waited for journald's answer
    as long as journald took (10 s after a flood in the VM), past the caller's own timeout.
    Bounded, it answers "not known yet" at once, and the request goes on for the next call."""
    logs = JobLogs(sync=JournalSync(str(journald.path)))
    journald.release.clear()
    try:
        started = time.monotonic()
        assert not await logs.complete(time.time() - FINISH_GRACE_SECONDS, wait=0.05)
        assert time.monotonic() - started < 5  # not the 10 s of the sync's own timeout
        journald.release.set()
        assert await logs.complete(time.time() - FINISH_GRACE_SECONDS, wait=5)
        assert len(journald.requests) == 1  # the first request, answered, covered both
    finally:
        logs.shutdown()
