"""JobLogs: the follower cap that keeps journal readers within the open-file budget."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest

from automd.errors import ServerBusy
from automd.joblog import JobLogs, LogPage, LogQuery


async def never_finished() -> bool:
    return False


async def test_followers_beyond_the_cap_are_refused(tmp_path: Path) -> None:
    logs = JobLogs(path=str(tmp_path), max_followers=1)  # an empty journal directory
    first = logs.follow(LogQuery(job_id="j1"), never_finished)
    pending: asyncio.Task[LogPage] = asyncio.create_task(anext(first))
    async with asyncio.timeout(5):
        while logs.followers != 1:  # noqa: ASYNC110 (a count, with no event to wait on)
            await asyncio.sleep(0.005)
    with pytest.raises(ServerBusy) as refused:
        await anext(logs.follow(LogQuery(job_id="j2"), never_finished))
    assert refused.value.message == "Server busy: too many log followers"
    assert refused.value.data == {"max_log_followers": 1}
    assert logs.followers == 1  # the refused one was never counted

    pending.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await pending
    await first.aclose()
    assert logs.followers == 0
    logs.shutdown()


def test_a_journal_reader_costs_descriptors(tmp_path: Path) -> None:
    logs = JobLogs(path=str(tmp_path))
    assert logs.reader_descriptors() >= 1
    logs.shutdown()
