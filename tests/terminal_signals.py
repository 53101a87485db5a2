"""Starting a process with SIGINT as a terminal gives it.

A test runner started in the background (a CI job, `cmd &` in a script) has SIGINT ignored,
and an ignored signal is inherited across fork and exec: a process the tests start and then
Ctrl-C would never see it. A handler is not inherited (exec resets it to the default), so the
runner holds Python's own while it starts one.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def sigint_as_in_a_terminal() -> Iterator[None]:
    """While the block runs (in the main thread), SIGINT raises KeyboardInterrupt here and
    a process started in it begins with SIGINT's default action."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
