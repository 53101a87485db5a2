"""Who is calling: the kernel's credentials (SO_PEERCRED) for a Unix socket connection."""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

_UCRED = struct.Struct("3i")


@dataclass(frozen=True, slots=True)
class PeerCredentials:
    """SO_PEERCRED of the connection: fixed by the kernel at connect(), never client-supplied."""

    pid: int
    uid: int
    gid: int
    #: The caller's command name (/proc/PID/comm) when it connected, best effort; read once
    #: per connection, not per request (it cost ~10% of a submit's CPU).
    process: str | None = None


def process_name(pid: int) -> str | None:
    """A process's command name, best effort (the process may be gone already), printable."""
    try:
        # Any process may name itself any bytes (PR_SET_NAME): never fail on invalid UTF-8.
        text = Path(f"/proc/{pid}/comm").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    return printable(text.strip()) or None


def printable(text: str) -> str:
    """`text` with control and other non-printable characters escaped (\\n, \\x1b).

    A caller's command name is caller data: it goes into the audit trail's journal line,
    where a newline could forge a line of stderr output and an escape character makes
    journalctl show the entry as "[blob data]", hiding it from whoever reads the trail.
    """
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)


class SocketLike(Protocol):
    """socket.socket or asyncio's TransportSocket wrapper around it."""

    @property
    def family(self) -> int: ...

    def getsockopt(self, level: int, optname: int, buflen: int) -> bytes: ...


def read_peer_credentials(sock: SocketLike, *, with_process: bool = True) -> PeerCredentials | None:
    """The peer of a connected AF_UNIX socket, or None for other families or a vanished peer.

    `with_process=False` skips the command name: reading it opens a file."""
    if sock.family != socket.AF_UNIX:
        return None
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    except OSError:
        return None
    pid, uid, gid = _UCRED.unpack(raw)
    process = process_name(pid) if with_process else None
    return PeerCredentials(pid=pid, uid=uid, gid=gid, process=process)
