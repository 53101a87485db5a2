"""Boot a throwaway systemd 252 as PID 1 with systemd-nspawn and run commands inside it."""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from tests.terminal_signals import sigint_as_in_a_terminal

# Units enabled on the Debian hosts that only fail (or waste boot time) inside a volatile
# container. Masking them keeps the boot quick and the system state "running"; units that do
# not exist on a given host are masked harmlessly. "degraded" is still accepted as booted.
_IRRELEVANT_HOST_UNITS = (
    "postgresql.service",
    "postgresql@.service",
    "prometheus.service",
    "prometheus-node-exporter.service",
    "prometheus-node-exporter-apt.service",
    "openipmi.service",
    "nvmf-autoconnect.service",
    "nvmefc-boot-connections.service",
    "smartmontools.service",
    # openssh-server (for the fleet tests' `sshd -i`) enables ssh.service on the host; inside,
    # sharing the host's network, it would listen on the host's port 22.
    "ssh.service",
    # Installed for the Cockpit test (packaging/apt-packages.txt), enabled on the host: inside,
    # each container would listen on *:9090 in the shared network namespace, so parallel runs
    # would collide. tests/integration/cockpit.py starts Debian's cockpit-ws on its Unix socket.
    "cockpit.socket",
)

# nsenter passes our environment through; the host's (VIRTUAL_ENV, PYTHONPATH, ...) must not
# leak into commands that are meant to behave like processes started inside the container.
_BASE_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG": "C.UTF-8",
}

_STOP_GRACE_SECONDS = 15.0
_NSPAWN_PROPAGATE_DIR = Path("/run/systemd/nspawn/propagate")
_ANSI_ESCAPE = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]")


class ContainerError(RuntimeError):
    """The container could not be booted, reached or stopped."""


class CommandError(subprocess.CalledProcessError):
    """A command run inside the container exited non-zero; the message carries its output."""

    def __str__(self) -> str:
        return (
            f"command {list(self.cmd)!r} exited with status {self.returncode}\n"
            f"--- stdout ---\n{_text(self.stdout)}\n--- stderr ---\n{_text(self.stderr)}"
        )


@dataclass(frozen=True)
class Account:
    """A user as the container (not the host) resolves it."""

    name: str
    uid: int
    gid: int
    home: str


