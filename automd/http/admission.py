"""Who may hold a connection: the open connections by uid, the global and per-user caps
decided at accept() from the kernel's credentials, and refusals counted by reason, logged and
audited at a bounded rate.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from enum import StrEnum

from automd.audit import AuditLog, AuditNote
from automd.config import ServerSettings
from automd.http.connection import HttpConnection
from automd.peer import PeerCredentials, process_name

log = logging.getLogger(__name__)

#: Seconds between "refusing connections" lines, whatever the number of refusals.
LOG_INTERVAL = 1.0
#: Seconds between audit entries about one uid's refused connections; each entry counts the
#: refusals it stands for, and a last one follows a burst, so the counts add up.
AUDIT_INTERVAL = 60.0
#: Connections whose peer could not be read are counted together, as this uid.
UNKNOWN_UID = -1


class Refusal(StrEnum):
    """Why a connection was refused: the limit it met (the metric's `reason` label)."""

    MAX_CONNECTIONS = "max_connections"
    MAX_CONNECTIONS_PER_USER = "max_connections_per_user"
    #: automd had no descriptor to serve it (accepted on the accept loop's spare one).
    OPEN_FILES = "open_files"


def uid_of(peer: PeerCredentials | None) -> int:
    return UNKNOWN_UID if peer is None else peer.uid


@dataclass(frozen=True)
class Limits:
    """The connection caps in force (after the open-file check)."""

    connections: int
    per_user: int

    @classmethod
    def configured(cls, settings: ServerSettings) -> Limits:
        per_user = min(settings.max_connections_per_user, settings.max_connections)
        return cls(connections=settings.max_connections, per_user=per_user)


class Connections:
    """The open connections, by the uid that opened them: the one owner of both counts."""

    def __init__(self) -> None:
        self._all: set[HttpConnection] = set()
        self._by_uid: dict[int, set[HttpConnection]] = {}

    def __len__(self) -> int:
        return len(self._all)

    def __iter__(self) -> Iterator[HttpConnection]:
        return iter(self._all)

    def count_for(self, uid: int) -> int:
        held = self._by_uid.get(uid)
        return 0 if held is None else len(held)

    def add(self, connection: HttpConnection) -> None:
        self._all.add(connection)
        self._by_uid.setdefault(uid_of(connection.peer), set()).add(connection)

    def discard(self, connection: HttpConnection) -> None:
        if connection not in self._all:
            return
        self._all.discard(connection)
        uid = uid_of(connection.peer)
        held = self._by_uid[uid]
        held.discard(connection)
        if not held:
            del self._by_uid[uid]

    def refusal(self, peer: PeerCredentials | None, limits: Limits) -> Refusal | None:
        """Why a new connection from `peer` must be refused, if it must. A user at their own
        cap is told so even when the global cap is reached too."""
        if self.count_for(uid_of(peer)) >= limits.per_user:
            return Refusal.MAX_CONNECTIONS_PER_USER
        if len(self._all) >= limits.connections:
            return Refusal.MAX_CONNECTIONS
        return None


@dataclass
class _Window:
    """One uid's audit interval: refusals since its last entry, and the last refused peer."""

    pending: int = 0
    peer: PeerCredentials | None = None
    reason: Refusal = Refusal.MAX_CONNECTIONS
    timer: asyncio.TimerHandle | None = None


class Refusals:
    """Counts refusals by reason; logs at most one line a second and writes at most one audit
    entry per uid per AUDIT_INTERVAL, so a flood cannot flood the journal or the store."""

    def __init__(
        self,
        audit: AuditLog | None,
        describe: Callable[[Refusal], str],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._audit = audit
        self._describe = describe
        self._clock = clock
        self.by_reason: Counter[str] = Counter({reason.value: 0 for reason in Refusal})
        self._logged_at = -LOG_INTERVAL
        self._windows: dict[int, _Window] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def total(self) -> int:
        return self.by_reason.total()

    def note(self, peer: PeerCredentials | None, reason: Refusal, open_now: int) -> None:
        self.by_reason[reason.value] += 1
        now = self._clock()
        if now - self._logged_at >= LOG_INTERVAL:
            self._logged_at = now
            log.warning(
                "refusing connections, the last from uid %d: %s; %d open, %d refused so far (%s)",
                uid_of(peer),
                self._describe(reason),
                open_now,
                self.total,
                ", ".join(f"{name} {count}" for name, count in self.by_reason.items()),
            )
        if self._audit is not None:
            self._audit_refusal(peer, reason)

    def _audit_refusal(self, peer: PeerCredentials | None, reason: Refusal) -> None:
        uid = uid_of(peer)
        window = self._windows.get(uid)
        if window is not None:  # within the interval: folded into the entry that ends it
            window.pending += 1
            window.peer, window.reason = peer, reason
            return
        self._open_window(uid)
        self._write(peer, reason, 1)

    def _open_window(self, uid: int) -> None:
        timer = asyncio.get_running_loop().call_later(AUDIT_INTERVAL, self._end_window, uid)
        self._windows[uid] = _Window(timer=timer)

    def _end_window(self, uid: int) -> None:
        window = self._windows.pop(uid)
        if window.pending:
            self._open_window(uid)
            self._write(window.peer, window.reason, window.pending)

    def close(self) -> None:
        """Stop the interval timers (on drain): refusals still pending are not written."""
        for window in self._windows.values():
            if window.timer is not None:
                window.timer.cancel()
        self._windows.clear()

    def _write(self, peer: PeerCredentials | None, reason: Refusal, count: int) -> None:
        assert self._audit is not None
        if peer is not None and peer.process is None and reason != Refusal.OPEN_FILES:
            # Read now, once per entry: refused connections are not worth a /proc read each,
            # and with no descriptor to spare (OPEN_FILES) it could not be read anyway.
            peer = replace(peer, process=process_name(peer.pid))
        times = "1 connection" if count == 1 else f"{count} connections"
        detail = f"{times} refused: {self._describe(reason)}"
        note = self._audit.note(peer, "connect")
        task = asyncio.get_running_loop().create_task(self._record(note, detail))
        self._tasks.add(task)  # held until done: the loop keeps only weak references
        task.add_done_callback(self._tasks.discard)

    async def _record(self, note: AuditNote, detail: str) -> None:
        assert self._audit is not None
        try:
            await self._audit.settle(note, "denied", detail)
        except Exception:
            log.exception("audit entry for refused connections not written")
