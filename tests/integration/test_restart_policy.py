"""automd.socket never goes away (issue 15 §4): stops, crash loops and a bad configuration.

With systemd's default start limit (5 starts in 10 s), five `systemctl stop`s each followed by
a call, or a crash loop, failed automd.service with start-limit-hit and took automd.socket and
/run/automd.sock down with it until `systemctl reset-failed`. The shipped units have no start
limit and pace failed starts with RestartSec= (docs/systemd.md, "Restarts and the start
limit"). These tests never reset-failed between the steps they count, and every step waits on
a state or on a call's answer, never for a time.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator

import pytest

from tests.integration.conftest import SOCKET_PATH, WAIT_SECONDS, wait_for
from tests.integration.container import Container
from tests.integration.test_socket_activation import rpc_with_curl

#: More starts than systemd's default StartLimitBurst= (5) allows within its interval.
CYCLES = 7
CONFIG = "/etc/automd/automd.toml"


@pytest.fixture
def counted(container: Container) -> Iterator[Container]:
    """automd.socket listening and both units' counts fresh; automd running again after."""
    container.run(["systemctl", "reset-failed", "automd.service", "automd.socket"], check=False)
    container.start_units("automd.socket")
    yield container
    container.run(["rm", "-f", CONFIG])
    assert rpc_with_curl(container, "system.version")["result"]  # back by itself


def service(c: Container) -> dict[str, str]:
    return c.show("automd.service", "ActiveState", "SubState", "Result", "MainPID", "NRestarts")


def assert_socket_listening(c: Container) -> None:
    state = c.show("automd.socket", "ActiveState", "SubState", "Result")
    assert state == {"ActiveState": "active", "SubState": state["SubState"], "Result": "success"}
    assert state["SubState"] in ("listening", "running"), state
    c.run(["test", "-S", SOCKET_PATH])


def test_the_shipped_policy_is_loaded(container: Container) -> None:
    unit = container.show(
        "automd.service", "StartLimitIntervalUSec", "Restart", "RestartUSec",
        "RestartPreventExitStatus",
    )  # fmt: skip
    assert unit == {"StartLimitIntervalUSec": "0", "Restart": "on-failure",
                    "RestartUSec": "2s", "RestartPreventExitStatus": ""}  # fmt: skip
    socket = container.show("automd.socket", "TriggerLimitIntervalUSec", "TriggerLimitBurst")
    assert socket == {"TriggerLimitIntervalUSec": "2s", "TriggerLimitBurst": "20"}


def test_stops_each_followed_by_a_call_never_take_the_socket_down(counted: Container) -> None:
    c = counted
    pids = set()
    for _ in range(CYCLES):
        # Plain systemctl, not Container.stop_units: its reset-failed would hide the limit.
        c.run(["systemctl", "stop", "automd.service"])
        assert rpc_with_curl(c, "system.version")["result"]  # activates automd again
        pids.add(service(c)["MainPID"])
    assert len(pids) == CYCLES  # each call was served by a new automd
    state = service(c)
    assert (state["ActiveState"], state["Result"]) == ("active", "success"), state
    assert_socket_listening(c)


def test_a_crash_loop_is_paced_and_ends_by_itself(counted: Container) -> None:
    c = counted
    assert rpc_with_curl(c, "system.version")["result"]
    first = int(service(c)["NRestarts"])
    since = time.time() - 1
    for n in range(1, CYCLES + 1):
        pid = service(c)["MainPID"]
        c.run(["kill", "-SEGV", pid])
        # Waits in the socket's backlog until systemd restarts automd after RestartSec=.
        assert rpc_with_curl(c, "system.version")["result"]
        state = service(c)
        assert state["MainPID"] not in ("0", pid), state
        assert int(state["NRestarts"]) == first + n, state  # a restart, not a reactivation
        assert_socket_listening(c)
    crashes = c.journal("_PID=1", "UNIT=automd.service", "--grep=status=11/SEGV", since=since)
    assert len(crashes) == CYCLES


def test_a_bad_configuration_is_retried_until_fixed_while_callers_wait(
    counted: Container,
) -> None:
    c = counted
    c.run(["systemctl", "stop", "automd.service"])
    c.write_file(CONFIG, "[server]\nbogus = 1\n")
    since = time.time() - 1
    # A caller arrives while automd cannot start: it waits in the backlog, not refused.
    caller = c.popen(
        ["curl", "-sS", "--max-time", f"{WAIT_SECONDS:g}", "--unix-socket", SOCKET_PATH,
         "-H", "Content-Type: application/json",
         "-d", '{"jsonrpc":"2.0","method":"system.version","id":1}', "http://automd/rpc"]
    )  # fmt: skip
    try:
        # More failed starts than the default start limit allowed, the socket up throughout.
        def retried() -> int:
            assert_socket_listening(c)
            return int(service(c)["NRestarts"])

        wait_for("automd retried the bad configuration", retried, lambda n: n >= CYCLES)
        assert caller.poll() is None, "the caller was turned away while automd restarted"
        failures = c.journal("_PID=1", "UNIT=automd.service", "--grep=status=78/CONFIG",
                             since=since)  # fmt: skip
        assert len(failures) >= CYCLES

        c.run(["rm", "-f", CONFIG])  # the cause is gone; no reset-failed, no start
        out, err = caller.communicate(timeout=WAIT_SECONDS + 10)
        assert caller.returncode == 0, err
        assert b'"result"' in out, out
    finally:
        if caller.poll() is None:
            caller.kill()
            caller.wait()
    state = wait_for("automd running", lambda: service(c), lambda s: s["SubState"] == "running")
    assert state["ActiveState"] == "active"
    assert_socket_listening(c)


def test_the_rapid_cycles_would_have_hit_the_old_limit(counted: Container) -> None:
    """The stop/call test proves something: under a start limit like systemd's default (5
    starts, here within a minute rather than 10 s so that a slow machine hits it too) the same
    cycles fail automd and take its socket down. A runtime drop-in, for this test only."""
    c = counted
    dropin = "/run/systemd/system/automd.service.d/50-default-start-limit.conf"
    c.write_file(dropin, "[Unit]\nStartLimitIntervalSec=1min\nStartLimitBurst=5\n")
    c.run(["systemctl", "daemon-reload"])
    try:
        c.run(["systemctl", "reset-failed", "automd.service", "automd.socket"], check=False)
        refused = 0
        for _ in range(CYCLES):
            c.run(["systemctl", "stop", "automd.service"])
            try:
                rpc_with_curl(c, "system.version")
            except subprocess.CalledProcessError:
                refused += 1  # curl: could not connect, the socket is gone
        assert refused > 0
        assert c.show("automd.socket", "Result")["Result"] == "service-start-limit-hit"
    finally:
        c.run(["rm", "-f", dropin])
        c.run(["systemctl", "daemon-reload"])
        c.run(["systemctl", "reset-failed", "automd.service", "automd.socket"], check=False)
        c.start_units("automd.socket")
