"""automd under a real systemd: socket activation, sd_notify, stop/reload, automctl, users."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator

import pytest

from automd import __version__
from automd.api.codes import API_VERSION
from tests.integration.conftest import (
    CHECKOUT,
    OTHER_USER,
    SOCKET_PATH,
    TEST_USER,
    WAIT_SECONDS,
    wait_for,
)
from tests.integration.container import Container

VENV = CHECKOUT / ".venv" / "bin"
AUTOMCTL = str(VENV / "automctl")


def rpc_with_curl(c: Container, method: str, *, user: str | None = None) -> dict[str, object]:
    body = json.dumps({"jsonrpc": "2.0", "method": method, "id": 7})
    result = c.run(
        ["curl", "-sS", "--max-time", f"{WAIT_SECONDS:g}", "--unix-socket", SOCKET_PATH,
         "-H", "Content-Type: application/json", "-d", body, "http://automd/rpc"],
        user=user, timeout=WAIT_SECONDS + 10,
    )  # fmt: skip
    reply: dict[str, object] = json.loads(result.stdout)
    return reply


def systemd_version(c: Container) -> str:
    return c.run(["systemctl", "show", "--property=Version", "--value"]).stdout.decode().strip()


@pytest.fixture
def stopped_service(container: Container) -> Iterator[Container]:
    """automd.service inactive, its socket listening: the next connection activates it."""
    container.stop_units("automd.service")
    container.start_units("automd.socket")
    assert container.show("automd.service", "ActiveState")["ActiveState"] == "inactive"
    yield container
    container.run(["rm", "-f", "/etc/automd/automd.toml"])
    # Stopped, so that the next connection starts automd with the default configuration.
    container.stop_units("automd.service")
    container.start_units("automd.socket")


def test_first_request_activates_the_service(stopped_service: Container) -> None:
    c = stopped_service
    reply = rpc_with_curl(c, "system.version")
    assert reply == {
        "jsonrpc": "2.0",
        "result": {
            "version": __version__,
            "api_version": API_VERSION,
            "systemd_version": systemd_version(c),
        },
        "id": 7,
    }
    state = c.show("automd.service", "ActiveState", "SubState", "Type", "MainPID")
    assert (state["ActiveState"], state["SubState"], state["Type"]) == (
        "active",
        "running",
        "notify",
    )
    assert int(state["MainPID"]) > 0


def test_stopping_the_service_leaves_the_socket_and_reactivates(stopped_service: Container) -> None:
    c = stopped_service
    rpc_with_curl(c, "system.version")
    first_pid = c.show("automd.service", "MainPID")["MainPID"]
    c.stop_units("automd.service")
    stopped = c.show("automd.service", "ActiveState", "Result", "ExecMainStatus")
    assert stopped == {"ActiveState": "inactive", "Result": "success", "ExecMainStatus": "0"}
    assert c.show("automd.socket", "ActiveState")["ActiveState"] == "active"
    assert rpc_with_curl(c, "system.version")["result"]
    second_pid = c.show("automd.service", "MainPID")["MainPID"]
    assert second_pid not in ("0", first_pid)


def test_status_line_is_shown_by_systemctl_status(stopped_service: Container) -> None:
    c = stopped_service
    rpc_with_curl(c, "system.version")
    status = c.run(["systemctl", "status", "--no-pager", "automd.service"]).stdout.decode()
    expected = f'Status: "Serving API {API_VERSION} on /run/automd.sock (socket-activated); systemd'
    assert expected in status, status


def test_health_is_ok_under_systemd_despite_the_sandbox(container: Container) -> None:
    reply = rpc_with_curl(container, "system.health")
    result = reply["result"]
    assert isinstance(result, dict)
    assert result["status"] == "ok", result
    assert result["checks"]["store"]["detail"].startswith("/var/lib/automd/automd.db")
    assert result["checks"]["dbus"]["detail"] == f"systemd {systemd_version(container)} reachable"
    assert result["checks"]["journal"]["detail"].startswith("runtime files readable")
    assert "of 100000 unfinished allowed" in result["checks"]["queue"]["detail"]
    # ...while running with the shipped hardening (health proves D-Bus still works).
    hardening = container.show(
        "automd.service", "ProtectSystem", "NoNewPrivileges", "CapabilityBoundingSet"
    )
    assert hardening == {
        "ProtectSystem": "strict",
        "NoNewPrivileges": "yes",
        "CapabilityBoundingSet": "",
    }


def test_member_of_group_automd_is_served_and_others_cannot_connect(container: Container) -> None:
    assert rpc_with_curl(container, "system.version", user=TEST_USER)["result"]
    refused = container.run(
        ["curl", "-sS", "--unix-socket", SOCKET_PATH, "-d", "{}", "http://automd/rpc"],
        user=OTHER_USER,
        check=False,
    )
    # curl: could not connect (EACCES; automctl's test below checks the errno's own message).
    assert refused.returncode == 7


@pytest.mark.parametrize("user", [None, TEST_USER])
def test_automctl_version_and_health(container: Container, user: str | None) -> None:
    version = container.run([AUTOMCTL, "version"], user=user).stdout.decode()
    assert re.search(rf"^automd\s+{re.escape(__version__)} \(API {API_VERSION}\)$", version, re.M)
    assert re.search(rf"^systemd\s+{re.escape(systemd_version(container))}$", version, re.M)

    as_json = json.loads(container.run([AUTOMCTL, "version", "--json"], user=user).stdout)
    assert as_json["version"] == __version__
    assert as_json["systemd_version"] == systemd_version(container)

    health = container.run([AUTOMCTL, "health"], user=user).stdout.decode()
    assert health.startswith("automd is ok, up ")
    assert re.search(r"^  dbus\s+ok\s+systemd \S+ reachable$", health, re.M)
    assert re.search(r"^  store\s+ok\s+/var/lib/automd/automd.db", health, re.M)
    assert "\x1b[" not in health  # piped: no colour

    health_json = json.loads(container.run([AUTOMCTL, "--json", "health"], user=user).stdout)
    assert health_json["status"] == "ok"


def test_automctl_permission_denied_exit_code(container: Container) -> None:
    result = container.run([AUTOMCTL, "version"], user=OTHER_USER, check=False)
    assert result.returncode == 77  # NOPERM
    assert result.stderr.decode().strip() == (
        "automctl: /run/automd.sock: permission denied (are you root or in group automd?)"
    )


def test_automctl_unreachable_exit_code(stopped_service: Container) -> None:
    c = stopped_service
    c.stop_units("automd.socket")
    result = c.run([AUTOMCTL, "health"], check=False)
    assert result.returncode == 69  # UNAVAILABLE
    assert b"no such socket (is automd.socket running?)" in result.stderr


def test_reload_rereads_the_config(stopped_service: Container) -> None:
    c = stopped_service
    rpc_with_curl(c, "system.version")
    c.write_file("/etc/automd/automd.toml", '[log]\nlevel = "debug"\n')
    c.run(["systemctl", "reload", "automd.service"])
    # ExecReload only sends SIGHUP; automd reports completion through sd_notify.
    wait_for(
        "automd's status saying it reloaded",
        lambda: c.show("automd.service", "StatusText")["StatusText"],
        lambda status: status == "Configuration reloaded; serving",
    )
    assert rpc_with_curl(c, "system.version")["result"]


def test_bad_config_fails_start_with_a_clear_journal_line(stopped_service: Container) -> None:
    c = stopped_service
    c.write_file("/etc/automd/automd.toml", "[server]\nbogus = 1\n")
    since = time.time() - 1
    started = c.run(["systemctl", "start", "automd.service"], check=False)
    assert started.returncode != 0
    # Retried after RestartSec= until the file is fixed (test_restart_policy.py); the first
    # failure is what systemctl reported, with EX_CONFIG.
    failed = c.journal("_PID=1", "UNIT=automd.service", "--grep=status=78/CONFIG", since=since)
    assert failed, "no 'Main process exited, code=exited, status=78/CONFIG'"
    # The failed start has ended: its process's stderr is all in the journal after a sync.
    line = "automd: bad configuration: /etc/automd/automd.toml: server.bogus: unknown setting"
    assert any(line in e["MESSAGE"] for e in c.journal("_SYSTEMD_UNIT=automd.service"))


def test_200_concurrent_connections_through_the_activated_socket(container: Container) -> None:
    result = container.run(
        [str(VENV / "python"), "-m", "tests.integration.load_client", SOCKET_PATH, "200",
         "system.health"],
        user=TEST_USER,
        env={"PYTHONPATH": str(CHECKOUT), "PYTHONDONTWRITEBYTECODE": "1"},
        timeout=120,
    )  # fmt: skip
    assert json.loads(result.stdout) == {"ok": 200}
    assert rpc_with_curl(container, "system.version")["result"]


def test_daemon_logs_go_to_the_journal_with_its_identifier(container: Container) -> None:
    rpc_with_curl(container, "system.version")  # answered once ready: the line was sent
    messages = [e["MESSAGE"] for e in container.journal("SYSLOG_IDENTIFIER=automd")]
    assert any("ready: Serving API" in message for message in messages)
