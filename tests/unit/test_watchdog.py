"""The watchdog reads its limit like sd_watchdog_enabled(3) and pings through NOTIFY_SOCKET."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from automd.watchdog import ping, start_watchdog, watchdog_limit
from tests.unit.datagrams import fill

PID = 4242


@pytest.mark.parametrize(
    ("environ", "limit"),
    [
        ({"WATCHDOG_USEC": "20000000", "WATCHDOG_PID": str(PID)}, 20.0),
        ({"WATCHDOG_USEC": "20000000"}, 20.0),  # no WATCHDOG_PID: meant for us
        ({"WATCHDOG_USEC": "1500"}, 0.0015),
        ({"WATCHDOG_USEC": "20000000", "WATCHDOG_PID": ""}, 20.0),
    ],
)
def test_limit_when_enabled(environ: dict[str, str], limit: float) -> None:
    assert watchdog_limit(environ, pid=PID) == limit


@pytest.mark.parametrize(
    "environ",
    [
        {},
        {"WATCHDOG_USEC": ""},
        {"WATCHDOG_PID": str(PID)},  # a pid alone enables nothing
        {"WATCHDOG_USEC": "20000000", "WATCHDOG_PID": str(PID + 1)},  # another process's
        {"WATCHDOG_USEC": "20000000", "WATCHDOG_PID": "1"},
    ],
)
def test_disabled(environ: dict[str, str]) -> None:
    assert watchdog_limit(environ, pid=PID) is None


@pytest.mark.parametrize(
    "environ",
    [
        {"WATCHDOG_USEC": "0"},
        {"WATCHDOG_USEC": "-20000000"},
        {"WATCHDOG_USEC": "20s"},
        {"WATCHDOG_USEC": " 20000000"},
        {"WATCHDOG_USEC": "2e7"},
        {"WATCHDOG_USEC": "٢٠"},  # Arabic-Indic digits: isdigit(), yet not a number here
        {"WATCHDOG_USEC": "20000000", "WATCHDOG_PID": "self"},
        {"WATCHDOG_USEC": "20000000", "WATCHDOG_PID": "-4242"},
    ],
)
def test_malformed_values_disable_it_with_a_warning(
    environ: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="automd.watchdog"):
        assert watchdog_limit(environ, pid=PID) is None
    assert "ignoring" in caplog.text


def test_defaults_to_this_process_and_its_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "3000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert watchdog_limit() == 3.0
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))
    assert watchdog_limit() is None


@pytest.fixture
def notify_socket(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[socket.socket]:
    """A datagram socket standing in for systemd's NOTIFY_SOCKET."""
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.setblocking(False)
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))
        yield sock


def received(sock: socket.socket) -> list[bytes]:
    messages = []
    while True:
        try:
            messages.append(sock.recv(4096))
        except BlockingIOError:
            return messages


async def pings(sock: socket.socket, count: int) -> list[bytes]:
    """Wait (1 s at most) until `count` messages arrived; return them."""
    messages: list[bytes] = []
    async with asyncio.timeout(1):
        while len(messages) < count:
            messages += received(sock)
            await asyncio.sleep(0.005)
    return messages


async def test_pings_every_half_limit(notify_socket: socket.socket) -> None:
    task = asyncio.create_task(ping(0.2))
    started = time.monotonic()
    assert await pings(notify_socket, 3) == [b"WATCHDOG=1"] * 3
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # At once, then after 0.1 s and 0.2 s: never sooner (the loop only gets late).
    assert time.monotonic() - started >= 0.2


async def test_no_ping_while_unhealthy(
    notify_socket: socket.socket, caplog: pytest.LogCaptureFixture
) -> None:
    healthy = True
    task = asyncio.create_task(ping(0.1, lambda: healthy))
    assert await pings(notify_socket, 1) == [b"WATCHDOG=1"]
    healthy = False
    await asyncio.sleep(0.2)  # four periods
    assert received(notify_socket) == []
    assert "unhealthy: withholding watchdog pings, systemd restarts automd" in caplog.text
    healthy = True
    assert await pings(notify_socket, 1) == [b"WATCHDOG=1"]
    assert "healthy again: watchdog pings resumed" in caplog.text
    task.cancel()


