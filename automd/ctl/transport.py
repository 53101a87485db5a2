"""How automctl reaches an automd: its Unix socket, or `ssh HOST automd-stdio-bridge`.

The HTTP/JSON-RPC client (client.py) is the same for both; a transport only opens the byte
stream it speaks over, names it in messages, and says why a stream closed without an answer.
Over ssh the remote automd sees the ssh user's credentials (SO_PEERCRED on the bridge's
connection), so its polkit rules and audit trail name that user (docs/fleet.md).
"""

from __future__ import annotations

import os
import re
import shlex
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from typing import IO, Protocol

from automd.api.codes import DEFAULT_SOCKET
from automd.ctl.errors import (
    ClientError,
    ConnectPermissionDenied,
    DaemonUnreachable,
    HostUnreachable,
)

#: The ssh command automctl runs (a command line, split like a shell), as systemctl's
#: SYSTEMD_SSH: another binary, or options such as `ssh -F FILE`.
SSH_ENV = "AUTOMD_SSH"
#: automd's socket when neither --socket nor -H is given (also the bridge's, remotely).
SOCKET_ENV = "AUTOMD_SOCKET"
#: The host automctl reaches when -H is not given, as `[user@]host[:port]`.
HOST_ENV = "AUTOMD_HOST"
#: The remote command: shipped with automd (/usr/bin/automd-stdio-bridge).
BRIDGE = "automd-stdio-bridge"
#: The bridge's own exit statuses (automd/bridge.py), and the remote shell's "not found".
BRIDGE_UNAVAILABLE = 69
BRIDGE_NOPERM = 77
COMMAND_NOT_FOUND = 127
#: ssh's status for its own errors (ssh(1): "exits with 255 if an error occurred").
SSH_FAILED = 255
#: How long to wait for ssh to exit once its stream is closed, to learn its status.
_EXIT_WAIT_SECONDS = 10.0

#: What an exit status of the ssh command means (the message adds its last line on stderr).
_FAILURES: dict[int, tuple[type[ClientError], str]] = {
    SSH_FAILED: (HostUnreachable, "ssh failed"),
    COMMAND_NOT_FOUND: (DaemonUnreachable, f"no {BRIDGE} there: is automd installed?"),
    BRIDGE_NOPERM: (ConnectPermissionDenied, "automd's socket refused the ssh user"),
    BRIDGE_UNAVAILABLE: (DaemonUnreachable, "automd's socket cannot be reached"),
}

_USER = r"[A-Za-z0-9._][A-Za-z0-9._-]*"
_NAME = r"[A-Za-z0-9_][A-Za-z0-9._-]*"
_DESTINATION = re.compile(
    rf"(?:(?P<user>{_USER})@)?(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>{_NAME}))(?::(?P<port>\d+))?"
)


class Transport(Protocol):
    #: What messages call the other end: the socket path, or the ssh destination.
    label: str
    #: Whether one connection is kept for the command's calls (one ssh session per command).
    reuse: bool

    def connect(self, timeout: float) -> socket.socket: ...

    def failure(self) -> ClientError | None:
        """Why the last stream closed without an answer, if the transport knows better."""

    def close(self) -> None: ...


class UnixTransport:
    """A new connection to automd's socket for each call, as automctl always did."""

    reuse = False

    def __init__(self, path: str) -> None:
        self.path = path
        self.label = path

    def connect(self, timeout: float) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(self.path)
        except BaseException:
            sock.close()
            raise
        return sock

    def failure(self) -> ClientError | None:
        return None

    def close(self) -> None:
        pass


@dataclass(frozen=True)
class Destination:
    """`[user@]host[:port]` of -H, checked: it becomes an ssh argument, never an option."""

    host: str
    user: str | None = None
    port: int | None = None

    @classmethod
    def parse(cls, text: str) -> Destination:
        match = _DESTINATION.fullmatch(text)
        port = int(match["port"]) if match and match["port"] else None
        if match is None or (port is not None and not 0 < port < 65536):
            raise ValueError(
                f"{text[:60]!r} is not [user@]host[:port] (a host name, an IPv4 address, or an "
                "IPv6 address in brackets)"
            )
        return cls(host=match["v6"] or match["host"], user=match["user"], port=port)

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return (
            (f"{self.user}@" if self.user else "") + host + (f":{self.port}" if self.port else "")
        )


