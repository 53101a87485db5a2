"""A job's output as the API shows it: journal pages, and following until the job ends."""

from __future__ import annotations

from collections.abc import AsyncGenerator

from automd.api.jobs import JobLogsParams, JobLogsResult, JobState
from automd.joblog import JobLogs, LogPage, LogQuery
from automd.jobs.service import JobService

#: How long a page of a finished job waits for journald to confirm it holds all its output;
#: past that the page says finished = false and the caller asks again (a follow waits on).
PAGE_SYNC_WAIT_SECONDS = 2.0


def _query(params: JobLogsParams) -> LogQuery:
    return LogQuery(
        job_id=params.id,
        attempt=params.attempt,
        cursor=params.cursor,
        tail=params.tail,
        limit=params.limit,
    )


def _result(page: LogPage, *, finished: bool) -> JobLogsResult:
    return JobLogsResult(
        entries=page.entries,
        cursor=page.cursor,
        more=page.more,
        finished=finished,
    )


class LogFollow:
    """One follower: parts while the job runs, then a result saying whether it ended."""

    def __init__(self, output: JobOutput, params: JobLogsParams) -> None:
        self._output = output
        self._params = params
        self._cursor = params.cursor
        self._finished = False

    async def parts(self) -> AsyncGenerator[JobLogsResult, None]:
        async def finished() -> bool:
            self._finished = await self._output.finished(self._params.id, self._params.attempt)
            return self._finished

        async for page in self._output.logs.follow(_query(self._params), finished):
            self._cursor = page.cursor
            yield _result(page, finished=False)

    def result(self) -> JobLogsResult:
        # finished stays false when the daemon ended the stream first (shutting down).
        return JobLogsResult(entries=[], cursor=self._cursor, more=False, finished=self._finished)


class JobOutput:
    def __init__(self, jobs: JobService, logs: JobLogs) -> None:
        self.jobs = jobs
        self.logs = logs

    async def finished(
        self, job_id: str, attempt: int | None, *, wait: float | None = None
    ) -> bool:
        """No more output will come, and what came is all in the journal: the job ended, or
        the attempt asked for did (a later one exists), and journald has stored its lines
        (`wait`: at most this long for journald to say so)."""
        job = await self.jobs.get(job_id)
        if JobState(job.state).finished:
            return await self.logs.complete(job.finished_at, wait=wait)
        if attempt is not None and job.attempts > attempt:
            # When that attempt ended is not at hand.
            return await self.logs.complete(None, wait=wait)
        return False

    async def page(self, params: JobLogsParams) -> JobLogsResult:
        # Whether it finished is read first: a job that ends meanwhile is reported unfinished,
        # so a poller asks once more rather than missing its last lines.
        finished = await self.finished(params.id, params.attempt, wait=PAGE_SYNC_WAIT_SECONDS)
        return _result(await self.logs.page(_query(params)), finished=finished)

    def follow(self, params: JobLogsParams) -> LogFollow:
        return LogFollow(self, params)
