"""sd_notify messages: sent through one socket opened at start, so sending needs no descriptor."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import systemd.daemon

from automd.sd import notify, notify_state, open_notify_socket
from tests.unit.datagrams import fill
from tests.unit.descriptors import no_free_descriptors


@pytest.fixture
def notify_socket(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[socket.socket]:
    """A datagram socket standing in for systemd's NOTIFY_SOCKET."""
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.settimeout(5)  # a bound on a message that is already queued
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))
        yield sock


def test_a_ping_is_sent_with_every_descriptor_taken(notify_socket: socket.socket) -> None:
    # Regression: libsystemd's sd_notify() opens a socket per message, so with all
    # descriptors taken by connections each WATCHDOG=1 failed with EMFILE, and systemd killed
    # a daemon whose loop ran fine (issue 13; measured with strace in the test container).
    open_notify_socket()
    with no_free_descriptors():
        with pytest.raises(OSError, match="Too many open files"):
            systemd.daemon.notify("WATCHDOG=1")  # the old way, for contrast
        assert notify(WATCHDOG="1") is True
    assert notify_socket.recv(4096) == b"WATCHDOG=1"


def test_fields_are_joined_by_newlines(notify_socket: socket.socket) -> None:
    assert notify(READY="1", STATUS="Serving") is True
    assert notify_socket.recv(4096) == b"READY=1\nSTATUS=Serving"


def test_abstract_socket_names(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0automd-test-notify")
        sock.settimeout(5)
        monkeypatch.setenv("NOTIFY_SOCKET", "@automd-test-notify")
        assert notify(WATCHDOG="1") is True
        assert sock.recv(4096) == b"WATCHDOG=1"


def test_nothing_is_sent_outside_systemd(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert notify(READY="1") is False


def test_a_vanished_socket_is_reported_not_raised(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "gone.sock"))
    assert notify(WATCHDOG="1") is False


def test_a_receiver_that_stops_reading_costs_messages_not_the_loop(
    notify_socket: socket.socket,
) -> None:
    """The send never blocks: with the receiver's queue full, notify() says False at once.
    (A daemon test's stand-in for PID 1 once read only while waiting, and automd hung in
    sd_notify on its event loop.) Checked: with the socket blocking, as before, this test
    hangs until its timeout."""
    open_notify_socket()
    sent = [notify(STATUS=f"status {i}") for i in range(10_000)]
    assert sent[0] is True
    assert sent[-1] is False  # the queue filled; later messages were dropped, not waited on
    assert notify_socket.recv(4096) == b"STATUS=status 0"


async def test_a_refused_state_change_is_sent_once_the_queue_has_room(
    notify_socket: socket.socket,
) -> None:
    """READY=1 refused by a full queue (PID 1 busy) is tried again, not lost: a lost READY=1
    leaves automd "activating" until systemd's start timeout kills it."""
    queued = fill(notify_socket)
    sending = asyncio.create_task(notify_state(READY="1", STATUS="Serving"))
    await asyncio.sleep(0.2)  # four tries, each refused
    assert not sending.done()
    assert [notify_socket.recv(4096) for _ in range(queued)] == [b"FDSTORE=1"] * queued
    assert await asyncio.wait_for(sending, 5) is True
    assert notify_socket.recv(4096) == b"READY=1\nSTATUS=Serving"


async def test_a_state_change_refused_for_5_s_is_an_error(
    notify_socket: socket.socket, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr("automd.sd._STATE_RETRY_SECONDS", 0.2)
    fill(notify_socket)
    assert await asyncio.wait_for(notify_state(STOPPING="1"), 5) is False
    assert [r.levelno for r in caplog.records] == [logging.ERROR]
    assert "systemd's notification queue refused 'STOPPING=1' for 0.2 s" in caplog.text


async def test_a_state_change_outside_systemd_is_not_tried_again(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert await asyncio.wait_for(notify_state(READY="1"), 1) is False
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "gone.sock"))
    assert await asyncio.wait_for(notify_state(READY="1"), 1) is False
