"""Where automd's memory goes, logged on SIGUSR2 when Python traces allocations.

Started with PYTHONTRACEMALLOC=N (N frames per allocation; tracing slows automd, so this is
for diagnosis, not for production), automd logs on each SIGUSR2 the allocation sites that
grew most since the first SIGUSR2 (the first one only takes that baseline and logs the top
sites). Without tracing it says how to turn it on. docs/systemd.md shows the use.
"""

from __future__ import annotations

import logging
import tracemalloc

log = logging.getLogger(__name__)

#: Sites logged per report.
TOP = 15


class MemoryReport:
    def __init__(self) -> None:
        self._baseline: tracemalloc.Snapshot | None = None

    def log(self) -> None:
        if not tracemalloc.is_tracing():
            log.info("memory report: allocations are not traced; start automd with "
                     "PYTHONTRACEMALLOC=25 in its environment to see them")  # fmt: skip
            return
        snapshot = tracemalloc.take_snapshot().filter_traces(
            [tracemalloc.Filter(False, tracemalloc.__file__)]
        )
        current, peak = tracemalloc.get_traced_memory()
        if self._baseline is None:
            self._baseline = snapshot
            stats = snapshot.statistics("traceback")[:TOP]
            lines = [f"{s.size / 1024:.0f} KiB in {s.count} blocks: {_where(s.traceback)}"
                     for s in stats]  # fmt: skip
            heading = "baseline taken; largest sites"
        else:
            diffs = snapshot.compare_to(self._baseline, "traceback")[:TOP]
            lines = [f"{d.size_diff / 1024:+.0f} KiB ({d.count_diff:+d} blocks) to "
                     f"{d.size / 1024:.0f} KiB: {_where(d.traceback)}" for d in diffs]  # fmt: skip
            heading = "growth since the baseline, largest first"
        log.info("memory report: %.1f MiB traced (peak %.1f MiB); %s:\n%s",
                 current / 2**20, peak / 2**20, heading, "\n".join(lines))  # fmt: skip


def _where(traceback: tracemalloc.Traceback) -> str:
    """Up to four innermost frames in automd (else the innermost frame), callee first."""
    frames = [f for f in traceback if "/automd/" in f.filename] or list(traceback)[-1:]
    return " <- ".join(
        f"{'/'.join(f.filename.rsplit('/', 2)[-2:])}:{f.lineno}" for f in reversed(frames[-4:])
    )
