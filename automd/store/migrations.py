"""Numbered schema migrations; each runs once, in order, inside one transaction."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Migration:
    version: int
    summary: str
    statements: tuple[str, ...]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "meta: facts about the store itself (creation time, creating version)",
        ("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) STRICT",),
    ),
)

LATEST_VERSION = MIGRATIONS[-1].version