def ssh_command(destination: Destination, environ: dict[str, str] | None = None) -> list[str]:
    """The argv automctl runs: `ssh -xT [-p PORT] [-l USER] -- HOST automd-stdio-bridge`."""
    env = os.environ if environ is None else environ
    ssh = shlex.split(env.get(SSH_ENV) or "ssh")
    argv = [*ssh, "-xT"]
    if destination.port is not None:
        argv += ["-p", str(destination.port)]
    if destination.user is not None:
        argv += ["-l", destination.user]
    return [*argv, "--", destination.host, BRIDGE]


class SshTransport:
    """Runs ssh with one end of a socketpair as its stdin and stdout: the client's end is then
    a socket like any other (timeouts, http.client). One ssh session serves every call of the
    command while automd keeps the connection open; a new one is started when it does not."""

    reuse = True

    def __init__(self, destination: Destination, argv: list[str] | None = None) -> None:
        self.destination = destination
        self.label = str(destination)
        self.argv = argv or ssh_command(destination)
        #: Every ssh started and not yet reaped, the newest last, with its stderr.
        self._sessions: list[tuple[subprocess.Popen[bytes], IO[bytes]]] = []

    def connect(self, timeout: float) -> socket.socket:
        self._reap(only_ended=True)
        ours, theirs = socket.socketpair()
        # ssh's messages are kept for failure() (a terminal prompt goes to /dev/tty anyway).
        stderr = tempfile.TemporaryFile()  # noqa: SIM115 (closed by _reap)
        try:
            proc = subprocess.Popen(
                self.argv, stdin=theirs.fileno(), stdout=theirs.fileno(), stderr=stderr
            )
        except OSError as exc:
            ours.close()
            stderr.close()
            raise HostUnreachable(
                f"{self.label}: cannot run {self.argv[0]}: {exc.strerror}"
            ) from None
        finally:
            theirs.close()
        self._sessions.append((proc, stderr))
        ours.settimeout(timeout)
        return ours

    def failure(self) -> ClientError | None:
        """The ssh session ended before automd answered: say why, from its exit status."""
        if not self._sessions:
            return None
        proc, stderr = self._sessions[-1]
        try:
            status = proc.wait(timeout=_EXIT_WAIT_SECONDS)
        except subprocess.TimeoutExpired:
            return None
        said = _last_line(stderr)
        if status == 0:
            return None  # the bridge ended because automd closed: the client's own words
        if status in _FAILURES:
            error, meaning = _FAILURES[status]
            return error(f"{self.label}: {meaning}" + (f": {said}" if said else ""))
        return DaemonUnreachable(f"{self.label}: {BRIDGE} ended with status {status}: {said}")

    def close(self) -> None:
        self._reap(only_ended=False)

    def _reap(self, *, only_ended: bool) -> None:
        """Wait for ssh sessions whose stream is closed (they end on their own; a stuck one is
        killed), or with `only_ended` collect just those already gone."""
        kept = []
        for proc, stderr in self._sessions:
            if only_ended and proc.poll() is None:
                kept.append((proc, stderr))
                continue
            try:
                proc.wait(timeout=_EXIT_WAIT_SECONDS)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            stderr.close()
        self._sessions = kept


def _last_line(stderr: IO[bytes]) -> str:
    """ssh's (or the bridge's) last line on stderr."""
    stderr.seek(0)
    lines = stderr.read().decode(errors="replace").strip().splitlines()
    return lines[-1].strip() if lines else ""


def transport_for(host: str | None, socket_path: str | None) -> Transport:
    """-H (else $AUTOMD_HOST): ssh to that host; else the socket (--socket, $AUTOMD_SOCKET,
    /run/automd.sock). ValueError for a bad destination, or --socket with a host."""
    host = host or os.environ.get(HOST_ENV) or None
    if host is None:
        return UnixTransport(socket_path or os.environ.get(SOCKET_ENV) or DEFAULT_SOCKET)
    if socket_path:
        raise ValueError("--socket and -H exclude each other (over ssh, the host's own socket)")
    return SshTransport(Destination.parse(host))
