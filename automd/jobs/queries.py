"""Read-side of jobs: job.get and job.list, straight from the store."""

from __future__ import annotations

import re

from automd.api.jobs import JobGetResult, JobListParams, JobListResult
from automd.errors import InvalidParams, JobNotFound
from automd.jobs import views
from automd.store import jobs as rows
from automd.store.db import Store

_CURSOR = re.compile(r"[0-9a-z]{26}")


#: job.get results kept (oldest dropped first): CI runners poll the same few jobs.
CACHED_JOBS = 4096


class JobQueries:
    def __init__(self, store: Store, *, cache_size: int = CACHED_JOBS) -> None:
        self._store = store
        self._cache_size = cache_size
        # job id -> (owner uid, result). Every write of a job's rows drops its entry when it
        # commits, before the writer is answered (Store.on_commit), so no entry is stale.
        self._cache: dict[str, tuple[int, JobGetResult]] = {}
        store.on_commit(self._forget)

    def _forget(self, job_ids: set[str]) -> None:
        for job_id in job_ids:
            self._cache.pop(job_id, None)

    async def get(self, job_id: str, *, owner: int | None = None) -> JobGetResult:
        """The job; with `owner`, another uid's job reads as not found (nothing leaks)."""
        cached = self._cache.get(job_id)
        if cached is None:
            cached = self._read(job_id)
        uid, result = cached
        if owner is not None and uid != owner:
            raise JobNotFound(data={"id": job_id})
        return result

    def _read(self, job_id: str) -> tuple[int, JobGetResult]:
        found = self._store.lookup(lambda conn: rows.job_detail(conn, job_id))
        if found is None:
            raise JobNotFound(data={"id": job_id})
        job, attempts, events = found
        result = JobGetResult(
            job=views.job_view(job),
            attempts=[views.attempt_view(a) for a in attempts],
            events=[views.event_view(e) for e in events],
        )
        if self._cache_size > 0:
            if len(self._cache) >= self._cache_size:
                del self._cache[next(iter(self._cache))]
            self._cache[job_id] = (job.caller_uid, result)
        return job.caller_uid, result

    async def list(self, params: JobListParams, *, owner: int | None = None) -> JobListResult:
        if params.cursor is not None and not _CURSOR.fullmatch(params.cursor):
            raise InvalidParams(data={"field": "cursor", "reason": "not a cursor from job.list"})
        caller = params.caller_uid if owner is None else owner
        if params.caller_uid is not None and params.caller_uid != caller:
            return JobListResult(jobs=[], next_cursor=None)  # someone else's: none of yours
        found = await rows.list_jobs(
            self._store,
            states=None if params.state is None else [s.value for s in params.state],
            definition=params.definition,
            schedule=params.schedule,
            since=None if params.since is None else params.since.timestamp(),
            until=None if params.until is None else params.until.timestamp(),
            before_id=params.cursor,
            caller_uid=caller,
            limit=params.limit + 1,  # one more than asked tells whether a next page exists
        )
        page = found[: params.limit]
        more = len(found) > params.limit
        return JobListResult(
            jobs=[views.job_view(job) for job in page],
            next_cursor=page[-1].id if more and page else None,
        )