async def test_a_blocked_loop_is_logged(
    notify_socket: socket.socket, caplog: pytest.LogCaptureFixture
) -> None:
    task = asyncio.create_task(ping(0.2))
    await asyncio.sleep(0)  # the first ping
    time.sleep(0.2)  # noqa: ASYNC251 - the point: block the loop past the next ping
    await pings(notify_socket, 2)
    task.cancel()
    assert "the event loop was blocked for about 0." in caplog.text
    assert "(the watchdog limit is 0.2 s)" in caplog.text


async def test_start_without_a_watchdog_sends_nothing(
    notify_socket: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    task = start_watchdog()
    await asyncio.wait_for(task, 1)  # ends at once
    assert received(notify_socket) == []


async def test_start_pings_when_systemd_enabled_it(
    notify_socket: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "200000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    task = start_watchdog()
    assert await pings(notify_socket, 2) == [b"WATCHDOG=1"] * 2
    assert not task.done()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_crashed_ping_loop_is_logged(
    notify_socket: socket.socket,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "200000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)

    def broken() -> bool:
        raise RuntimeError("boom")

    task = start_watchdog(broken)
    with pytest.raises(RuntimeError):
        await task
    await asyncio.sleep(0)  # done callbacks run on the next loop iteration
    assert "watchdog pings stopped" in caplog.text


async def test_a_ping_that_cannot_be_sent_is_logged_once(
    notify_socket: socket.socket, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    sent: list[bool] = []
    fifth = asyncio.Event()

    def fake_notify(**fields: str) -> bool:
        sent.append(len(sent) not in (1, 2))  # the second and third pings fail
        if len(sent) == 5:
            fifth.set()
        return sent[-1]

    monkeypatch.setattr("automd.watchdog.notify", fake_notify)
    task = asyncio.create_task(ping(0.02))
    async with asyncio.timeout(5):
        await fifth.wait()
    task.cancel()
    # Two refused in a row (the second is the first one's retry): one line, then one more
    # once they get through.
    refused = [r.message for r in caplog.records if "could not be sent" in r.message]
    assert refused == ["a watchdog ping could not be sent to systemd; trying again every 0.0005 s"]
    assert "watchdog pings reach systemd again" in caplog.text


async def test_pings_refused_for_most_of_the_limit_are_an_error_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    tries_since_error = -1  # -1 until the error is logged
    twenty_after = asyncio.Event()

    def refused(**fields: str) -> bool:
        nonlocal tries_since_error
        if tries_since_error < 0 and "has reached" in caplog.text:
            tries_since_error = 0
        if tries_since_error >= 0:
            tries_since_error += 1
            if tries_since_error == 20:  # twenty more tries: still one error
                twenty_after.set()
        return False

    monkeypatch.setattr("automd.watchdog.notify", refused)
    task = asyncio.create_task(ping(0.2))  # retried every 0.005 s
    async with asyncio.timeout(5):
        await twenty_after.wait()
    task.cancel()
    errors = [r.message for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, errors
    assert errors[0].startswith("no watchdog ping has reached systemd for 0.")
    assert errors[0].endswith("systemd restarts automd once 0.2 s pass without one")


async def until(done: Callable[[], bool]) -> None:
    """Wait (5 s at most) until done()."""
    async with asyncio.timeout(5):
        while True:
            if done():
                return
            await asyncio.sleep(0.01)


async def test_a_ping_refused_by_a_full_queue_is_tried_again_soon(
    notify_socket: socket.socket, caplog: pytest.LogCaptureFixture
) -> None:
    """A receiver whose queue is full (a busy PID 1 holds net.unix.max_dgram_qlen datagrams
    unread: 10 in the test container) refuses the ping. It must come again well before the
    next period: two lost pings in a row and systemd kills a healthy automd."""
    assert fill(notify_socket) > 0
    task = asyncio.create_task(ping(20.0))  # the next period's ping would come in 10 s
    await until(lambda: "a watchdog ping could not be sent to systemd;" in caplog.text)
    assert set(received(notify_socket)) == {b"FDSTORE=1"}  # PID 1 catches up
    await until(lambda: b"WATCHDOG=1" in received(notify_socket))
    task.cancel()
    assert "watchdog pings reach systemd again" in caplog.text
