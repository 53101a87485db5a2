"""The listeners' accept loop: hands each accepted socket over at once, and when the process
runs out of descriptors refuses what waits on a spare one, else backs off, logging once a
second.

asyncio's own loop (BaseSelectorEventLoop._accept_connection, CPython 3.11) is not used:
after EMFILE it removes its reader and schedules a retry in a second, but carries on calling
accept() up to `backlog` times in the same callback (4096 with the kernel's maximum backlog),
logging a traceback and scheduling another retry each time. Measured with 1,100 idle
connections against a 1024 limit: 4096 failed accept() calls and 4096 six-line tracebacks per
round, a round every ~1.1 s, 30,000 journal entries before journald's rate limit; and no
client beyond the limit was answered, since a connection that is not accepted cannot be
refused. Owning the loop also lets a connection be refused before any transport exists.

The spare descriptor is libuv's remedy (uv__emfile_trick): close it, accept the waiting
connection into it, refuse it, open the spare again.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

#: Connections accepted per readiness event, so that a burst cannot hold the loop for long.
BATCH = 128
#: Pause after accept() fails for want of resources, doubled while it keeps failing.
MIN_PAUSE = 0.05
MAX_PAUSE = 1.0
#: Seconds between lines about failing accept() calls.
LOG_INTERVAL = 1.0
_OUT_OF_DESCRIPTORS = frozenset({errno.EMFILE, errno.ENFILE})

Handler = Callable[[socket.socket], None]


def _open_spare() -> int | None:
    try:
        return os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None


class Acceptor:
    """Accepts on a listening socket until closed.

    `accepted` gets each connection to serve or refuse as it sees fit; `unserved` gets those
    accepted on the spare descriptor, which must be answered and closed before it returns.
    """

    def __init__(self, sock: socket.socket, accepted: Handler, unserved: Handler) -> None:
        self._sock = sock
        self._accepted = accepted
        self._unserved = unserved
        self._spare = _open_spare()
        self._pause = MIN_PAUSE
        self._resume: asyncio.TimerHandle | None = None
        self._closed = False
        self._failures = 0  # since the last line about them
        self._logged_at = -LOG_INTERVAL

    def start(self) -> None:
        self._sock.setblocking(False)
        # The kernel's maximum backlog: a burst of connects queues instead of failing.
        self._sock.listen(socket.SOMAXCONN)
        asyncio.get_running_loop().add_reader(self._sock.fileno(), self._on_readable)

    def close(self) -> None:
        """Stop accepting and close our copy of the socket (systemd keeps its own)."""
        if self._closed:
            return
        self._closed = True
        if self._resume is not None:
            self._resume.cancel()
        else:
            asyncio.get_running_loop().remove_reader(self._sock.fileno())
        self._sock.close()
        if self._spare is not None:
            os.close(self._spare)
            self._spare = None

    def _on_readable(self) -> None:
        for _ in range(BATCH):
            try:
                conn, _ = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                return  # nothing more is waiting
            except ConnectionAbortedError:
                continue  # the client gave up before we got to it
            except OSError as exc:
                if self._go_on_after(exc):
                    continue
                return
            self._pause = MIN_PAUSE
            conn.setblocking(False)
            self._accepted(conn)

    def _go_on_after(self, exc: OSError) -> bool:
        """After a failed accept(): refuse a waiting client on the spare descriptor if out of
        descriptors, else back off. True to go on accepting."""
        if exc.errno in _OUT_OF_DESCRIPTORS:
            try:
                if self._refuse_on_spare():
                    return True
            except (BlockingIOError, InterruptedError):
                return False  # nothing was waiting after all
            except ConnectionAbortedError:
                return True
            except OSError as again:
                exc = again
        self._back_off(exc)
        return False

    def _refuse_on_spare(self) -> bool:
        """Free the spare descriptor, accept into it, refuse that connection, open the spare
        again. False without a spare; raises what accept() raised."""
        if self._spare is None:
            return False
        os.close(self._spare)
        self._spare = None
        try:
            conn, _ = self._sock.accept()
        except OSError:
            self._spare = _open_spare()  # None if another thread took the descriptor first
            raise
        try:
            conn.setblocking(False)
            self._unserved(conn)
        finally:
            conn.close()
            self._spare = _open_spare()
        return True

    def _back_off(self, exc: OSError) -> None:
        """Stop watching the socket for a while: accept() would fail again at once."""
        loop = asyncio.get_running_loop()
        loop.remove_reader(self._sock.fileno())
        self._resume = loop.call_later(self._pause, self._resume_accepting)
        self._failures += 1
        now = time.monotonic()
        if now - self._logged_at >= LOG_INTERVAL:
            log.error(
                "accept() failed: %s; not accepting for %g s (%d failures since the last line)",
                exc.strerror or exc,
                self._pause,
                self._failures,
            )
            self._logged_at = now
            self._failures = 0
        self._pause = min(MAX_PAUSE, self._pause * 2)

    def _resume_accepting(self) -> None:
        self._resume = None
        if self._closed:
            return
        if self._spare is None:
            self._spare = _open_spare()
        asyncio.get_running_loop().add_reader(self._sock.fileno(), self._on_readable)
