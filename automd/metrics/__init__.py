"""Prometheus metrics: what automd counts, in plain Python; metrics/page.py renders a scrape.

Job outcomes come from the store, so their counters survive restarts: each scrape folds the
job_events rows written since the last one into running totals (the first scrape after a
start reads them all, in the store's reader thread). Everything else is counted in memory
by the part that sees it, and read here at scrape time; those reset when automd restarts.
"""

from __future__ import annotations

import bisect
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from automd.api.jobs import FINISHED_STATES, JobState
from automd.api.methods import METHODS
from automd.store import jobs as jobs_rows
from automd.store.db import Store

if TYPE_CHECKING:
    from automd.metrics.page import Page

# Job run times span seconds to hours.
RUNTIME_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 4 * 3600.0)
# RPC latency: the hot reads answer in about a millisecond.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0)
#: Label for a method name that is not part of the API (callers must not mint label values).
OTHER_METHOD = "(other)"
# Rows folded in per store read, so a long history never holds one huge result in memory.
_CHUNK = 20_000
_COUNTED_STATES = tuple(sorted({*FINISHED_STATES, JobState.WAITING_RETRY}))


@dataclass
class Latency:
    """One method's latency histogram: a count per LATENCY_BUCKETS bound (and one above them,
    +Inf), their sum, and when the method was first answered (the series' _created)."""

    created: float
    counts: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS) + 1))
    total: float = 0.0


class RpcMetrics:
    """Requests and latency per method; the Dispatcher calls observe() for every request."""

    def __init__(self) -> None:
        #: (method label, error code or None when it answered) -> requests answered
        self.requests: dict[tuple[str, int | None], int] = {}
        #: When each of those series began (its _created sample).
        self.created: dict[tuple[str, int | None], float] = {}
        self.latency: dict[str, Latency] = {}

    def observe(self, method: str | None, code: int | None, seconds: float) -> None:
        """`method`: the name of the method called, None when the request named none."""
        # Only the API's names become label values: a caller cannot mint time series.
        label = method if method in METHODS else OTHER_METHOD
        key = (label, code)
        count = self.requests.get(key)
        if count is None:
            count = 0
            self.created[key] = time.time()
        self.requests[key] = count + 1
        latency = self.latency.get(label)
        if latency is None:
            latency = self.latency[label] = Latency(time.time())
        # Buckets are upper bounds, inclusive (le): the first bound >= seconds.
        latency.counts[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        latency.total += seconds


@dataclass
class _JobTotals:
    """Running totals of job outcomes folded in from job_events, up to `last_rowid`."""

    last_rowid: int = 0
    finished: Counter[tuple[str, str]] = field(default_factory=Counter)
    retries: Counter[str] = field(default_factory=Counter)
    # Per definition: one count per bucket (cumulative at exposition), and the sum.
    runtime_counts: dict[str, list[int]] = field(default_factory=dict)
    runtime_sum: Counter[str] = field(default_factory=Counter)

    def fold(self, rows: Iterable[Sequence[Any]]) -> None:
        for rowid, definition, state, at, started_at in rows:
            self.last_rowid = max(self.last_rowid, rowid)
            if state == JobState.WAITING_RETRY:
                self.retries[definition] += 1
                continue
            self.finished[definition, state] += 1
            if started_at is not None:
                runtime = max(0.0, at - started_at)
                counts = self.runtime_counts.setdefault(
                    definition, [0] * (len(RUNTIME_BUCKETS) + 1)
                )
                counts[_bucket(runtime)] += 1
                self.runtime_sum[definition] += runtime


def _bucket(value: float) -> int:
    for index, bound in enumerate(RUNTIME_BUCKETS):
        if value <= bound:
            return index
    return len(RUNTIME_BUCKETS)


ScheduleRow = tuple[str, str, float | None, str | None]


@dataclass(frozen=True)
class Gauges:
    """Live values read from the daemon's parts at scrape time."""

    running: Callable[[], int]
    connections: Callable[[], int]
    followers: Callable[[], int]
    #: Counters kept by their owners (reset on restart).
    replays: Callable[[], int]
    denials: Callable[[], Counter[str]]
    dbus_reconnects: Callable[[], int]
    #: Refused connections by reason (admission.Refusal's values).
    connections_refused: Callable[[], Mapping[str, int]]
    job_repairs: Callable[[], Counter[str]]
    illegal_transitions: Callable[[], Counter[str]]
    #: The state store: (database bytes, WAL bytes) now.
    store_sizes: Callable[[], tuple[int, int]]
    #: Why its disk refuses writes now (None: it takes them), and since the start, how often.
    store_unwritable: Callable[[], str | None]
    store_refusals: Callable[[], Mapping[str, int]]
    #: Job updates waiting for the disk to take them.
    store_held: Callable[[], int]
    #: Schedule firings since start, by (definition, schedule, outcome: created or skipped).
    schedule_firings: Callable[[], Mapping[tuple[str, str, str], int]] = lambda: {}
    #: Each loaded schedule now, read at scrape time: (definition, schedule, next elapse in
    #: seconds since the epoch or None, the state of its newest job or None).
    schedules: Callable[[], Awaitable[list[ScheduleRow]]] | None = None
    #: Each served definition: (name, active revision, canary revision or None, diverged).
    revisions: Callable[[], Iterable[tuple[str, int, int | None, bool]]] = lambda: ()
    #: Since start: rollbacks by (definition, reason: canary or command); promotions.
    rollbacks: Callable[[], Mapping[tuple[str, str], int]] = lambda: {}
    promotions: Callable[[], Mapping[str, int]] = lambda: {}


class Metrics:
    """What a scrape shows, and how it is refreshed; rendering is metrics/page.py's."""

    def __init__(self) -> None:
        self.rpc = RpcMetrics()
        #: The daemon's parts, once attached; the job outcomes are read from `_store`.
        self.gauges: Gauges | None = None
        self.totals = _JobTotals()
        self.unfinished: Sequence[Sequence[Any]] = []
        self.schedules: list[ScheduleRow] = []
        self._store: Store | None = None
        self._page: Page | None = None

    def attach(self, gauges: Gauges, store: Store) -> None:
        """Export the daemon's parts; the job outcomes are read from `store`."""
        self.gauges = gauges
        self._store = store

    async def page(self) -> tuple[bytes, str]:
        """A scrape: (body, content type), with the store's news folded in first."""
        await self.refresh()
        return self.render()

    async def refresh(self) -> None:
        """Fold new job events in and re-count unfinished jobs (reads off the event loop)."""
        if self.gauges is None or self._store is None:
            return
        while True:
            rows = await jobs_rows.outcome_events(
                self._store, self.totals.last_rowid, _COUNTED_STATES, _CHUNK
            )
            self.totals.fold(rows)
            if len(rows) < _CHUNK:
                break
        self.unfinished = await jobs_rows.unfinished_per_definition(self._store)
        if self.gauges.schedules is not None:
            self.schedules = await self.gauges.schedules()

    def render(self) -> tuple[bytes, str]:
        if self._page is None:
            # prometheus_client is needed only to render a scrape, and many hosts are never
            # scraped: imported at the first one, it is not part of every start (2.6 MiB of
            # RSS and 15 ms of CPU measured; bench/README.md, "Footprint").
            from automd.metrics.page import Page  # noqa: PLC0415

            self._page = Page(self)
        return self._page.render()
