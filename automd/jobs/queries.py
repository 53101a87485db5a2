"""Read-side of jobs: job.get and job.list, straight from the store."""

from __future__ import annotations

import re

from automd.api.methods import JobGetResult, JobListParams, JobListResult
from automd.errors import InvalidParams, JobNotFound
from automd.jobs import views
from automd.store import jobs as rows
from automd.store.db import Store

_CURSOR = re.compile(r"[0-9a-z]{26}")


class JobQueries:
    def __init__(self, store: Store) -> None:
        self._store = store

    async def get(self, job_id: str, *, owner: int | None = None) -> JobGetResult:
        """The job; with `owner`, another uid's job reads as not found (nothing leaks)."""
        found = self._store.lookup(lambda conn: rows.job_detail(conn, job_id))
        if found is None or (owner is not None and found[0].caller_uid != owner):
            raise JobNotFound(data={"id": job_id})
        job, attempts, events = found
        return JobGetResult(
            job=views.job_view(job),
            attempts=[views.attempt_view(a) for a in attempts],
            events=[views.event_view(e) for e in events],
        )

    async def list(self, params: JobListParams, *, owner: int | None = None) -> JobListResult:
        if params.cursor is not None and not _CURSOR.fullmatch(params.cursor):
            raise InvalidParams(data={"field": "cursor", "reason": "not a cursor from job.list"})
        found = await rows.list_jobs(
            self._store,
            states=None if params.state is None else [s.value for s in params.state],
            definition=params.definition,
            since=None if params.since is None else params.since.timestamp(),
            until=None if params.until is None else params.until.timestamp(),
            before_id=params.cursor,
            caller_uid=owner,
            limit=params.limit + 1,  # one more than asked tells whether a next page exists
        )
        page = found[: params.limit]
        more = len(found) > params.limit
        return JobListResult(
            jobs=[views.job_view(job) for job in page],
            next_cursor=page[-1].id if more and page else None,
        )
