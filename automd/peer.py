"""Who is calling: the kernel's credentials (SO_PEERCRED) for a Unix socket connection."""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass
from typing import Protocol

_UCRED = struct.Struct("3i")


@dataclass(frozen=True, slots=True)
class PeerCredentials:
    """SO_PEERCRED of the connection: fixed by the kernel at connect(), never client-supplied."""

    pid: int
    uid: int
    gid: int


class SocketLike(Protocol):
    """socket.socket or asyncio's TransportSocket wrapper around it."""

    @property
    def family(self) -> int: ...

    def getsockopt(self, level: int, optname: int, buflen: int) -> bytes: ...


def read_peer_credentials(sock: SocketLike) -> PeerCredentials | None:
    """The peer of a connected AF_UNIX socket, or None for other families or a vanished peer."""
    if sock.family != socket.AF_UNIX:
        return None
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    except OSError:
        return None
    pid, uid, gid = _UCRED.unpack(raw)
    return PeerCredentials(pid=pid, uid=uid, gid=gid)
