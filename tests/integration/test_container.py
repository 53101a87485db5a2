"""Smoke tests proving the container harness boots systemd and installs automd as intended."""

from __future__ import annotations

import stat
import sys

import pytest

from tests.integration.conftest import CHECKOUT, OTHER_USER, SOCKET_PATH, TEST_USER
from tests.integration.container import CommandError, Container

# Runs inside the container as a given user; reports how connect() on the socket went.
_CONNECT_PROBE = f"""
import socket
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
try:
    s.connect({SOCKET_PATH!r})
except PermissionError:
    print("EACCES")
else:
    print("connected")
"""

_ACCESS_PROBE = f"import os; print(os.access({SOCKET_PATH!r}, os.R_OK | os.W_OK))"


def test_system_booted(container: Container) -> None:
    state = container.run(["systemctl", "is-system-running"], check=False).stdout.decode()
    assert state.strip() in ("running", "degraded")
    assert container.run(["cat", "/proc/1/comm"]).stdout.decode().strip() == "systemd"


def test_transient_units(container: Container) -> None:
    ok = container.run(["systemd-run", "--wait", "--quiet", "-p", "MemoryMax=64M", "/bin/true"])
    assert ok.returncode == 0
    # --collect: the failed unit must not linger and turn the system state "degraded".
    failed = container.run(
        ["systemd-run", "--wait", "--quiet", "--collect", "/bin/false"], check=False
    )
    assert failed.returncode != 0


def test_run_reports_failures(container: Container) -> None:
    with pytest.raises(CommandError) as excinfo:
        container.run(["sh", "-c", "echo to-out; echo to-err >&2; exit 3"])
    message = str(excinfo.value)
    assert excinfo.value.returncode == 3
    assert "exit 3" in message
    assert "to-out" in message
    assert "to-err" in message


def test_checkout_visible_read_only_at_same_path(container: Container) -> None:
    container.run(["test", "-f", str(CHECKOUT / "pyproject.toml")])
    assert container.run(["touch", str(CHECKOUT / "x")], check=False).returncode != 0


def test_users_resolved_inside(container: Container) -> None:
    alice_uid = container.run(["id", "-u", TEST_USER]).stdout.decode().strip()
    uid = container.run(["id", "-u"], user=TEST_USER).stdout.decode().strip()
    assert uid == alice_uid
    assert uid != "0"
    assert "automd" in container.run(["id", "-Gn"], user=TEST_USER).stdout.decode().split()
    assert container.run(["id", "-u"], user=OTHER_USER).stdout.decode().strip() not in ("0", uid)
    assert "automd" not in container.run(["id", "-Gn"], user=OTHER_USER).stdout.decode().split()


def test_socket_installed(container: Container) -> None:
    out = container.run(["stat", "-c", "%F %a %U:%G", SOCKET_PATH]).stdout.decode().strip()
    assert out == "socket 660 root:automd"
    # The host reaches the same socket through the container's root.
    assert stat.S_ISSOCK((container.root / SOCKET_PATH.lstrip("/")).stat().st_mode)


def test_service_runs_the_checkout_venv(container: Container) -> None:
    out = container.run(["systemctl", "show", "automd.service", "-p", "ExecStart"]).stdout.decode()
    assert f"{CHECKOUT}/.venv/bin/automd" in out
    # The drop-in's empty ExecStart= must have reset the packaged command.
    assert "/usr/bin/automd" not in out


def test_socket_refuses_non_members(container: Container) -> None:
    # Only bob connects: a successful connect would activate a daemon that may not exist yet.
    probe = container.run([sys.executable, "-c", _CONNECT_PROBE], user=OTHER_USER)
    assert probe.stdout.decode().strip() == "EACCES"
    # Positive control without connecting: the permission bits let alice in, not bob.
    alice = container.run([sys.executable, "-c", _ACCESS_PROBE], user=TEST_USER)
    bob = container.run([sys.executable, "-c", _ACCESS_PROBE], user=OTHER_USER)
    assert (alice.stdout.decode().strip(), bob.stdout.decode().strip()) == ("True", "False")
