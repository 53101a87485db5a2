"""Audit rows: the write run by the group writer, the paged read, and retention."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, fields
from typing import Any

from automd.store.db import Store, where_clause


@dataclass(frozen=True)
class AuditRecord:
    id: int | None  # assigned by SQLite
    at: float
    uid: int
    gid: int
    pid: int
    process: str | None
    method: str
    definition: str | None
    params: dict[str, Any] | None
    idempotency_key: str | None
    job_id: str | None
    outcome: str
    detail: str | None


_COLUMNS = [f.name for f in fields(AuditRecord)]
# json.dumps(sort_keys=True) would make a new encoder on every entry written.
_PARAMS_JSON = json.JSONEncoder(sort_keys=True)


def insert(conn: sqlite3.Connection, record: AuditRecord, *, job_id: str | None = None) -> int:
    """`job_id`: the job the entry names, when the write learns it (a submit's new or replayed
    job) and the record does not."""
    values = [getattr(record, name) for name in _COLUMNS[1:]]
    values[_COLUMNS.index("params") - 1] = (
        None if record.params is None else _PARAMS_JSON.encode(record.params)
    )
    if job_id is not None:
        values[_COLUMNS.index("job_id") - 1] = job_id
    cursor = conn.execute(
        f"INSERT INTO audit ({', '.join(_COLUMNS[1:])}) VALUES ({', '.join('?' * len(values))})",
        values,
    )
    return int(cursor.lastrowid or 0)


def purge(conn: sqlite3.Connection, older_than: float) -> int:
    return conn.execute("DELETE FROM audit WHERE at < ?", (older_than,)).rowcount


async def page(
    store: Store,
    *,
    since: float | None,
    uid: int | None,
    method: str | None,
    outcome: str | None,
    before_id: int | None,
    limit: int,
) -> list[AuditRecord]:
    """Newest first; `before_id` continues a previous page."""
    where, args = where_clause([
        ("at >= ?", since),
        ("uid = ?", uid),
        ("method = ?", method),
        ("outcome = ?", outcome),
        ("id < ?", before_id),
    ])  # fmt: skip
    rows = await store.fetch_all(
        f"SELECT {', '.join(_COLUMNS)} FROM audit {where} ORDER BY id DESC LIMIT ?",
        [*args, limit],
    )
    records = []
    for row in rows:
        values = dict(zip(_COLUMNS, row, strict=True))
        values["params"] = None if values["params"] is None else json.loads(values["params"])
        records.append(AuditRecord(**values))
    return records
