"""Connections against the open-file limit: refused with the documented 503, never EMFILE.

Each daemon here runs under `prlimit`, with the watchdog enabled through WATCHDOG_USEC (its
WATCHDOG=1 pings arrive on the harness's NOTIFY_SOCKET like the other sd_notify messages).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from automd import __version__
from tests.daemon.harness import (
    Connection,
    DaemonFactory,
    DaemonProcess,
    descriptors_for,
    post_bytes,
    read_reply,
)
from tests.daemon.test_hostile import rpc

HOLD = 1100  # the report: ~1,100 idle connections, one more than the 1024 soft limit allows
WATCHDOG_USEC = "2000000"  # pings every second
REPLY_BOUND = 10.0  # a bound on waiting for a reply, never a measure of it


@pytest.fixture
def client_descriptors() -> Iterator[None]:
    """HOLD client sockets in this process."""
    with descriptors_for(HOLD):
        yield


def start_limited(daemon: DaemonProcess, nofile: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", WATCHDOG_USEC)
    daemon.start(["prlimit", f"--nofile={nofile}", "--", *daemon.command()])


async def exchange(sock: socket.socket, request_id: int) -> str:
    """One call on a held connection: 'ok', 'busy' (the 503), 'hung up' or 'no answer'.

    Plain sockets, not asyncio streams: a refused connection may be closed before the request
    is sent, and the stream would drop the 503 waiting in the socket when the send fails
    with EPIPE; the kernel hands it to a reader first.
    """
    loop = asyncio.get_running_loop()
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        await loop.sock_sendall(sock, post_bytes(rpc("system.version", id=request_id)))
    data = b""
    try:
        async with asyncio.timeout(REPLY_BOUND):
            while b"\r\n\r\n" not in data or len(data) < expected_length(data):
                chunk = await loop.sock_recv(sock, 65536)
                if not chunk:
                    break
                data += chunk
    except TimeoutError:
        return "no answer"
    except ConnectionResetError:
        pass
    if data.startswith(b"HTTP/1.1 503 "):
        assert b'"code":-32000' in data, data
        return "busy"
    if data.startswith(b"HTTP/1.1 200 ") and b'"result"' in data:
        return "ok"
    return "hung up" if not data else f"unexpected: {data[:80]!r}"


def expected_length(data: bytes) -> int:
    head, _, _ = data.partition(b"\r\n\r\n")
    found = re.search(rb"(?im)^content-length: *(\d+)", head)
    return len(head) + 4 + (int(found[1]) if found else 0)


def connect(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(str(path))  # returns at once: the kernel queues it until automd accepts
    sock.setblocking(False)
    return sock


async def hold(daemon: DaemonProcess, count: int) -> tuple[list[socket.socket], dict[str, int]]:
    """Open `count` connections, then make one call on each: what each got."""
    socks = [connect(daemon.socket_path) for _ in range(count)]
    said = await asyncio.gather(*(exchange(s, i) for i, s in enumerate(socks)))
    return socks, {what: said.count(what) for what in sorted(set(said))}


async def served_again(path: Path) -> None:
    """Until a newcomer is served: the daemon notices closed connections shortly, not at
    once, and answers 503 until then."""
    async with asyncio.timeout(REPLY_BOUND):
        while True:
            conn = await Connection.open(path)
            try:
                reply = await conn.post(rpc("system.version"))
            except (ConnectionResetError, BrokenPipeError, asyncio.IncompleteReadError):
                reply = None  # refused before the request was sent
            finally:
                await conn.close()
            if reply is not None and reply.status == 200:
                assert reply.json()["result"]["version"] == __version__
                return
            await asyncio.sleep(0.02)


def new_pings(daemon: DaemonProcess, count: int) -> None:
    """Wait for `count` WATCHDOG=1 pings sent from now on."""
    for _ in range(count):
        daemon.notifications.clear()
        daemon.wait_for_notification("WATCHDOG=1", timeout=15.0)


async def test_idle_connections_past_the_fd_limit_caused_emfile_and_a_watchdog_kill(
    daemon_factory: DaemonFactory, client_descriptors: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression (issue 13, point 3): under the default soft limit of 1024, with
    server.max_connections = 1024, the connection cap was never reached: accept() failed with
    EMFILE, asyncio logged a traceback per failed accept (4096 a round), clients beyond the
    limit waited unanswered, and every WATCHDOG=1 failed (sd_notify opens a socket per
    message), so systemd killed automd after 20 s.

    Checked: fails on the code before the fix (be2a910): ~100 clients get no answer, and no
    watchdog ping arrives while the connections are held.
    """
    daemon = daemon_factory()  # the defaults: max_connections = 1024
    start_limited(daemon, "1024:4096", monkeypatch)  # systemd's default is 1024:524288
    socks, said = await hold(daemon, HOLD)
    # Every client is answered: served, or refused with the 503 at once.
    assert said.get("no answer", 0) == 0, said
    assert said.get("ok", 0) >= 1, said
    assert said.get("busy", 0) >= HOLD - 1024, said
    # The watchdog is pinged while they are held...
    new_pings(daemon, 2)
    # ...the journal is not flooded...
    output = daemon.output()
    assert "Too many open files" not in output
    assert output.count("refusing connections") <= 5, output.count("refusing connections")
    # ...and once they leave, a newcomer is served.
    for sock in socks:
        sock.close()
    await served_again(daemon.socket_path)


async def test_a_hard_limit_below_the_caps_lowers_them_and_says_so(
    daemon_factory: DaemonFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    daemon = daemon_factory()
    start_limited(daemon, "256:256", monkeypatch)  # the soft limit cannot be raised
    # Kept open, so that it is counted for certain below (a closed one is counted until the
    # daemon has seen it close).
    asking = await Connection.open(daemon.socket_path)
    health = (await asking.call("system.health"))["result"]
    check = health["checks"]["open_files"]
    assert check["ok"] is False, check
    found = re.search(r"serving at most (\d+) connections, (\d+) per user", check["detail"])
    assert found, check["detail"]
    connections, per_user = int(found[1]), int(found[2])
    assert 0 < per_user <= connections < 256  # the configured cap is 1024
    assert "open-file limit 256 (hard 256) is below" in daemon.output()

    # One user (this test's) holds its lowered per-user cap; beyond it, 503 at once.
    socks, said = await hold(daemon, per_user + 50)
    assert said == {"busy": 51, "ok": per_user - 1}, said
    new_pings(daemon, 1)
    for sock in socks:
        sock.close()
    await asking.close()
    await served_again(daemon.socket_path)


async def test_a_refused_client_reads_the_503_without_sending_anything(
    daemon_factory: DaemonFactory,
) -> None:
    daemon = daemon_factory("[server]\nmax_connections = 4\nmax_connections_per_user = 2\n")
    daemon.start()
    held = [await Connection.open(daemon.socket_path) for _ in range(2)]
    refused = await Connection.open(daemon.socket_path)
    async with asyncio.timeout(REPLY_BOUND):
        reply = await read_reply(refused.reader)
        assert reply.status == 503
        assert reply.json()["error"]["code"] == -32000
        assert await refused.closed_by_peer()
        assert [(await c.call("system.version"))["id"] for c in held] == [1, 1]
