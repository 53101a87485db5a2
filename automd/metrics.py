"""Prometheus metrics: the only module that imports prometheus_client (docs/metrics.md).

Job outcomes come from the store, so their counters survive restarts: each scrape folds the
job_events rows written since the last one into running totals (the first scrape after a
start reads them all, in the store's reader thread). Everything else is counted in memory
by the part that sees it, and read here at scrape time; those reset when automd restarts.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Histogram, ProcessCollector
from prometheus_client import Counter as PromCounter
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector

from automd import __version__
from automd.api.codes import API_VERSION
from automd.api.jobs import FINISHED_STATES, JobState
from automd.api.methods import METHODS
from automd.store import jobs as jobs_rows
from automd.store.db import Store

# Job run times span seconds to hours.
RUNTIME_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 4 * 3600.0)
# RPC latency: the hot reads answer in about a millisecond.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0)
#: Label for a method name that is not part of the API (callers must not mint label values).
OTHER_METHOD = "(other)"
# Rows folded in per store read, so a long history never holds one huge result in memory.
_CHUNK = 20_000
_COUNTED_STATES = tuple(sorted({*FINISHED_STATES, JobState.WAITING_RETRY}))


class RpcMetrics:
    """Requests and latency per method; the Dispatcher calls observe() for every request."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = PromCounter(
            "automd_rpc_requests",
            "JSON-RPC requests answered, by method and outcome (ok or the error code).",
            ["method", "code"],
            registry=registry,
        )
        self.duration = Histogram(
            "automd_rpc_request_duration_seconds",
            "Time to answer a JSON-RPC request (to the first byte of a streamed one).",
            ["method"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self._children: dict[tuple[str, int | None], tuple[Any, Any]] = {}

    def observe(self, method: str | None, code: int | None, seconds: float) -> None:
        """`method`: the name of the method called, None when the request named none."""
        # Only the API's names become label values: a caller cannot mint time series.
        label = method if method in METHODS else OTHER_METHOD
        key = (label, code)
        children = self._children.get(key)
        if children is None:  # labels() costs a lock and a lookup: once per combination
            outcome = "ok" if code is None else str(code)
            children = (self.requests.labels(label, outcome), self.duration.labels(label))
            self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)


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


class DaemonCollector(Collector):
    """Job outcomes from the store and live values of the daemon's parts."""

    def __init__(self, gauges: Gauges) -> None:
        self.gauges = gauges
        self.totals = _JobTotals()
        self.unfinished: Sequence[Sequence[Any]] = []
        self.schedules: list[ScheduleRow] = []

    def collect(self) -> Iterable[Metric]:
        yield from self._job_metrics()
        yield from self._live_metrics()
        yield from self._schedule_metrics()
        yield from self._revision_metrics()
        yield from self._store_metrics()
        info = InfoMetricFamily("automd_build", "automd's version and API version.")
        info.add_metric([], {"version": __version__, "api_version": API_VERSION})
        yield info

    def _job_metrics(self) -> Iterable[Metric]:
        totals = self.totals
        finished = CounterMetricFamily(
            "automd_jobs_finished",
            "Jobs that reached a final state, by definition and state (from the store).",
            labels=["definition", "state"],
        )
        for (definition, state), count in sorted(totals.finished.items()):
            finished.add_metric([definition, state], count)
        retries = CounterMetricFamily(
            "automd_job_retries",
            "Failed attempts that were scheduled to run again (from the store).",
            labels=["definition"],
        )
        for definition, count in sorted(totals.retries.items()):
            retries.add_metric([definition], count)
        runtime = HistogramMetricFamily(
            "automd_job_runtime_seconds",
            "Run time of a job's last attempt, from its start to the job's end (from the store).",
            labels=["definition"],
        )
        for definition, counts in sorted(totals.runtime_counts.items()):
            cumulative, buckets = 0, []
            for bound, count in zip([*RUNTIME_BUCKETS, float("inf")], counts, strict=True):
                cumulative += count
                buckets.append((_le(bound), cumulative))
            runtime.add_metric([definition], buckets, totals.runtime_sum[definition])
        jobs = GaugeMetricFamily(
            "automd_jobs",
            "Unfinished jobs by definition and state (queued: the queue depth).",
            labels=["definition", "state"],
        )
        for definition, state, count in self.unfinished:
            jobs.add_metric([definition, state], count)
        yield from (finished, retries, runtime, jobs)

    def _live_metrics(self) -> Iterable[Metric]:
        g = self.gauges
        yield GaugeMetricFamily("automd_jobs_running", "Jobs holding a run slot now.",
                                value=g.running())  # fmt: skip
        yield GaugeMetricFamily("automd_http_connections", "Open connections to the API socket.",
                                value=g.connections())  # fmt: skip
        yield GaugeMetricFamily("automd_log_followers", "job.logs streams being followed.",
                                value=g.followers())  # fmt: skip
        yield CounterMetricFamily(
            "automd_job_idempotent_replays",
            "job.submit calls answered with an earlier job of the same idempotency key.",
            value=g.replays(),
        )
        denials = CounterMetricFamily(
            "automd_authorization_denials",
            "Calls refused by authorization, by permission.",
            labels=["permission"],
        )
        for permission, count in sorted(g.denials().items()):
            denials.add_metric([permission], count)
        yield denials
        yield CounterMetricFamily("automd_dbus_reconnects", "System bus connections re-made.",
                                  value=g.dbus_reconnects())  # fmt: skip
        repairs = CounterMetricFamily(
            "automd_job_repairs",
            "Drift the jobs self-check found and repaired, by kind (docs/metrics.md).",
            labels=["kind"],
        )
        for kind, count in sorted(g.job_repairs().items()):
            repairs.add_metric([kind], count)
        yield repairs
        illegal = CounterMetricFamily(
            "automd_job_illegal_transitions",
            "Job state changes the transition table refused (each is a bug; docs/metrics.md).",
            labels=["transition"],
        )
        for transition, count in sorted(g.illegal_transitions().items()):
            illegal.add_metric([transition], count)
        yield illegal
        refused = CounterMetricFamily(
            "automd_http_connections_refused",
            "Connections refused at accept(), by reason: max_connections, "
            "max_connections_per_user or open_files.",
            labels=["reason"],
        )
        for reason, count in sorted(g.connections_refused().items()):
            refused.add_metric([reason], count)
        yield refused

    def _schedule_metrics(self) -> Iterable[Metric]:
        # Labels are admin-written definition and schedule names: one series per schedule.
        firings = CounterMetricFamily(
            "automd_schedule_firings",
            "Schedule firings by outcome: created (a job) or skipped (overlap = skip).",
            labels=["definition", "schedule", "outcome"],
        )
        for (definition, schedule, outcome), count in sorted(
            self.gauges.schedule_firings().items()
        ):
            firings.add_metric([definition, schedule, outcome], count)
        upcoming = GaugeMetricFamily(
            "automd_schedule_next_fire_timestamp_seconds",
            "When systemd fires the schedule's timer next (seconds since the epoch).",
            labels=["definition", "schedule"],
        )
        last = GaugeMetricFamily(
            "automd_schedule_last_job",
            "1 for the state of the newest job each schedule created.",
            labels=["definition", "schedule", "state"],
        )
        for definition, schedule, next_at, state in self.schedules:
            if next_at is not None:
                upcoming.add_metric([definition, schedule], next_at)
            if state is not None:
                last.add_metric([definition, schedule, state], 1)
        yield from (firings, upcoming, last)

    def _revision_metrics(self) -> Iterable[Metric]:
        g = self.gauges
        active = GaugeMetricFamily("automd_definition_revision",
                                   "The revision of each definition new jobs run.",
                                   labels=["definition"])  # fmt: skip
        canary = GaugeMetricFamily("automd_definition_canary_revision",
                                   "The revision under canary, while one runs.",
                                   labels=["definition"])  # fmt: skip
        diverged = GaugeMetricFamily("automd_definition_diverged",
                                     "1 while a rollback keeps another revision active than "
                                     "the file's.", labels=["definition"])  # fmt: skip
        for name, number, canary_number, apart in g.revisions():
            active.add_metric([name], number)
            diverged.add_metric([name], int(apart))
            if canary_number is not None:
                canary.add_metric([name], canary_number)
        rollbacks = CounterMetricFamily("automd_definition_rollbacks",
                                        "Rollbacks by reason: canary (automatic) or command.",
                                        labels=["definition", "reason"])  # fmt: skip
        for (name, reason), count in sorted(g.rollbacks().items()):
            rollbacks.add_metric([name, reason], count)
        promotions = CounterMetricFamily("automd_definition_promotions",
                                         "Canary revisions promoted.",
                                         labels=["definition"])  # fmt: skip
        for name, count in sorted(g.promotions().items()):
            promotions.add_metric([name], count)
        yield from (active, canary, diverged, rollbacks, promotions)

    def _store_metrics(self) -> Iterable[Metric]:
        g = self.gauges
        size, wal = g.store_sizes()
        yield GaugeMetricFamily("automd_store_bytes", "Size of the SQLite database file.",
                                value=size)  # fmt: skip
        yield GaugeMetricFamily("automd_store_wal_bytes", "Size of the SQLite write-ahead log.",
                                value=wal)  # fmt: skip
        yield GaugeMetricFamily(
            "automd_store_writable",
            "1 while the state directory's disk takes writes; 0 when full or failing.",
            value=0 if g.store_unwritable() else 1,
        )
        refusals = CounterMetricFamily(
            "automd_store_write_refusals",
            "Group commits the disk refused, by reason: disk full, I/O error.",
            labels=["reason"],
        )
        for reason, count in sorted(g.store_refusals().items()):
            refusals.add_metric([reason], count)
        yield refusals
        yield GaugeMetricFamily(
            "automd_store_held_writes",
            "Job updates waiting for the disk to take them (recorded once it does).",
            value=g.store_held(),
        )


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(bound)


class Metrics:
    """The registry automd exposes, and how a scrape refreshes it."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.rpc = RpcMetrics(self.registry)
        ProcessCollector(registry=self.registry)
        self.daemon: DaemonCollector | None = None
        self._store: Store | None = None

    def attach(self, gauges: Gauges, store: Store) -> None:
        """Export the daemon's parts; the job outcomes are read from `store`."""
        self.daemon = DaemonCollector(gauges)
        self.registry.register(self.daemon)
        self._store = store

    async def page(self) -> tuple[bytes, str]:
        """A scrape: (body, content type), with the store's news folded in first."""
        await self.refresh()
        return self.render()

    async def refresh(self) -> None:
        """Fold new job events in and re-count unfinished jobs (reads off the event loop)."""
        if self.daemon is None or self._store is None:
            return
        totals = self.daemon.totals
        while True:
            rows = await jobs_rows.outcome_events(
                self._store, totals.last_rowid, _COUNTED_STATES, _CHUNK
            )
            totals.fold(rows)
            if len(rows) < _CHUNK:
                break
        self.daemon.unfinished = await jobs_rows.unfinished_per_definition(self._store)
        if self.daemon.gauges.schedules is not None:
            self.daemon.schedules = await self.daemon.gauges.schedules()

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
