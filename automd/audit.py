"""The audit trail: each mutating call and each denial, durably in SQLite and in the journal."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from automd import log as automd_log
from automd.api.audit import AuditEntryView, AuditListParams, AuditListResult
from automd.api.model import AuditNames
from automd.errors import StoreError, StoreUnavailable
from automd.peer import PeerCredentials
from automd.store import audit as rows
from automd.store.db import Store

log = logging.getLogger("automd.audit")

#: Parameters recorded for a call are capped: a failed or denied request may carry anything.
PARAMS_MAX = 8192
#: So is an entry's detail (in characters): a validation reason may name a caller's key.
DETAIL_MAX = 512
# json.dumps(default=str) would make a new encoder on every call (every submit).
_CAPPED_JSON = json.JSONEncoder(default=str)


def capped_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """Job parameters (secret values already masked) as an entry keeps them: at most
    PARAMS_MAX bytes of JSON, else only the mark `{"_truncated": true}`."""
    if len(_CAPPED_JSON.encode(params)) > PARAMS_MAX:
        return {"_truncated": True}
    return dict(params)


def _stored_detail(detail: str | None) -> str | None:
    """A detail SQLite can store: capped, and lone surrogates a caller's JSON may carry (in
    a key a validation error names) escaped, as the six characters \\ud800."""
    if detail is None:
        return None
    detail = detail.encode("utf-8", "backslashreplace").decode("utf-8")
    return detail if len(detail) <= DETAIL_MAX else detail[: DETAIL_MAX - 12] + "…[truncated]"


@dataclass
class AuditNote:
    """What one call's audit entry will say, filled in as the call learns it.

    The dispatcher makes one for every mutating call and writes it once the outcome is known
    (AuditLog.settle), unless the use case wrote it in its own transaction (`written`).
    `params` must have secret values masked, and be capped (capped_params()).
    """

    peer: PeerCredentials | None
    method: str
    at: float
    definition: str | None = None
    params: dict[str, Any] | None = None
    idempotency_key: str | None = None
    job_id: str | None = None
    #: The entry as the use case wrote it, with the state it changed (one commit for both).
    written: rows.AuditRecord | None = None

    def name(self, names: AuditNames) -> None:
        """Take the names from the call's validated params, where not set more precisely."""
        self.definition = self.definition or names.get("definition")
        self.job_id = self.job_id or names.get("job_id")
        self.idempotency_key = self.idempotency_key or names.get("idempotency_key")

    def record(self, outcome: str, detail: str | None = None) -> rows.AuditRecord:
        """The entry to write: for a use case that writes it in its own transaction (then
        set `written`), or for AuditLog.settle."""
        peer = self.peer
        return rows.AuditRecord(
            id=None,
            at=self.at,
            uid=-1 if peer is None else peer.uid,
            gid=-1 if peer is None else peer.gid,
            pid=-1 if peer is None else peer.pid,
            process=None if peer is None else peer.process,
            method=self.method,
            definition=self.definition,
            params=None if self.params is None else dict(self.params),
            idempotency_key=self.idempotency_key,
            job_id=self.job_id,
            outcome=outcome,
            detail=_stored_detail(detail),
        )


class AuditLog:
    def __init__(
        self, store: Store, *, retention_days: float, clock: Callable[[], float] = time.time
    ) -> None:
        self._store = store
        self.retention_days = retention_days
        self._clock = clock
        self._purge_timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[int]] = set()

    def note(self, peer: PeerCredentials | None, method: str) -> AuditNote:
        """A new entry for a call by `peer`, dated now."""
        return AuditNote(peer, method, self._clock())

    async def settle(self, note: AuditNote, outcome: str, detail: str | None = None) -> None:
        """Record the call's entry (committed before this returns), then its journal line;
        only the journal line when the use case already wrote it (its transaction committed,
        so that entry stands, whatever went wrong after it)."""
        if note.written is not None:
            self.announce(note.written)
            return
        record = note.record(outcome, detail)
        try:
            await self._store.write(lambda conn: rows.insert(conn, record), fail_fast=True)
        except StoreUnavailable:
            # The disk is full: the call fails (1008) and the journal alone keeps its entry.
            self.announce(record)
            raise
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
        try:
            purged = await self._store.write(lambda conn: rows.purge(conn, cutoff), fail_fast=True)
        except StoreError as exc:  # a full disk: try again in an hour, keep serving
            log.error("audit: purge failed: %s", exc.message)
            purged = 0
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
