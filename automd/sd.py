"""The systemd service protocol: inherited listening sockets and sd_notify messages."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import socket
import stat
import time
from dataclasses import dataclass
from pathlib import Path

import systemd.daemon

log = logging.getLogger(__name__)

#: How long a refused state change (READY=1, ...) is tried again.
_STATE_RETRY_SECONDS = 5.0


class ListenError(Exception):
    pass


#: FileDescriptorName= of the optional TCP metrics socket (units/automd-metrics.socket).
METRICS_FD_NAME = "metrics"


@dataclass
class ActivatedSockets:
    api: socket.socket | None = None
    metrics: socket.socket | None = None


def activated_sockets() -> ActivatedSockets:
    """The sockets systemd passed us (LISTEN_FDS): the API's AF_UNIX stream socket, and the
    metrics listener if automd-metrics.socket is running. Nothing when not activated."""
    named: dict[int, str] = systemd.daemon.listen_fds_with_names()  # unsets LISTEN_*
    found = ActivatedSockets()
    for fd, name in sorted(named.items()):
        if name == METRICS_FD_NAME:
            if not systemd.daemon.is_socket(fd, socket.AF_UNSPEC, socket.SOCK_STREAM, 1):
                raise ListenError("the metrics socket from systemd is not a listening stream")
            found.metrics = _adopt(fd)
            continue
        if found.api is not None:
            raise ListenError(f"expected one API socket from systemd, got {len(named)} fds")
        if not systemd.daemon.is_socket_unix(fd, socket.SOCK_STREAM, 1):
            raise ListenError("the socket from systemd is not a listening AF_UNIX stream socket")
        found.api = _adopt(fd)
    return found


def _adopt(fd: int) -> socket.socket:
    sock = socket.socket(fileno=fd)
    sock.setblocking(False)
    return sock


def bind_socket(path: Path) -> socket.socket:
    """Listen on `path` ourselves (development, tests); a stale socket file is replaced."""
    if path.exists() or path.is_symlink():
        if not stat.S_ISSOCK(path.lstat().st_mode):
            raise ListenError(f"{path} exists and is not a socket")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(path))
        except ConnectionRefusedError:
            path.unlink()  # nobody listens: a leftover from a previous run
        except OSError as exc:
            if exc.errno != errno.ENOENT:
                raise ListenError(f"{path}: {exc.strerror}") from exc
        else:
            raise ListenError(f"{path} is in use by another process")
        finally:
            probe.close()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(path))
    except OSError as exc:
        sock.close()
        raise ListenError(f"cannot listen on {path}: {exc.strerror}") from exc
    sock.setblocking(False)
    return sock


class _Notifier:
    """One datagram socket to $NOTIFY_SOCKET, opened once and kept.

    libsystemd's sd_notify() opens a new socket for every message: with every file
    descriptor taken (accepted connections up to RLIMIT_NOFILE) each WATCHDOG=1 failed with
    EMFILE, silently, and systemd's watchdog killed a daemon whose event loop was running
    fine. Opened before serving, this socket needs no descriptor at the moment of sending.
    It is non-blocking: sends happen on the event loop, and a receiver that stops reading
    (PID 1 keeps an 8 MiB queue; a test's stand-in far less) must cost a message, not the loop.
    """

    def __init__(self) -> None:
        self._sock: socket.socket | None = None
        self._target: str | None = None
        #: The last send failed because the receiver's queue was full (EAGAIN): PID 1 is busy.
        self.refused = False

    def open(self) -> None:
        """Create the socket now (automd calls it at start, while descriptors are free)."""
        target = os.environ.get("NOTIFY_SOCKET", "")
        if target == self._target and self._sock is not None:
            return
        self.close()
        self._target = target
        if target.startswith(("/", "@")):
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.setblocking(False)

    def send(self, message: str) -> bool:
        self.refused = False
        target = os.environ.get("NOTIFY_SOCKET", "")
        if not target:
            return False
        try:
            if target != self._target or self._sock is None:
                self.open()
            if self._sock is None:  # an address family of later systemd versions (vsock)
                return bool(systemd.daemon.notify(message))
            # "@name": Linux's abstract namespace, where the name starts with a NUL byte.
            address = "\0" + target[1:] if target.startswith("@") else target
            self._sock.sendto(message.encode(), address)
        except BlockingIOError:
            self.refused = True
            return False
        except OSError:
            return False
        return True

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
        self._sock = None
        self._target = None


_NOTIFIER = _Notifier()


def open_notify_socket() -> None:
    """Open the socket sd_notify messages go through, while file descriptors are free."""
    with contextlib.suppress(OSError):
        _NOTIFIER.open()


def notify(**fields: str) -> bool:
    """Send sd_notify fields (READY, STATUS, STOPPING, ...); a no-op outside systemd.

    Returns whether the message was sent (False outside systemd too)."""
    return _NOTIFIER.send(_message(fields))


async def notify_state(**fields: str) -> bool:
    """A state change systemd acts on (READY=1, RELOADING=1, STOPPING=1): as notify(), but
    one that PID 1's full queue refused (EAGAIN while PID 1 is busy; docs/systemd.md,
    "Watchdog") is sent again every 50 ms for up to 5 s. A lost READY=1 would leave automd
    "activating" until systemd's start timeout killed it."""
    message = _message(fields)
    deadline = time.monotonic() + _STATE_RETRY_SECONDS
    while not _NOTIFIER.send(message):
        if not _NOTIFIER.refused:
            return False  # not under systemd, or no such socket: trying again changes nothing
        if time.monotonic() >= deadline:
            log.error(
                "systemd's notification queue refused %r for %g s", message, _STATE_RETRY_SECONDS
            )
            return False
        await asyncio.sleep(0.05)
    return True


def _message(fields: dict[str, str]) -> str:
    return "\n".join(f"{key}={value}" for key, value in fields.items())
