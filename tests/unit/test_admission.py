"""Admission: connections counted by uid, refusal reasons, and bounded logging and auditing."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import pytest

from automd.audit import AuditLog, AuditNote
from automd.http import admission
from automd.http.admission import Connections, Limits, Refusal, Refusals
from automd.http.connection import HttpConnection
from automd.peer import PeerCredentials
from automd.store.audit import AuditRecord

ALICE = PeerCredentials(pid=100, uid=1000, gid=1000, process="curl")
BOB = PeerCredentials(pid=200, uid=1001, gid=1001, process="automctl")
ROOT = PeerCredentials(pid=1, uid=0, gid=0)


def connection(peer: PeerCredentials | None) -> HttpConnection:
    conn = HttpConnection.__new__(HttpConnection)  # no site or transport needed to be counted
    conn.peer = peer
    return conn


def test_connections_are_counted_per_uid() -> None:
    table = Connections()
    a1, a2, b1, anon = connection(ALICE), connection(ALICE), connection(BOB), connection(None)
    for conn in (a1, a2, b1, anon):
        table.add(conn)
    assert (len(table), table.count_for(1000), table.count_for(1001)) == (4, 2, 1)
    assert table.count_for(admission.UNKNOWN_UID) == 1
    table.discard(a1)
    table.discard(a1)  # twice: no harm
    assert (len(table), table.count_for(1000)) == (3, 1)
    assert set(table) == {a2, b1, anon}


def test_a_user_at_their_cap_is_refused_while_others_are_admitted() -> None:
    table = Connections()
    limits = Limits(connections=4, per_user=2)
    for _ in range(2):
        assert table.refusal(ALICE, limits) is None
        table.add(connection(ALICE))
    assert table.refusal(ALICE, limits) is Refusal.MAX_CONNECTIONS_PER_USER
    assert table.refusal(BOB, limits) is None
    table.add(connection(BOB))
    table.add(connection(ROOT))
    # Full: everyone new is refused at the global cap, a user at their own cap at that one.
    assert table.refusal(BOB, limits) is Refusal.MAX_CONNECTIONS
    assert table.refusal(ALICE, limits) is Refusal.MAX_CONNECTIONS_PER_USER


def test_root_has_the_same_per_user_cap() -> None:
    table = Connections()
    limits = Limits(connections=10, per_user=1)
    table.add(connection(ROOT))
    assert table.refusal(ROOT, limits) is Refusal.MAX_CONNECTIONS_PER_USER


class _Audit(AuditLog):
    """Keeps what would be written."""

    def __init__(self) -> None:
        super().__init__(None, retention_days=1)  # type: ignore[arg-type]
        self.written: list[AuditRecord] = []

    async def settle(self, note: AuditNote, outcome: str, detail: str | None = None) -> None:
        self.written.append(note.record(outcome, detail))


def describe(reason: Refusal) -> str:
    return f"<{reason.value}>"


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def until(condition: Callable[[], bool]) -> None:
    """Until `condition` holds: it has no event of its own to wait on."""
    async with asyncio.timeout(5):
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.005)


async def test_refusals_are_counted_by_reason_and_logged_once_a_second(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = _Clock()
    refusals = Refusals(None, describe, clock=clock)
    with caplog.at_level(logging.WARNING, logger="automd.http.admission"):
        for _ in range(500):
            refusals.note(ALICE, Refusal.MAX_CONNECTIONS_PER_USER, 16)
        refusals.note(BOB, Refusal.MAX_CONNECTIONS, 64)
        clock.now += 1.0
        refusals.note(BOB, Refusal.MAX_CONNECTIONS, 64)
    assert refusals.by_reason == {
        "max_connections": 2, "max_connections_per_user": 500, "open_files": 0,
    }  # fmt: skip
    assert refusals.total == 502
    lines = [r.message for r in caplog.records]
    assert lines == [
        "refusing connections, the last from uid 1000: <max_connections_per_user>; 16 open, "
        "1 refused so far (max_connections 0, max_connections_per_user 1, open_files 0)",
        "refusing connections, the last from uid 1001: <max_connections>; 64 open, 502 "
        "refused so far (max_connections 2, max_connections_per_user 500, open_files 0)",
    ]


async def test_audit_entries_once_per_interval_per_uid_adding_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(admission, "AUDIT_INTERVAL", 0.05)
    audit = _Audit()
    refusals = Refusals(audit, describe)
    for _ in range(10):
        refusals.note(ALICE, Refusal.MAX_CONNECTIONS_PER_USER, 16)
    refusals.note(BOB, Refusal.MAX_CONNECTIONS, 64)
    # At once: the first refusal of each uid.
    await until(lambda: len(audit.written) == 2)
    first = {record.uid: record for record in audit.written}
    assert first[1000].detail == "1 connection refused: <max_connections_per_user>"
    assert (first[1000].method, first[1000].outcome) == ("connect", "denied")
    assert (first[1000].pid, first[1000].process) == (100, "curl")
    assert first[1001].detail == "1 connection refused: <max_connections>"
    # When alice's interval ends: one more entry for the nine refusals it folded in.
    await until(lambda: len(audit.written) == 3)
    assert audit.written[2].uid == 1000
    assert audit.written[2].detail == "9 connections refused: <max_connections_per_user>"
    # Nothing pending now: the windows close, and the next refusal is written at once again.
    await until(lambda: not refusals._windows)
    refusals.note(ALICE, Refusal.MAX_CONNECTIONS, 64)
    await until(lambda: len(audit.written) == 4)
    assert audit.written[3].detail == "1 connection refused: <max_connections>"
    assert sum(int(r.detail.split()[0]) for r in audit.written if r.detail) == 12


async def test_a_refusal_without_credentials_is_audited_as_unknown() -> None:
    audit = _Audit()
    refusals = Refusals(audit, describe)
    refusals.note(None, Refusal.OPEN_FILES, 64)
    await until(lambda: len(audit.written) == 1)
    assert (audit.written[0].uid, audit.written[0].pid) == (-1, -1)
