"""Ctrl-C while automctl waits is never lost (automd/ctl/interrupt.py).

CI once saw `automctl run hello --wait` poll on for minutes after its SIGINT. Python drops a
KeyboardInterrupt raised while a finalizer runs, and automctl freed each answer's http.client
response with one that ran Python code (HTTPResponse.close).
"""

from __future__ import annotations

import http.client
import os
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from automd.ctl import client
from automd.ctl.exits import Exit
from automd.ctl.main import main
from tests.terminal_signals import sigint_as_in_a_terminal
from tests.unit.fake_automd import Method, fake_automd, job_view

JOB = "0" * 26
POLLS_UNTIL_DONE = 5


@pytest.fixture(autouse=True)
def ctrl_c_raises() -> Iterator[None]:
    """Ctrl-C raising KeyboardInterrupt, as in a terminal (tests/terminal_signals.py)."""
    with sigint_as_in_a_terminal():
        yield


@pytest.fixture
def socket_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    path = Path(f"/tmp/automctl-int-{os.getpid()}-{id(tmp_path)}.sock")  # AF_UNIX: short
    monkeypatch.setenv("AUTOMD_SOCKET", str(path))
    yield path
    path.unlink(missing_ok=True)


def job_running_for_a_few_polls() -> dict[str, Method]:
    """A job that succeeds at the fifth poll: a lost Ctrl-C shows as automctl waiting it out."""
    polls = 0

    def get(params: dict[str, Any]) -> Any:
        nonlocal polls
        polls += 1
        if polls < POLLS_UNTIL_DONE:
            job = job_view(state="running", unit="automd-hello-x.service")
        else:
            job = job_view(state="succeeded", result="success", exit_code=0,
                           finished_at="2026-11-22T12:00:03+00:00")  # fmt: skip
        return {"job": job, "attempts": [], "events": []}

    return {"job.get": get}


def interrupt_me() -> None:
    os.kill(os.getpid(), signal.SIGINT)
    # The handler runs at the next bytecode, in this frame.
    sum(range(10))


class Finalized:
    """Ctrl-C arriving while a finalizer runs (how Python loses one)."""

    def __del__(self) -> None:
        interrupt_me()


@pytest.fixture
def unraisable(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """What Python printed as "Exception ignored" instead of raising it."""
    seen: list[Any] = []
    monkeypatch.setattr(sys, "unraisablehook", seen.append)
    return seen


def after_first_poll(monkeypatch: pytest.MonkeyPatch, action: Callable[[], None]) -> None:
    """Run `action` once, as the first job.get's answer has been read."""
    done = False
    call = client.RpcClient.call

    def call_then_act(self: Any, method: str, params: dict[str, Any] | None = None) -> Any:
        nonlocal done
        result = call(self, method, params)
        if method == "job.get" and not done:
            done = True
            action()
        return result

    monkeypatch.setattr(client.RpcClient, "call", call_then_act)


def test_a_ctrl_c_a_finalizer_swallowed_still_stops_the_wait(
    socket_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    unraisable: list[Any],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Checked: on the code before the fix automctl waited the job out and exited 0."""

    def free_a_finalized_object() -> None:
        Finalized()  # freed at once: its __del__ runs here

    after_first_poll(monkeypatch, free_a_finalized_object)
    with fake_automd(socket_path, job_running_for_a_few_polls()) as calls:
        assert main(["wait", JOB]) == Exit.INTERRUPTED
    assert [type(u.exc_value) for u in unraisable] == [KeyboardInterrupt]  # it was swallowed
    assert len(calls) < POLLS_UNTIL_DONE
    assert f"job {JOB} is still running" in capsys.readouterr().err
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored


def test_an_answer_is_closed_by_automctl_not_by_a_finalizer(
    socket_path: Path, monkeypatch: pytest.MonkeyPatch, unraisable: list[Any]
) -> None:
    """Ctrl-C as a response closes raises at once, where automctl can act on it. Checked:
    before the fix the response closed as it was freed and the interrupt was swallowed."""
    close = http.client.HTTPResponse.close
    armed = False

    def close_interrupted(self: http.client.HTTPResponse) -> None:
        nonlocal armed
        if armed:
            armed = False
            interrupt_me()
        close(self)

    def arm() -> None:
        nonlocal armed
        armed = True

    monkeypatch.setattr(http.client.HTTPResponse, "close", close_interrupted)
    after_first_poll(monkeypatch, arm)
    with fake_automd(socket_path, job_running_for_a_few_polls()):
        assert main(["wait", JOB]) == Exit.INTERRUPTED
    assert unraisable == []


def test_an_ignored_sigint_stays_ignored(socket_path: Path) -> None:
    """A background job's SIGINT is ignored (SIG_IGN); automctl must not take it over."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with fake_automd(socket_path, job_running_for_a_few_polls()):
            assert main(["wait", JOB]) == Exit.OK
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)
