"""The audit trail: each mutating call and each denial, durably in SQLite and in the journal."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from automd import log as automd_log
from automd.api.methods import AuditEntryView, AuditListParams, AuditListResult
from automd.peer import PeerCredentials
from automd.store import audit as rows
from automd.store.db import Store

log = logging.getLogger("automd.audit")


class AuditLog:
    def __init__(
        self, store: Store, *, retention_days: float, clock: Callable[[], float] = time.time
    ) -> None:
        self._store = store
        self.retention_days = retention_days
        self._clock = clock
        self._purge_timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[int]] = set()

    def entry(
        self,
        peer: PeerCredentials | None,
        method: str,
        outcome: str,
        *,
        definition: str | None = None,
        params: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
        job_id: str | None = None,
        detail: str | None = None,
    ) -> rows.AuditRecord:
        """An entry to write; `params` must already have secret values masked."""
        return rows.AuditRecord(
            id=None,
            at=self._clock(),
            uid=-1 if peer is None else peer.uid,
            gid=-1 if peer is None else peer.gid,
            pid=-1 if peer is None else peer.pid,
            process=None if peer is None else peer.process,
            method=method,
            definition=definition,
            params=None if params is None else dict(params),
            idempotency_key=idempotency_key,
            job_id=job_id,
            outcome=outcome,
            detail=detail,
        )

    async def record(self, record: rows.AuditRecord) -> None:
        """Write the entry (committed before this returns), then its journal line."""
        await self._store.write(lambda conn: rows.insert(conn, record))
        self.announce(record)

    def announce(self, record: rows.AuditRecord) -> None:
        """The entry's structured journal line (AUTOMD_AUDIT=1), whatever log.level says."""
        fields = {
            "AUTOMD_AUDIT": "1",
            "AUTOMD_METHOD": record.method,
            "AUTOMD_OUTCOME": record.outcome,
            "AUTOMD_CALLER_UID": str(record.uid),
            "AUTOMD_CALLER_GID": str(record.gid),
            "AUTOMD_CALLER_PID": str(record.pid),
            "AUTOMD_CALLER_COMM": record.process or "",
        }
        if record.definition:
            fields["AUTOMD_DEFINITION"] = record.definition
        if record.job_id:
            fields["AUTOMD_JOB_ID"] = record.job_id
        if record.idempotency_key:
            fields["AUTOMD_IDEMPOTENCY_KEY"] = record.idempotency_key
        level = logging.WARNING if record.outcome == "denied" else logging.INFO
        job = f" job {record.job_id}" if record.job_id else ""
        detail = f": {record.detail}" if record.detail else ""
        message = (
            f"audit: uid {record.uid} ({record.process or '?'}, pid {record.pid}) "
            f"{record.method} {record.outcome}{job}{detail}"
        )
        automd_log.record(level, message, fields)

    async def list(self, params: AuditListParams) -> AuditListResult:
        found = await rows.page(
            self._store,
            since=None if params.since is None else params.since.timestamp(),
            uid=params.uid,
            method=params.method,
            outcome=params.outcome,
            before_id=params.cursor,
            limit=params.limit + 1,
        )
        page = found[: params.limit]
        return AuditListResult(
            entries=[_view(record) for record in page],
            next_cursor=page[-1].id if len(found) > params.limit and page else None,
        )

    async def purge_expired(self) -> int:
        """Drop entries older than the retention; re-arms itself every hour."""
        cutoff = self._clock() - self.retention_days * 86400
        purged = await self._store.write(lambda conn: rows.purge(conn, cutoff))
        if purged:
            log.info("audit: purged %d entries older than %g days", purged, self.retention_days)
        loop = asyncio.get_running_loop()
        self._purge_timer = loop.call_later(3600, self._purge_later)
        return purged

    def _purge_later(self) -> None:
        task = asyncio.get_running_loop().create_task(self.purge_expired())
        self._tasks.add(task)  # held until done: the loop keeps only weak references
        task.add_done_callback(self._tasks.discard)

    def stop(self) -> None:
        if self._purge_timer is not None:
            self._purge_timer.cancel()


def _encodable(value: Any) -> Any:
    """Caller-supplied text made UTF-8 encodable for the reply.

    JSON may carry lone surrogates ("\\ud800"); entries of calls that failed keep the caller's
    raw params and error detail, and such a string made every audit.list page holding it fail.
    They are shown escaped (the six characters \\ud800) instead.
    """
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, dict):
        return {_encodable(key): _encodable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_encodable(item) for item in value]
    return value


def _view(record: rows.AuditRecord) -> AuditEntryView:
    assert record.id is not None
    return AuditEntryView(
        id=record.id,
        at=datetime.fromtimestamp(record.at, UTC),
        uid=record.uid,
        gid=record.gid,
        pid=record.pid,
        process=_encodable(record.process),
        method=_encodable(record.method),
        definition=_encodable(record.definition),
        params=_encodable(record.params),
        idempotency_key=_encodable(record.idempotency_key),
        job_id=record.job_id,
        outcome=record.outcome,
        detail=_encodable(record.detail),
    )