class Container:
    """One systemd-nspawn container sharing the host's /usr, with the checkout at its own path."""

    def __init__(
        self,
        checkout: Path,
        *,
        name: str | None = None,
        log_path: Path | None = None,
        writable: Sequence[str] = (),
    ) -> None:
        """`writable`: host directories (such as /usr) that the container sees with a throwaway
        writable overlay on top, so that it can install packages there; nspawn keeps the
        upper layer in a temporary directory and removes it with the container."""
        self.checkout = checkout.absolute()
        self.writable = tuple(writable)
        self.name = name or f"automd-test-{os.getpid()}-{secrets.token_hex(3)}"
        self.log_path = log_path
        # Seconds from spawning systemd-nspawn to "running"/"degraded", and which of the two.
        self.boot_seconds: float | None = None
        self.boot_state: str | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._pid1: int | None = None
        self._owns_log = False

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self, timeout: float = 90) -> None:
        """Boot the container and return once systemd reports the boot finished."""
        if self._proc is not None:
            raise ContainerError(f"container {self.name} is already started")
        argv = self._nspawn_argv()
        if self.log_path is None:
            fd, path = tempfile.mkstemp(prefix=f"{self.name}-", suffix=".log")
            os.close(fd)
            self.log_path = Path(path)
            self._owns_log = True
        started = time.monotonic()
        deadline = started + timeout
        with self.log_path.open("wb") as log:
            self._proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                # Its own session: a Ctrl-C aimed at pytest must reach our teardown, not
                # nspawn, so the container is shut down in order instead of half-killed.
                start_new_session=True,
            )
        try:
            self._pid1 = self._wait_for_pid1(deadline)
            self.boot_state = self._wait_for_boot(deadline, timeout)
        except Exception as exc:
            diagnostics = self.diagnostics()
            # Keep even a temporary log: the error message points at it.
            self._owns_log = False
            self._stop_quietly()
            raise ContainerError(f"{exc}\n{diagnostics}") from exc
        except BaseException:
            self._stop_quietly()
            raise
        self.boot_seconds = time.monotonic() - started

    def stop(self) -> None:
        """Power the container off (SIGTERM to nspawn), SIGKILL it after a grace period.

        Only the systemd-nspawn process this object started is ever signalled. Idempotent.
        """
        proc, pid1 = self._proc, self._pid1
        if proc is None:
            return
        self._proc = None
        self._pid1 = None
        try:
            if proc.poll() is None:
                # systemd-nspawn turns SIGTERM into an orderly poweroff of the container.
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=_STOP_GRACE_SECONDS)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=_STOP_GRACE_SECONDS)
        finally:
            if self._owns_log and self.log_path is not None:
                self.log_path.unlink(missing_ok=True)
            # nspawn leaves this (empty) directory behind when stopped early in its setup;
            # rmdir only ever removes it if empty, and the name is unique to this container.
            with contextlib.suppress(OSError):
                (_NSPAWN_PROPAGATE_DIR / self.name).rmdir()
        # nspawn reaps its payload before exiting, and the payload dies with a killed nspawn;
        # if the init survived anyway something is badly wrong and must not go unnoticed.
        if pid1 is not None and _is_systemd(pid1):
            raise ContainerError(
                f"container {self.name}: init (pid {pid1}) still alive after systemd-nspawn "
                f"(pid {proc.pid}) exited"
            )

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- access ------------------------------------------------------------------------------

    @property
    def pid1(self) -> int:
        """Host PID of the container's systemd (its PID 1)."""
        if self._pid1 is None:
            raise ContainerError(f"container {self.name} is not running")
        return self._pid1

    @property
    def root(self) -> Path:
        """The container's / as seen from the host (absolute symlinks inside resolve wrongly)."""
        return Path(f"/proc/{self.pid1}/root")

    def run(
        self,
        cmd: Sequence[str],
        *,
        user: str | None = None,
        input: bytes | None = None,
        timeout: float = 60,
        check: bool = True,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[bytes]:
        """Run cmd in all of the container's namespaces, as root or as `user`.

        The environment is a minimal login-like one (PATH, LANG, HOME, USER, LOGNAME) plus env.
        """
        argv, environ = self._inside(cmd, user, env)
        proc = subprocess.run(
            argv,
            # An empty stdin rather than the terminal's, so nothing can block waiting for input.
            input=b"" if input is None else input,
            capture_output=True,
            timeout=timeout,
            env=environ,
            check=False,
        )
        if check and proc.returncode != 0:
            raise CommandError(proc.returncode, list(cmd), proc.stdout, proc.stderr)
        return proc

    def popen(self, cmd: Sequence[str], *, user: str | None = None) -> subprocess.Popen[bytes]:
        """Start cmd inside as run() does, with stdout and stderr as pipes (for streaming)."""
        argv, environ = self._inside(cmd, user, None)
        with sigint_as_in_a_terminal():  # a test may Ctrl-C it
            return subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                env=environ,
            )  # fmt: skip

    def _inside(
        self, cmd: Sequence[str], user: str | None, env: Mapping[str, str] | None
    ) -> tuple[list[str], dict[str, str]]:
        environ = dict(_BASE_ENV, HOME="/root", USER="root", LOGNAME="root")
        argv = ["nsenter", "-t", str(self.pid1), "-a"]
        if user is not None:
            account = self.user(user)
            argv += [
                "setpriv",
                f"--reuid={account.uid}",
                f"--regid={account.gid}",
                "--init-groups",
            ]
            environ.update(HOME=account.home, USER=account.name, LOGNAME=account.name)
        environ.update(env or {})
        return [*argv, *cmd], environ

    def user(self, name: str) -> Account:
        """Resolve a user inside the container, whose /etc differs from the host's."""
        proc = self.run(["getent", "passwd", name], check=False)
        if proc.returncode != 0:
            raise ContainerError(f"no user {name!r} in container {self.name}")
        fields = proc.stdout.decode().strip().split(":")
        return Account(name=fields[0], uid=int(fields[2]), gid=int(fields[3]), home=fields[5])

    def write_file(self, path: str, data: bytes | str, *, mode: int = 0o644) -> None:
        """Create or replace a root-owned file inside, creating its parent directories."""
        payload = data.encode() if isinstance(data, str) else data
        self.run(["install", "-D", "-m", f"{mode:04o}", "/dev/stdin", path], input=payload)

    # -- systemd inside ----------------------------------------------------------------------

    def show(self, unit: str, *props: str) -> dict[str, str]:
        """`systemctl show` of a unit's properties, by name."""
        out = self.run(["systemctl", "show", unit, *(f"--property={p}" for p in props)]).stdout
        return dict(line.split("=", 1) for line in out.decode().splitlines() if "=" in line)

    def start_units(self, *units: str) -> None:
        self._afresh("start", units)

    def stop_units(self, *units: str) -> None:
        self._afresh("stop", units)

    def restart_units(self, *units: str) -> None:
        self._afresh("restart", units)

    def _afresh(self, verb: str, units: Sequence[str]) -> None:
        """What every test that starts, stops or restarts a unit on purpose goes through.

        systemd counts each start of a unit, socket activations and Restart= included, and
        by default refuses the sixth within 10 s (StartLimitBurst=, "start-limit-hit"); a
        failed unit then fails every later test in the shared container. automd.service has
        no start limit any more (docs/systemd.md), but automd.socket and polkit.service keep
        systemd's. reset-failed forgets the count, so no test's deliberate restarts spend the
        budget of the next; the units keep the limits users get. It comes first, so what a
        stop leaves (Result=, NRestarts=) can still be checked. It fails for a unit not
        loaded (nothing to forget): ignored.
        """
        self.run(["systemctl", "reset-failed", *units], check=False)
        self.run(["systemctl", verb, *units])

    def sync_journal(self) -> None:
        """Return once journald has stored everything logged before this call.

        journald handles the messages already queued to it before a sync request, so a
        finished job's output, or an entry sent before a reply, is then there to read: no
        waiting, and no guess at how far journald lags on a loaded machine.
        """
        self.run(["journalctl", "--sync"])

    def journal(self, *matches: str, since: float | None = None) -> list[dict[str, Any]]:
        """Journal entries matching `matches` (journalctl's syntax), as JSON objects, with
        everything logged before this call (sync_journal)."""
        self.sync_journal()
        argv = ["journalctl", "--no-pager", "--output=json", *matches]
        if since is not None:
            argv.append(f"--since=@{int(since)}")
        out = self.run(argv).stdout.decode()
        return [json.loads(line) for line in out.splitlines() if line]

    def diagnostics(self, lines: int = 40) -> str:
        """Tails of the nspawn log and, if the container is reachable, of its journal."""
        parts = [f"--- systemd-nspawn log ({self.log_path}), last {lines} lines ---"]
        parts.append(self._log_tail(lines))
        if self._pid1 is not None and _is_systemd(self._pid1):
            try:
                journal = self.run(
                    ["journalctl", "-b", "--no-pager", "-n", str(lines)], check=False, timeout=10
                )
                failed = self.run(
                    ["systemctl", "--failed", "--no-pager", "--plain"], check=False, timeout=10
                )
            except subprocess.TimeoutExpired:
                parts.append("--- journal unreachable (timeout) ---")
            else:
                parts += [
                    "--- journalctl -b ---",
                    _text(journal.stdout + journal.stderr),
                    "--- systemctl --failed ---",
                    _text(failed.stdout + failed.stderr),
                ]
        return "\n".join(parts)

    # -- internals ---------------------------------------------------------------------------

    def _nspawn_argv(self) -> list[str]:
        if os.geteuid() != 0:
            raise ContainerError("integration tests must run as root (systemd-nspawn needs it)")
        for tool in ("systemd-nspawn", "nsenter", "setpriv"):
            if shutil.which(tool) is None:
                raise ContainerError(f"{tool} not found; install systemd-container and util-linux")
        if not self.checkout.is_dir():
            raise ContainerError(f"checkout {self.checkout} is not a directory")
        binds = [self.checkout]
        # The venv's scripts have absolute shebangs into the venv, whose python is a symlink to
        # the base interpreter; that prefix must exist inside too. /usr is shared already.
        venv_python = self.checkout / ".venv" / "bin" / "python"
        if venv_python.exists():
            prefix = Path(os.path.realpath(venv_python)).parents[1]
            if not (prefix.is_relative_to("/usr") or prefix.is_relative_to(self.checkout)):
                binds.append(prefix)
        for path in binds:
            # nspawn splits --bind-ro on ':'; such paths would silently bind the wrong thing.
            if ":" in str(path):
                raise ContainerError(f"cannot bind a path containing ':': {path}")
        return [
            # Parent-death signal: if the test process dies without tearing down (SIGKILL,
            # os._exit), nspawn still gets SIGTERM and powers the container off.
            "setpriv",
            "--pdeathsig=TERM",
            "systemd-nspawn",
            "--quiet",
            "--directory=/",
            "--volatile=yes",
            "--overlay=/etc::/etc",
            *(f"--bind-ro={path}:{path}" for path in binds),
            # An empty upper directory ("::"): a temporary one, deleted when nspawn exits.
            *(f"--overlay={path}::{path}" for path in self.writable),
            # No machined and no host systemd to register with or to create a scope in.
            "--register=no",
            "--keep-unit",
            f"--machine={self.name}",
            "--boot",
            # Arguments after --boot go to the container's systemd, whose debug generator
            # honours systemd.mask= from its own command line inside a container.
            *(f"systemd.mask={unit}" for unit in _IRRELEVANT_HOST_UNITS),
        ]

    def _wait_for_pid1(self, deadline: float) -> int:
        """The nspawn child that has exec'd systemd; before that exec it is still nspawn."""
        proc = self._running_proc()
        while time.monotonic() < deadline:
            self._check_alive(proc)
            for child in _children(proc.pid):
                if _is_systemd(child):
                    return child
            time.sleep(0.02)
        raise ContainerError(f"container {self.name}: systemd did not start as PID 1 in time")

    def _wait_for_boot(self, deadline: float, timeout: float) -> str:
        proc = self._running_proc()
        state = ""
        while (remaining := deadline - time.monotonic()) > 0:
            self._check_alive(proc)
            try:
                # Right after PID 1 execs, systemctl cannot reach it yet and fails at once;
                # once connected, --wait blocks until the boot has finished.
                result = self.run(
                    ["systemctl", "is-system-running", "--wait"], check=False, timeout=remaining
                )
            except subprocess.TimeoutExpired:
                break
            state = result.stdout.decode().strip()
            if state in ("running", "degraded"):
                return state
            if state in ("maintenance", "stopping"):
                raise ContainerError(f"container {self.name} booted into state {state!r}")
            time.sleep(0.05)
        raise ContainerError(
            f"container {self.name} did not finish booting within {timeout:g} s "
            f"(last state {state!r})"
        )

    def _running_proc(self) -> subprocess.Popen[bytes]:
        if self._proc is None:
            raise ContainerError(f"container {self.name} is not started")
        return self._proc

    def _check_alive(self, proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is not None:
            raise ContainerError(
                f"systemd-nspawn for {self.name} exited with status {proc.returncode} during boot"
            )

    def _stop_quietly(self) -> None:
        # Used on a failed start: the boot error is the one worth reporting.
        with contextlib.suppress(ContainerError):
            self.stop()

    def _log_tail(self, lines: int) -> str:
        if self.log_path is None:
            return "(no log)"
        try:
            data = self.log_path.read_bytes()
        except OSError as exc:
            return f"(unreadable: {exc})"
        tail = b"\n".join(data.splitlines()[-lines:])
        return _text(_ANSI_ESCAPE.sub(b"", tail))


def _children(pid: int) -> list[int]:
    children: list[int] = []
    with contextlib.suppress(FileNotFoundError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(FileNotFoundError):
                children += [int(c) for c in (task / "children").read_text().split()]
    return children


def _is_systemd(pid: int) -> bool:
    try:
        return Path(os.readlink(f"/proc/{pid}/exe")).name == "systemd"
    except OSError:
        return False


def _text(data: bytes | str | None) -> str:
    if data is None:
        return ""
    if isinstance(data, bytes):
        return data.decode(errors="replace").rstrip()
    return data.rstrip()
