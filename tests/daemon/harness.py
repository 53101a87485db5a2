"""A real automd process on the host (no systemd needed), and a raw HTTP client for it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar, Protocol


class DaemonProcess:
    """`automd --listen` in a subprocess, with NOTIFY_SOCKET pointed at us to see sd_notify."""

    def __init__(self, workdir: Path, config_text: str = "") -> None:
        self.workdir = workdir
        self.socket_path = workdir / "automd.sock"
        self.config_path = workdir / "automd.toml"
        self.config_path.write_text(config_text)
        self.log_path = workdir / "daemon.log"
        self.notifications: list[str] = []
        self._notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._notify.bind(str(workdir / "notify.sock"))
        self._notify.settimeout(0.2)
        # Read all the time, as PID 1 does: the kernel queues only a few datagrams
        # (net.unix.max_dgram_qlen, 10 here), and once they are unread the daemon's next
        # sd_notify blocks (automd's event loop with it) until one is read.
        self._seen = threading.Condition()
        self._closed = False
        self._reader = threading.Thread(target=self._read_notifications, daemon=True)
        self._reader.start()
        self.proc: subprocess.Popen[bytes] | None = None

    @classmethod
    def with_definitions(
        cls, workdir: Path, definitions: dict[str, str], config_text: str = ""
    ) -> DaemonProcess:
        """A daemon whose jobs.d holds `definitions` (name -> TOML), plus `config_text`."""
        jobs = workdir / "jobs.d"
        jobs.mkdir()
        for name, text in definitions.items():
            (jobs / f"{name}.toml").write_text(text)
        return cls(workdir, f'{config_text}\n[jobs]\ndefinitions_directory = "{jobs}"\n')

    def command(self) -> list[str]:
        return [
            sys.executable, "-m", "automd.daemon",
            "--listen", str(self.socket_path),
            "--config", str(self.config_path),
            "--state-dir", str(self.workdir / "state"),
        ]  # fmt: skip

    def env(self) -> dict[str, str]:
        return {**os.environ, "NOTIFY_SOCKET": str(self.workdir / "notify.sock")}

    def start(self, command: list[str] | None = None, timeout: float = 15.0) -> None:
        self.proc = self.spawn(command or self.command())
        self.wait_for_notification("READY=1", timeout)

    def start_activated(self, named: dict[str, socket.socket], timeout: float = 15.0) -> None:
        """Start as systemd would with these listening sockets (LISTEN_FDS from fd 3, in
        order, FileDescriptorName= their keys) instead of --listen."""
        command = self.command()
        del command[3:5]  # --listen PATH
        # A launcher moves the sockets to 3, 4, ... and sets LISTEN_PID to its own pid, which
        # exec hands on to automd (dash, /bin/sh, takes only one-digit fds in redirections).
        fds = [sock.fileno() for sock in named.values()]
        script = (
            "import os, sys\n"
            f"for i, fd in enumerate({fds}): os.dup2(fd, 3 + i)\n"
            "os.environ['LISTEN_PID'] = str(os.getpid())\n"
            "os.execv(sys.argv[1], sys.argv[1:])\n"
        )
        env = {**self.env(), "LISTEN_FDS": str(len(named)), "LISTEN_FDNAMES": ":".join(named)}
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", script, *command],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                pass_fds=fds,
            )
        self.wait_for_notification("READY=1", timeout)

    def spawn(self, command: list[str]) -> subprocess.Popen[bytes]:
        # Output goes to a file, not a pipe: nobody reads a pipe while the daemon runs, and a
        # daemon blocked on a full one (64 KiB of log) looks like a hang.
        with self.log_path.open("ab") as log:
            return subprocess.Popen(command, env=self.env(), stdout=log, stderr=subprocess.STDOUT)

    def wait_for_notification(self, field: str, timeout: float = 15.0) -> str:
        """The first sd_notify message holding `field` as a whole line (e.g. READY=1)."""
        return self.wait_for_message(lambda message: field in message.split("\n"), timeout)

    def _read_notifications(self) -> None:
        while not self._closed:
            try:
                message = self._notify.recv(4096).decode()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._seen:
                self.notifications.append(message)
                self._seen.notify_all()

    def wait_for_message(self, matches: Callable[[str], bool], timeout: float = 15.0) -> str:
        """The first message seen so far (or arriving within `timeout`) that `matches`."""
        deadline = time.monotonic() + timeout
        checked = 0
        with self._seen:
            while True:
                for message in self.notifications[checked:]:
                    if matches(message):
                        return message
                checked = len(self.notifications)
                assert self.proc is not None
                if self.proc.poll() is not None:
                    raise AssertionError(f"automd exited {self.proc.returncode}: {self.output()}")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        f"no matching message within {timeout}s; got {self.notifications}"
                    )
                self._seen.wait(min(0.2, remaining))

    def signal(self, signum: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    def stop(self, timeout: float = 20.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def close(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait()
        self._closed = True
        self._reader.join()
        self._notify.close()


class DaemonFactory(Protocol):
    """Makes a not-yet-started DaemonProcess in a fresh directory: automd.toml text, and job
    definitions (name -> TOML) if any."""

    def __call__(
        self, config_text: str = "", definitions: dict[str, str] | None = None
    ) -> DaemonProcess: ...


class HttpReply:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body)


async def read_reply(reader: asyncio.StreamReader) -> HttpReply:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    body = await reader.readexactly(length) if length else b""
    return HttpReply(status, headers, body)


def post_bytes(
    body: bytes, *, content_type: str = "application/json", extra: str = "", method: str = "POST"
) -> bytes:
    head = (
        f"{method} /rpc HTTP/1.1\r\nHost: automd\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n{extra}\r\n"
    )
    return head.encode() + body


class Connection:
    """One keep-alive connection speaking raw HTTP/1.1, for precise control of what is sent."""

    #: Every connection opened and not yet closed; the autouse fixture closes leftovers.
    open_connections: ClassVar[set[Connection]] = set()

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        Connection.open_connections.add(self)

    @classmethod
    async def open(cls, path: Path) -> Connection:
        reader, writer = await asyncio.open_unix_connection(str(path))
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def post(self, body: bytes, **kwargs: Any) -> HttpReply:
        await self.send(post_bytes(body, **kwargs))
        return await read_reply(self.reader)

    async def call(self, method: str, params: Any = None, id: Any = 1) -> Any:
        request = {"jsonrpc": "2.0", "method": method, "id": id}
        if params is not None:
            request["params"] = params
        reply = await self.post(json.dumps(request).encode())
        assert reply.status == 200, reply.body
        return reply.json()

    async def closed_by_peer(self) -> bool:
        """True once the daemon hangs up; callers bound the wait with asyncio.timeout."""
        try:
            return await self.reader.read() == b""
        except ConnectionResetError:
            return True

    async def close(self) -> None:
        Connection.open_connections.discard(self)
        self.writer.close()
        with contextlib.suppress(ConnectionResetError, BrokenPipeError):
            await self.writer.wait_closed()


async def call(path: Path, method: str, params: Any = None) -> Any:
    conn = await Connection.open(path)
    try:
        return await conn.call(method, params)
    finally:
        await conn.close()


@contextlib.contextmanager
def descriptors_for(count: int) -> Iterator[None]:
    """Room for `count` client sockets in this process (and 512 more): the soft
    RLIMIT_NOFILE is raised for the while if it is lower; a hard limit too low fails."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = count + 512
    if soft >= wanted:
        yield
        return
    if hard != resource.RLIM_INFINITY and hard < wanted:
        raise AssertionError(f"RLIMIT_NOFILE hard limit {hard} < {wanted}: cannot hold {count}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
