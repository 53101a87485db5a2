"""Rows of definition revisions, their heads (which revision serves new jobs) and events.

Writes run inside the group writer's transaction (jobs/revisions.py decides what to write).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, fields

#: How many events definition.history shows, newest first.
HISTORY_EVENTS = 100


@dataclass(frozen=True)
class RevisionRecord:
    definition: str
    revision: int
    hash: str
    model: str  # canonical JSON of the normalised model
    created_at: float
    source: str


@dataclass(frozen=True)
class HeadRecord:
    definition: str
    active: int
    file: int
    canary: int | None = None
    canary_since: float | None = None
    rollout: str | None = None  # JSON of the canary's [rollout] table


@dataclass(frozen=True)
class DefinitionEvent:
    definition: str
    revision: int
    at: float
    event: str
    actor: str | None
    detail: str | None


_REVISION_COLUMNS = ", ".join(f.name for f in fields(RevisionRecord))
_HEAD_NAMES = tuple(f.name for f in fields(HeadRecord))
_HEAD_COLUMNS = ", ".join(_HEAD_NAMES)
_EVENT_COLUMNS = ", ".join(f.name for f in fields(DefinitionEvent))


def find_by_hash(conn: sqlite3.Connection, definition: str, digest: str) -> int | None:
    row = conn.execute(
        "SELECT revision FROM definition_revisions WHERE definition = ? AND hash = ?",
        (definition, digest),
    ).fetchone()
    return None if row is None else int(row[0])


def insert_revision(
    conn: sqlite3.Connection, definition: str, digest: str, model: str, *, at: float, source: str
) -> int:
    """The next number of `definition` (numbers are never reused), recorded."""
    (last,) = conn.execute(
        "SELECT max(revision) FROM definition_revisions WHERE definition = ?", (definition,)
    ).fetchone()
    number = (last or 0) + 1
    conn.execute(
        f"INSERT INTO definition_revisions ({_REVISION_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)",
        (definition, number, digest, model, at, source),
    )
    return number


def load_revision(conn: sqlite3.Connection, definition: str, number: int) -> RevisionRecord | None:
    row = conn.execute(
        f"SELECT {_REVISION_COLUMNS} FROM definition_revisions "
        "WHERE definition = ? AND revision = ?",
        (definition, number),
    ).fetchone()
    return None if row is None else RevisionRecord(*row)


def revisions_of(conn: sqlite3.Connection, definition: str) -> list[RevisionRecord]:
    """Every revision of `definition`, newest first."""
    rows = conn.execute(
        f"SELECT {_REVISION_COLUMNS} FROM definition_revisions WHERE definition = ? "
        "ORDER BY revision DESC",
        (definition,),
    ).fetchall()
    return [RevisionRecord(*row) for row in rows]


def load_head(conn: sqlite3.Connection, definition: str) -> HeadRecord | None:
    row = conn.execute(
        f"SELECT {_HEAD_COLUMNS} FROM definition_heads WHERE definition = ?", (definition,)
    ).fetchone()
    return None if row is None else HeadRecord(*row)


def put_head(conn: sqlite3.Connection, head: HeadRecord) -> None:
    conn.execute(
        f"INSERT OR REPLACE INTO definition_heads ({_HEAD_COLUMNS}) "
        f"VALUES ({', '.join('?' * len(_HEAD_NAMES))})",
        [getattr(head, name) for name in _HEAD_NAMES],
    )


def insert_event(conn: sqlite3.Connection, event: DefinitionEvent) -> None:
    conn.execute(
        f"INSERT INTO definition_events ({_EVENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)",
        (event.definition, event.revision, event.at, event.event, event.actor, event.detail),
    )


def events_of(
    conn: sqlite3.Connection, definition: str, limit: int = HISTORY_EVENTS
) -> list[DefinitionEvent]:
    rows = conn.execute(
        f"SELECT {_EVENT_COLUMNS} FROM definition_events WHERE definition = ? "
        "ORDER BY id DESC LIMIT ?",
        (definition, limit),
    ).fetchall()
    return [DefinitionEvent(*row) for row in rows]


#: The events that make a revision active (the previous active one is the last of these).
ACTIVATING = ("activated", "promoted", "rollback")


def previously_active(conn: sqlite3.Connection, definition: str, active: int) -> int | None:
    """The revision that was active before `active` became so, if any."""
    row = conn.execute(
        "SELECT revision FROM definition_events WHERE definition = ? AND revision != ? "
        f"AND event IN ({', '.join('?' * len(ACTIVATING))}) ORDER BY id DESC LIMIT 1",
        (definition, active, *ACTIVATING),
    ).fetchone()
    return None if row is None else int(row[0])


def jobs_per_revision(conn: sqlite3.Connection, definition: str) -> dict[int, int]:
    rows = conn.execute(
        "SELECT revision, count(*) FROM jobs INDEXED BY jobs_by_definition "
        "WHERE definition = ? AND revision IS NOT NULL GROUP BY revision",
        (definition,),
    ).fetchall()
    return {int(revision): int(count) for revision, count in rows}


def canary_results(
    conn: sqlite3.Connection, definition: str, revision: int, since_id: str
) -> tuple[int, int]:
    """(succeeded, failed) among the finished jobs of `revision` created from `since_id` on;
    failed counts failed and timed out (cancelled and unknown count neither way)."""
    row = conn.execute(
        "SELECT sum(state = 'succeeded'), sum(state IN ('failed', 'timed_out')) "
        "FROM jobs INDEXED BY jobs_by_definition "
        "WHERE definition = ? AND id >= ? AND revision = ?",
        (definition, since_id, revision),
    ).fetchone()
    return int(row[0] or 0), int(row[1] or 0)
