"""The Prometheus text page of what metrics/__init__.py counts and of the daemon's live values:
the only module that imports prometheus_client (docs/metrics.md), at the first scrape.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, ProcessCollector
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
from automd.metrics import LATENCY_BUCKETS, RUNTIME_BUCKETS, Gauges, Metrics


class Page:
    """The registry a scrape renders: requests, the process, then the daemon's parts."""

    def __init__(self, metrics: Metrics) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(RpcCollector(metrics))
        ProcessCollector(registry=self.registry)
        self.registry.register(DaemonCollector(metrics))

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


def _buckets(bounds: Sequence[float], counts: Sequence[int]) -> list[tuple[str, float]]:
    """Per-bucket counts (the last one above every bound) as cumulative `le` buckets."""
    buckets: list[tuple[str, float]] = []
    cumulative = 0
    for bound, count in zip([*bounds, float("inf")], counts, strict=True):
        cumulative += count
        buckets.append((_le(bound), cumulative))
    return buckets


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(bound)


def _counted(
    name: str, documentation: str, labels: list[str], counts: Mapping[Any, int]
) -> CounterMetricFamily:
    """A counter with one series per key of `counts` (a label value, or a tuple of them)."""
    family = CounterMetricFamily(name, documentation, labels=labels)
    for key, count in sorted(counts.items()):
        family.add_metric(list(key) if isinstance(key, tuple) else [key], count)
    return family


class RpcCollector(Collector):
    """JSON-RPC requests and latency per method (metrics.RpcMetrics)."""

    def __init__(self, metrics: Metrics) -> None:
        self.rpc = metrics.rpc

    def collect(self) -> Iterable[Metric]:
        rpc = self.rpc
        requests = CounterMetricFamily(
            "automd_rpc_requests",
            "JSON-RPC requests answered, by method and outcome (ok or the error code).",
            labels=["method", "code"],
        )
        for (method, code), count in rpc.requests.items():
            outcome = "ok" if code is None else str(code)
            requests.add_metric([method, outcome], count, created=rpc.created[method, code])
        duration = HistogramMetricFamily(
            "automd_rpc_request_duration_seconds",
            "Time to answer a JSON-RPC request (to the first byte of a streamed one).",
            labels=["method"],
        )
        for method, latency in rpc.latency.items():
            duration.add_metric([method], _buckets(LATENCY_BUCKETS, latency.counts), latency.total)
            duration.add_sample(f"{duration.name}_created", {"method": method}, latency.created)
        yield from (requests, duration)


class DaemonCollector(Collector):
    """Job outcomes from the store and live values of the daemon's parts."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    @property
    def gauges(self) -> Gauges:
        assert self.metrics.gauges is not None  # collect() checks
        return self.metrics.gauges

    def collect(self) -> Iterable[Metric]:
        if self.metrics.gauges is None:  # not attached to a daemon (yet)
            return
        yield from self._job_metrics()
        yield from self._live_metrics()
        yield from self._schedule_metrics()
        yield from self._revision_metrics()
        yield from self._store_metrics()
        info = InfoMetricFamily("automd_build", "automd's version and API version.")
        info.add_metric([], {"version": __version__, "api_version": API_VERSION})
        yield info

    def _job_metrics(self) -> Iterable[Metric]:
        totals = self.metrics.totals
        finished = _counted(
            "automd_jobs_finished",
            "Jobs that reached a final state, by definition and state (from the store).",
            ["definition", "state"], totals.finished,
        )  # fmt: skip
        retries = _counted(
            "automd_job_retries",
            "Failed attempts that were scheduled to run again (from the store).",
            ["definition"], totals.retries,
        )  # fmt: skip
        runtime = HistogramMetricFamily(
            "automd_job_runtime_seconds",
            "Run time of a job's last attempt, from its start to the job's end (from the store).",
            labels=["definition"],
        )
        for definition, counts in sorted(totals.runtime_counts.items()):
            buckets = _buckets(RUNTIME_BUCKETS, counts)
            runtime.add_metric([definition], buckets, totals.runtime_sum[definition])
        jobs = GaugeMetricFamily(
            "automd_jobs",
            "Unfinished jobs by definition and state (queued: the queue depth).",
            labels=["definition", "state"],
        )
        for definition, state, count in self.metrics.unfinished:
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
        yield _counted(
            "automd_authorization_denials",
            "Calls refused by authorization, by permission.",
            ["permission"], g.denials(),
        )  # fmt: skip
        yield CounterMetricFamily("automd_dbus_reconnects", "System bus connections re-made.",
                                  value=g.dbus_reconnects())  # fmt: skip
        yield _counted(
            "automd_job_repairs",
            "Drift the jobs self-check found and repaired, by kind (docs/metrics.md).",
            ["kind"], g.job_repairs(),
        )  # fmt: skip
        yield _counted(
            "automd_job_illegal_transitions",
            "Job state changes the transition table refused (each is a bug; docs/metrics.md).",
            ["transition"], g.illegal_transitions(),
        )  # fmt: skip
        yield _counted(
            "automd_http_connections_refused",
            "Connections refused at accept(), by reason: max_connections, "
            "max_connections_per_user or open_files.",
            ["reason"], g.connections_refused(),
        )  # fmt: skip

    def _schedule_metrics(self) -> Iterable[Metric]:
        # Labels are admin-written definition and schedule names: one series per schedule.
        firings = _counted(
            "automd_schedule_firings",
            "Schedule firings by outcome: created (a job) or skipped (overlap = skip).",
            ["definition", "schedule", "outcome"], self.gauges.schedule_firings(),
        )  # fmt: skip
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
        for definition, schedule, next_at, state in self.metrics.schedules:
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
        yield from (active, canary, diverged)
        yield _counted("automd_definition_rollbacks",
                       "Rollbacks by reason: canary (automatic) or command.",
                       ["definition", "reason"], g.rollbacks())  # fmt: skip
        yield _counted("automd_definition_promotions", "Canary revisions promoted.",
                       ["definition"], g.promotions())  # fmt: skip

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
        yield _counted(
            "automd_store_write_refusals",
            "Group commits the disk refused, by reason: disk full, I/O error.",
            ["reason"], g.store_refusals(),
        )  # fmt: skip
        yield GaugeMetricFamily(
            "automd_store_held_writes",
            "Job updates waiting for the disk to take them (recorded once it does).",
            value=g.store_held(),
        )
