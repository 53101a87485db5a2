"""Ctrl-C is never lost.

Python runs a signal's handler at the main thread's next bytecode. When that bytecode belongs
to a finalizer (an object's `__del__`, or an http.client response closing itself as it is
freed), the KeyboardInterrupt raised there is printed as "Exception ignored" and dropped, and
`automctl run --wait` would poll a running job forever. So the handler also records the
interrupt, and every request automctl sends first raises one still pending (client.py).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType


class _Recorded:
    """Whether a Ctrl-C came while recorded (a plain flag: a handler must not take a lock)."""

    pending = False


def _on_sigint(signum: int, frame: FrameType | None) -> None:
    _Recorded.pending = True
    raise KeyboardInterrupt


@contextmanager
def interrupts_recorded() -> Iterator[None]:
    """Record Ctrl-C while the block runs, then restore the handler there was. Only where
    Ctrl-C raises KeyboardInterrupt: an ignored SIGINT (a background job's) stays ignored."""
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    ):
        yield
        return
    _Recorded.pending = False
    signal.signal(signal.SIGINT, _on_sigint)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        _Recorded.pending = False


def raise_if_interrupted() -> None:
    """Raise the KeyboardInterrupt of a Ctrl-C a finalizer swallowed."""
    if _Recorded.pending:
        raise KeyboardInterrupt
