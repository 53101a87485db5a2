"""Cockpit in the test container serving the page of cockpit/, reached from the host.

cockpit-ws runs inside the container as Debian runs its plain-HTTP instance
(cockpit-wsinstance-http.service: user cockpit-wsinstance, `--no-tls --port=0`, socket-activated),
so logins go through the container's PAM (the setuid cockpit-session) and each session's
cockpit-bridge runs as the user who logged in. Its listening socket is made here, on the host:
127.0.0.1 with a port the kernel picks, held open from before cockpit-ws starts until it
stops. Parallel test runs share the host's network namespace with their containers (nspawn
without --private-network), so a fixed port (Cockpit's 9090) would collide between them, and
a port picked, closed and then reused could be taken in between; a socket held open cannot.
The socket is handed over as systemd would (LISTEN_FDS), which cockpit-ws supports since
that is how systemd starts it. Nothing listens beyond the loopback address.
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import socket
import subprocess
from pathlib import Path

from tests.integration.container import Container

PAGE_SOURCE = Path(__file__).parents[2] / "cockpit"
COCKPIT_DIR = "/usr/share/cockpit"  # the host's, read-only: the page is overlaid on it
OUR_COCKPIT_DIR = "/run/automd-test-cockpit"
COCKPIT_WS = "/usr/lib/cockpit/cockpit-ws"
WS_USER = "cockpit-wsinstance"
# The first fd a socket-activated service gets (SD_LISTEN_FDS_START).
_LISTEN_FD = 3
# cockpit-ws exits after this many seconds without a connection when socket-activated (systemd
# would start it again); here nothing would, so it is told to stay for the whole test run.
_IDLE_SECONDS = 24 * 3600


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
    """cockpit-ws inside the container on a loopback socket of the host's; `url` reaches it."""

    def __init__(self, c: Container) -> None:
        self._container = c
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._proc: subprocess.Popen[bytes] | None = None
        self.log = b""

    @property
    def url(self) -> str:
        host, port = self._listener.getsockname()
        return f"http://{host}:{port}"

    def start(self) -> None:
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        fd = self._listener.fileno()
        account = self._container.user(WS_USER)
        # bash moves the inherited socket to fd 3 and sets LISTEN_PID to its own pid, which
        # exec keeps: what sd_listen_fds() in cockpit-ws checks.
        move = "" if fd == _LISTEN_FD else f"exec {_LISTEN_FD}<&{fd} {fd}<&-; "
        script = (
            f"{move}LISTEN_PID=$$ LISTEN_FDS=1 COCKPIT_WS_PROCESS_IDLE={_IDLE_SECONDS} "
            f"exec {COCKPIT_WS} --no-tls --port=0"
        )
        argv = [
            "nsenter", "-t", str(self._container.pid1), "-a",
            "setpriv", f"--reuid={account.uid}", f"--regid={account.gid}", "--init-groups",
            "bash", "-c", script,
        ]  # fmt: skip
        self._proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            pass_fds=(fd,),
            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"},
        )

    def stop(self) -> None:
        """Stop the cockpit-ws this object started, by its pid, and close the socket."""
        proc, self._proc = self._proc, None
        if proc is not None:
            # nsenter forks once to enter the PID namespace: cockpit-ws is its only child.
            for child in _children(proc.pid):
                with contextlib.suppress(ProcessLookupError):
                    subprocess.run(["kill", "-TERM", str(child)], check=False)
            try:
                self.log, _ = proc.communicate(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                self.log, _ = proc.communicate()
        self._listener.close()

    def __enter__(self) -> CockpitWs:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _children(pid: int) -> list[int]:
    with contextlib.suppress(FileNotFoundError):
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    return []


def chromium_paths() -> tuple[str, str]:
    """Debian's chromium and chromedriver (packaging/apt-packages.txt); missing ones fail."""
    browser, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if browser is None or driver is None:
        raise RuntimeError("chromium and chromium-driver are needed (packaging/apt-packages.txt)")
    return browser, driver
