"""A notification socket whose queue is full, as PID 1's is while it is busy."""

from __future__ import annotations

import contextlib
import socket


def fill(sock: socket.socket) -> int:
    """Datagrams sent to `sock` from another socket until its queue refuses one (after
    net.unix.max_dgram_qlen of them): the count sent."""
    sent = 0
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as other:
        other.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            while True:
                other.sendto(b"FDSTORE=1", sock.getsockname())
                sent += 1
    return sent
