"""Connection caps against the real unit: one user cannot take every slot, refusals are
immediate and bounded in the journal, the watchdog is never starved, and an open-file limit
too small for the caps lowers them and says so (issue 13, point 3)."""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.daemon.test_metrics import samples
from tests.integration.conftest import ADMIN_USER, CHECKOUT, SOCKET_PATH, TEST_USER
from tests.integration.container import CommandError, Container
from tests.integration.test_access import audit, call, uid_of

GLOBAL_CAP = 64
PER_USER_CAP = 16
CONFIG = f"""
[server]
max_connections = {GLOBAL_CAP}
max_connections_per_user = {PER_USER_CAP}
idle_timeout_seconds = 600.0
"""
CONFIG_PATH = "/etc/automd/automd.toml"
DROPIN = "/etc/systemd/system/automd.service.d/50-test-nofile.conf"
HOLD_CLIENT = str(CHECKOUT / "tests" / "integration" / "hold_client.py")
RELEASE = "/run/automd-test-release"
MORE_USERS = ("dave", "erin")  # members of group automd, for filling the global cap
BOUND = 120.0  # seconds: a bound on waiting for a state, never a measure


def show(c: Container, *props: str) -> dict[str, str]:
    out = c.run(["systemctl", "show", "automd.service", *(f"--property={p}" for p in props)])
    return dict(line.split("=", 1) for line in out.stdout.decode().splitlines() if "=" in line)


def restart(c: Container) -> None:
    c.run(["systemctl", "daemon-reload"])
    c.run(["systemctl", "restart", "automd.service"])  # an explicit start: NRestarts is 0


@dataclass
class Holder:
    """A client process holding connections until released."""

    user: str | None
    proc: subprocess.Popen[bytes]
    said: dict[str, int]


_STARTED: list[subprocess.Popen[bytes]] = []


@pytest.fixture
def small_caps(container: Container) -> Iterator[Container]:
    """automd with small caps (and the shipped LimitNOFILE=, which fits them)."""
    for user in MORE_USERS:
        if container.run(["id", user], check=False).returncode != 0:
            container.run(["useradd", "-m", "-G", "automd", user])
    container.write_file(CONFIG_PATH, CONFIG)
    container.run(["rm", "-f", RELEASE])
    container.run(["mkfifo", "-m", "0644", RELEASE])
    restart(container)
    yield container
    if any(proc.poll() is None for proc in _STARTED):  # a test failed while they held on
        container.run(["timeout", "10", "sh", "-c", f"echo go > {RELEASE}"], check=False)
    for proc in _STARTED:
        try:
            proc.communicate(timeout=BOUND)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
    _STARTED.clear()
    container.run(["rm", "-f", CONFIG_PATH, DROPIN, RELEASE])
    restart(container)


def hold(c: Container, user: str | None, count: int) -> Holder:
    """Open `count` connections as `user` and call once on each; returns once all answered."""
    proc = c.popen(["python3", HOLD_CLIENT, SOCKET_PATH, str(count), RELEASE], user=user)
    _STARTED.append(proc)
    assert proc.stdout is not None
    line = proc.stdout.readline()  # the client's bound on each reply keeps this finite
    assert line, proc.stderr.read() if proc.stderr else b""
    return Holder(user, proc, json.loads(line))


def release(c: Container, *holders: Holder) -> None:
    c.run(["sh", "-c", f"echo go > {RELEASE}"])  # every holder waits for this writer
    for holder in holders:
        _, err = holder.proc.communicate(timeout=BOUND)
        assert holder.proc.returncode == 0, err


def version_as(c: Container, user: str | None) -> dict[str, Any]:
    reply = call(c, user, "system.version")
    assert "result" in reply, reply
    return reply


def served_again(c: Container, user: str | None) -> None:
    """Until `user` is served: automd notices closed connections shortly, not at once, and
    answers 503 until then."""
    deadline = time.monotonic() + BOUND
    while True:
        try:
            reply = call(c, user, "system.version")
        except CommandError:  # reset before the request could be sent
            reply = {}
        if "result" in reply:
            return
        assert reply.get("error", {}).get("code") in (None, -32000), reply
        assert time.monotonic() < deadline, reply
        time.sleep(0.05)


def refused_total(c: Container) -> dict[str, float]:
    page = c.run(["curl", "-sS", "--fail", "--unix-socket", SOCKET_PATH, "http://automd/metrics"])
    return {
        dict(labels)["reason"]: value
        for (name, labels), value in samples(page.stdout.decode()).items()
        if name == "automd_http_connections_refused_total"
    }


def automd_lines(c: Container, since: float) -> list[str]:
    out = c.run(["journalctl", "--no-pager", "-o", "cat", f"--since=@{since:.6f}",
                 "_SYSTEMD_UNIT=automd.service"])  # fmt: skip
    return out.stdout.decode().splitlines()


def wait_for_pings(c: Container, count: int) -> None:
    """Until systemd has received `count` more WATCHDOG=1 (each every WatchdogSec/2)."""
    seen = show(c, "WatchdogTimestampMonotonic")["WatchdogTimestampMonotonic"]
    deadline = time.monotonic() + BOUND
    while count:
        assert time.monotonic() < deadline, "no watchdog ping"
        now = show(c, "WatchdogTimestampMonotonic")["WatchdogTimestampMonotonic"]
        if now != seen:
            seen, count = now, count - 1
        time.sleep(0.2)


