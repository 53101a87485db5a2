"""Where automd's memory goes, logged on SIGUSR2 when Python traces allocations.

Started with PYTHONTRACEMALLOC=N (N frames per allocation; tracing slows automd, so this is
for diagnosis, not for production), automd logs on each SIGUSR2 the allocation sites that
grew most since the first SIGUSR2 (the first one only takes that baseline and logs the top
sites). Without tracing it says how to turn it on. docs/systemd.md shows the use.

tracemalloc (with pickle, which it imports) is imported at the first SIGUSR2, not at every
start of a daemon that will almost never get one: 0.4 MiB and 1.6 ms measured
(bench/README.md, "Footprint").
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import tracemalloc

log = logging.getLogger(__name__)

#: Sites logged per report.
TOP = 15


class MemoryReport:
    def __init__(self) -> None:
        self._baseline: tracemalloc.Snapshot | None = None
        self._making: asyncio.Task[None] | None = None

    def request(self) -> asyncio.Task[None] | None:
        """Make a report in a thread, off the event loop: comparing thousands of traced
        allocations takes seconds, which on the loop would starve the watchdog (a soak saw
        systemd kill automd for it). One at a time."""
        import tracemalloc  # noqa: PLC0415 (the module docstring says why)

        if not tracemalloc.is_tracing():
            log.info("memory report: allocations are not traced; start automd with "
                     "PYTHONTRACEMALLOC=25 in its environment to see them")  # fmt: skip
            return None
        if self._making is not None and not self._making.done():
            log.info("memory report: one is being made already")
            return None
        self._making = asyncio.get_running_loop().create_task(asyncio.to_thread(self._make))
        return self._making

    def _make(self) -> None:
        import tracemalloc  # noqa: PLC0415 (imported by request() already)

        try:
            snapshot = tracemalloc.take_snapshot()
            current, peak = tracemalloc.get_traced_memory()
            if self._baseline is None:
                self._baseline = snapshot
                lines = [f"{s.size / 1024:.0f} KiB in {s.count} blocks: {_where(s.traceback)}"
                         for s in snapshot.statistics("traceback")[:TOP]]  # fmt: skip
                heading = "baseline taken; largest sites"
            else:
                grown = snapshot.compare_to(self._baseline, "traceback")[:TOP]
                lines = [f"{d.size_diff / 1024:+.0f} KiB ({d.count_diff:+d} blocks) to "
                         f"{d.size / 1024:.0f} KiB: {_where(d.traceback)}"
                         for d in grown]  # fmt: skip
                heading = "growth since the baseline, largest first"
        except Exception:  # a diagnostic must not take the daemon down
            log.exception("memory report failed")
            return
        log.info("memory report: %.1f MiB traced (peak %.1f MiB); %s:\n%s",
                 current / 2**20, peak / 2**20, heading, "\n".join(lines))  # fmt: skip


def _where(traceback: tracemalloc.Traceback) -> str:
    """Up to four innermost frames in automd (else the innermost frame), callee first."""
    frames = [f for f in traceback if "/automd/" in f.filename] or list(traceback)[-1:]
    return " <- ".join(
        f"{'/'.join(f.filename.rsplit('/', 2)[-2:])}:{f.lineno}" for f in reversed(frames[-4:])
    )
