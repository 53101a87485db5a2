"""The accept loop: hands connections over, refuses on its spare descriptor, backs off."""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from automd.http import accept
from automd.http.accept import Acceptor
from tests.unit.descriptors import no_free_descriptors

BOUND = 5.0  # seconds: a bound on waiting for a state, never a measure


@pytest.fixture
def listening(tmp_path: Path) -> Iterator[tuple[socket.socket, Path]]:
    path = tmp_path / "api.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    yield sock, path
    sock.close()


def client(path: Path) -> socket.socket:
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.settimeout(BOUND)
    conn.connect(str(path))
    return conn


async def until(condition: Callable[[], bool]) -> None:
    """Until `condition` holds: it has no event of its own to wait on."""
    async with asyncio.timeout(BOUND):
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.005)


def refuse(conn: socket.socket) -> None:
    conn.send(b"busy")


async def test_each_connection_is_handed_over(listening: tuple[socket.socket, Path]) -> None:
    sock, path = listening
    accepted: list[socket.socket] = []
    acceptor = Acceptor(sock, accepted.append, refuse)
    acceptor.start()
    clients = [client(path) for _ in range(3)]
    await until(lambda: len(accepted) == 3)
    assert all(not conn.getblocking() for conn in accepted)
    acceptor.close()
    assert sock.fileno() == -1  # our copy is closed; systemd keeps its own
    for conn in accepted + clients:
        conn.close()


async def test_with_no_descriptor_free_a_waiting_client_is_refused_on_the_spare(
    listening: tuple[socket.socket, Path],
) -> None:
    sock, path = listening
    accepted: list[socket.socket] = []
    unserved: list[int] = []

    def refuse_and_count(conn: socket.socket) -> None:
        refuse(conn)
        unserved.append(conn.fileno())

    acceptor = Acceptor(sock, accepted.append, refuse_and_count)
    acceptor.start()
    waiting = [socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) for _ in range(3)]
    with no_free_descriptors():
        for conn in waiting:  # connect() needs no new descriptor on either side
            conn.connect(str(path))
        await until(lambda: len(unserved) == 3)
        # The spare is open again after each refusal, ready for the next one.
        assert acceptor._spare is not None
    assert accepted == []
    for conn in waiting:
        conn.settimeout(BOUND)
        assert conn.recv(16) == b"busy"
        assert conn.recv(16) == b""  # and closed
        conn.close()
    acceptor.close()


class _FailingSocket:
    """A listening socket whose accept() fails with `error` until `error` is None."""

    def __init__(self, sock: socket.socket, error: OSError | None) -> None:
        self.sock = sock
        self.error = error
        self.calls: list[float] = []

    def fileno(self) -> int:
        return self.sock.fileno()

    def setblocking(self, flag: bool) -> None:
        self.sock.setblocking(flag)

    def listen(self, backlog: int) -> None:
        self.sock.listen(backlog)

    def close(self) -> None:
        self.sock.close()

    def accept(self) -> tuple[socket.socket, object]:
        self.calls.append(asyncio.get_running_loop().time())
        if self.error is not None:
            raise self.error
        return self.sock.accept()


@pytest.mark.parametrize(
    "error",
    [OSError(errno.EMFILE, "Too many open files"), OSError(errno.ENOBUFS, "No buffer space")],
)
async def test_a_failing_accept_backs_off_and_is_logged_once_a_second(
    listening: tuple[socket.socket, Path],
    error: OSError,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Regression: asyncio's accept loop went on calling accept() after EMFILE, 4096 times per
    # wake-up, logging a traceback each time (30,000 journal entries in 20 s).
    monkeypatch.setattr(accept, "_open_spare", lambda: None)  # nothing to refuse with
    sock, path = listening
    failing = _FailingSocket(sock, error)
    accepted: list[socket.socket] = []
    acceptor = Acceptor(failing, accepted.append, refuse)  # type: ignore[arg-type]
    acceptor.start()
    waiting = client(path)  # the socket stays readable until it is accepted
    await until(lambda: len(failing.calls) >= 4)
    gaps = [b - a for a, b in zip(failing.calls, failing.calls[1:], strict=False)]
    # One accept() per pause, each pause twice the last: 0.05 s, 0.1 s, 0.2 s...
    for gap, pause in zip(gaps, (0.05, 0.1, 0.2), strict=False):
        assert gap >= pause * 0.9, gaps
    lines = [r for r in caplog.records if r.message.startswith("accept() failed")]
    assert len(lines) == 1, [r.message for r in lines]
    assert lines[0].levelno == logging.ERROR
    assert "not accepting for 0.05 s" in lines[0].message

    failing.error = None  # descriptors are free again: the waiting client is accepted
    await until(lambda: len(accepted) == 1)
    assert acceptor._pause == accept.MIN_PAUSE
    acceptor.close()
    waiting.close()
    accepted[0].close()


async def test_closing_while_backing_off_stops_for_good(
    listening: tuple[socket.socket, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(accept, "_open_spare", lambda: None)
    sock, path = listening
    failing = _FailingSocket(sock, OSError(errno.EMFILE, "Too many open files"))
    acceptor = Acceptor(failing, lambda conn: None, refuse)  # type: ignore[arg-type]
    acceptor.start()
    waiting = client(path)
    await until(lambda: len(failing.calls) >= 1)
    acceptor.close()  # cancels the pending resume
    assert acceptor._resume is not None
    assert acceptor._resume.cancelled()
    waiting.close()