def test_one_user_beyond_the_caps_cannot_starve_others_or_the_watchdog(
    small_caps: Container,
) -> None:
    c = small_caps
    before = show(c, "MainPID", "NRestarts")
    assert before["NRestarts"] == "0"
    refused_before = refused_total(c)
    since = time.time()

    # One user holds the global cap + 100 connections: served up to their own cap, and
    # told 503 with -32000 at once for every other one (no reply waits on a timeout).
    alice = hold(c, TEST_USER, GLOBAL_CAP + 100)
    assert alice.said == {"ok": PER_USER_CAP, "busy": GLOBAL_CAP + 100 - PER_USER_CAP}

    # Everyone else is still served meanwhile: another member, and root.
    version_as(c, ADMIN_USER)
    version_as(c, None)
    refused = refused_total(c)
    per_user = refused["max_connections_per_user"] - refused_before.get(
        "max_connections_per_user", 0
    )
    assert per_user == GLOBAL_CAP + 100 - PER_USER_CAP
    assert refused["max_connections"] == refused_before.get("max_connections", 0)

    # The watchdog keeps being pinged while they are held: no kill, no restart.
    wait_for_pings(c, 2)
    assert show(c, "MainPID", "NRestarts") == before

    # The journal stays bounded: one "refusing" line a second at most, one audit entry for
    # the burst (its interval is 60 s); the report had 30,000 entries of six lines.
    entries = [e for e in audit(c, method="connect") if e["uid"] == uid_of(c, TEST_USER)]
    assert 1 <= len(entries) <= 2, entries
    assert entries[-1]["outcome"] == "denied"
    assert entries[-1]["detail"].startswith("1 connection refused: the user holds 16")
    elapsed = time.time() - since
    lines = automd_lines(c, since)
    refusing = [line for line in lines if line.startswith("refusing connections")]
    audited = [line for line in lines if " connect denied" in line]
    print(f"{len(lines)} journal lines in {elapsed:.1f} s: {len(refusing)} refusing, "
          f"{len(audited)} audit")  # fmt: skip
    assert 1 <= len(refusing) <= elapsed + 1
    assert 1 <= len(audited) <= 2
    assert len(lines) < 50, lines
    release(c, alice)
    served_again(c, TEST_USER)  # once the held ones are gone


def test_users_filling_the_global_cap_refuse_newcomers_at_once(small_caps: Container) -> None:
    c = small_caps
    before = show(c, "MainPID", "NRestarts")  # just restarted: every count starts at 0
    # Four parties at their per-user cap fill the global one; alice asks for 4 more.
    holders = [hold(c, TEST_USER, PER_USER_CAP + 4)]
    holders += [hold(c, user, PER_USER_CAP) for user in (ADMIN_USER, MORE_USERS[0], None)]
    assert holders[0].said == {"ok": PER_USER_CAP, "busy": 4}
    assert [h.said for h in holders[1:]] == [{"ok": PER_USER_CAP}] * 3
    # A newcomer with no connection of their own is refused at the global cap, at once.
    newcomer = hold(c, MORE_USERS[1], 3)
    assert newcomer.said == {"busy": 3}
    release(c, *holders, newcomer)
    served_again(c, MORE_USERS[1])  # once the others left
    refused = refused_total(c)  # (root was at its cap too: scraped only now)
    assert (refused["max_connections"], refused["max_connections_per_user"]) == (3, 4)
    assert show(c, "MainPID", "NRestarts") == before


def test_an_open_file_limit_too_small_for_the_caps_lowers_them(small_caps: Container) -> None:
    c = small_caps
    # soft = hard = 128: below what 64 connections and 64 followers need (about 220).
    c.write_file(DROPIN, "[Service]\nLimitNOFILE=128\n")
    restart(c)
    assert c.run(["grep", "Max open files", f"/proc/{show(c, 'MainPID')['MainPID']}/limits"]
                 ).stdout.split()[3:5] == [b"128", b"128"]  # fmt: skip
    health = call(c, ADMIN_USER, "system.health")["result"]
    check = health["checks"]["open_files"]
    print(check["detail"])
    assert (health["status"], check["ok"]) == ("degraded", False), health
    assert check["detail"].startswith("open-file limit 128 (hard 128) is below the ")
    found = re.search(r"serving at most (\d+) connections, (\d+) per user", check["detail"])
    assert found, check["detail"]
    connections, per_user = int(found[1]), int(found[2])
    assert 0 < per_user <= connections < GLOBAL_CAP
    journal = "\n".join(automd_lines(c, time.time() - 60))
    assert check["detail"] in journal

    # The lowered caps hold: one user gets their lowered share, then 503s; no EMFILE.
    alice = hold(c, TEST_USER, GLOBAL_CAP + 100)
    assert alice.said == {"ok": per_user, "busy": GLOBAL_CAP + 100 - per_user}
    version_as(c, ADMIN_USER)
    release(c, alice)
    assert "Too many open files" not in "\n".join(automd_lines(c, time.time() - 60))
