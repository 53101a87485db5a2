"""Cockpit in the test container serving the page of cockpit/, reached from the host.

cockpit-ws runs inside the container as Debian's plain-HTTP instance,
cockpit-wsinstance-http.service (user cockpit-wsinstance, `--no-tls --port=0`), started by
systemd from cockpit-wsinstance-http.socket, a Unix socket in the container's /run. So logins
go through the container's PAM (the setuid cockpit-session) and each session's cockpit-bridge
runs as the user who logged in. Debian's two units are used as shipped but for one line each:
both are BindsTo=cockpit.service, the TLS front (cockpit-tls) behind cockpit.socket on port
9090, which test containers mask (they share the host's network namespace, so parallel runs
would collide on it). Copies without that line, under the same names in the container's
/run/systemd/system, take the shipped units' place there (systemd's full override).

The browser reaches that Unix socket through the container's root (/proc/PID/root): a small
forwarder in the test process accepts on 127.0.0.1 with a port the kernel picks and copies
bytes to and from the socket. No address of any network interface is used, nothing inside
the container listens on TCP, and no traffic leaves this machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import shutil
import threading
from pathlib import Path

from tests.integration.container import Container

PAGE_SOURCE = Path(__file__).parents[2] / "cockpit"
COCKPIT_DIR = "/usr/share/cockpit"  # the host's, read-only: the page is overlaid on it
OUR_COCKPIT_DIR = "/run/automd-test-cockpit"
WS_UNITS = ("cockpit-wsinstance-http.socket", "cockpit-wsinstance-http.service")
WS_SOCKET = "/run/cockpit/wsinstance/http.sock"  # ListenStream= of the shipped socket unit
_SHIPPED_UNITS = "/usr/lib/systemd/system"
_OVERRIDE_UNITS = "/run/systemd/system"
_CHUNK = 64 * 1024


def install_page(c: Container) -> None:
    """The page where the Debian package puts it, /usr/share/cockpit/automd.

    /usr is the host's and read-only in the container: a read-only overlay of a directory in
    the container's /run on top of it is mounted in the container's own mount namespace (as
    install_polkit_policy does for polkit's actions), so the host's /usr is never written.
    """
    for path in sorted(PAGE_SOURCE.rglob("*")):
        if path.is_file():
            relative = path.relative_to(PAGE_SOURCE)
            c.write_file(f"{OUR_COCKPIT_DIR}/automd/{relative}", path.read_bytes())
    lower = f"lowerdir={OUR_COCKPIT_DIR}:{COCKPIT_DIR}"
    c.run(["mount", "-t", "overlay", "automd-test-cockpit", "-o", lower, COCKPIT_DIR])


def set_password(c: Container, user: str) -> str:
    """Give `user` a fresh random password inside the container (its /etc is throwaway)."""
    password = secrets.token_urlsafe(12)
    c.run(["chpasswd"], input=f"{user}:{password}\n".encode())
    return password


def end_sessions(c: Container, users: list[str]) -> None:
    """End the logind sessions Cockpit logins opened for `users`, and their user managers.

    Each login goes through pam_systemd, which starts the user's systemd (user@UID.service)
    in the shared container; left running, it would have to stop during the container's
    poweroff, for whichever test module happens to end the session. Stopped here, its stop is
    this module's, and bounded by the command's timeout.
    """
    for user in users:
        c.run(["loginctl", "terminate-user", user], check=False)
        c.run(["systemctl", "stop", f"user@{c.user(user).uid}.service"])


class CockpitWs:
    """Debian's socket-activated cockpit-ws inside the container, and a forwarder on the host
    to its Unix socket; `url` reaches it."""

    def __init__(self, c: Container) -> None:
        self._container = c
        self._forwarder = UnixForwarder(f"{c.root}{WS_SOCKET}")

    @property
    def url(self) -> str:
        return self._forwarder.url

    def start(self) -> None:
        for unit in WS_UNITS:
            shipped = self._container.run(["cat", f"{_SHIPPED_UNITS}/{unit}"]).stdout.decode()
            assert "BindsTo=cockpit.service" in shipped, f"{unit} changed: {shipped}"
            unbound = "".join(line for line in shipped.splitlines(keepends=True)
                              if not line.startswith("BindsTo="))  # fmt: skip
            self._container.write_file(f"{_OVERRIDE_UNITS}/{unit}", unbound)
        self._container.run(["systemctl", "daemon-reload"])
        # systemctl returns once the socket listens; the first connection starts cockpit-ws.
        self._container.run(["systemctl", "start", WS_UNITS[0]])
        self._forwarder.start()

    def stop(self) -> None:
        self._forwarder.stop()
        self._container.run(["systemctl", "stop", *WS_UNITS])
        self._container.run(["rm", "-f", *(f"{_OVERRIDE_UNITS}/{unit}" for unit in WS_UNITS)])
        self._container.run(["systemctl", "daemon-reload"])

    def __enter__(self) -> CockpitWs:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class UnixForwarder:
    """127.0.0.1:<a free port> -> a Unix socket, one connection to it per accepted one, run by
    asyncio in a thread of its own (the tests drive the browser synchronously meanwhile)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.url = ""
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        self._thread.start()
        listening = asyncio.run_coroutine_threadsafe(self._listen(), self._loop)
        self.url = listening.result(timeout=30)

    async def _listen(self) -> str:
        self._server = await asyncio.start_server(self._connect, "127.0.0.1", 0)
        host, port = self._server.sockets[0].getsockname()[:2]
        return f"http://{host}:{port}"

    async def _connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        try:
            inner_reader, inner_writer = await asyncio.open_unix_connection(self.path)
            self._writers.add(inner_writer)
            await asyncio.gather(_copy(reader, inner_writer), _copy(inner_reader, writer))
        except OSError:
            writer.close()  # no listener: the browser sees the connection end
        finally:
            self._writers = {w for w in self._writers if not w.is_closing()}
            self._tasks.discard(task)

    def stop(self) -> None:
        async def close() -> None:
            if self._server is not None:
                self._server.close()
            # Connections still open (the browsers' keep-alives) are closed, and their copying
            # ends with them.
            for writer in list(self._writers):
                writer.close()
            await asyncio.gather(*self._tasks, return_exceptions=True)

        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(close(), self._loop).result(timeout=30)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=30)
        self._loop.close()


async def _copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Bytes from reader to writer until either side ends; then both directions' write side
    is closed, so the peer sees the end as it would on a direct connection."""
    with contextlib.suppress(ConnectionError, OSError):
        while data := await reader.read(_CHUNK):
            writer.write(data)
            await writer.drain()
    writer.close()
    with contextlib.suppress(ConnectionError, OSError):
        await writer.wait_closed()


def chromium_paths() -> tuple[str, str]:
    """Debian's chromium and chromedriver (packaging/apt-packages.txt); missing ones fail."""
    browser, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if browser is None or driver is None:
        raise RuntimeError("chromium and chromium-driver are needed (packaging/apt-packages.txt)")
    return browser, driver
