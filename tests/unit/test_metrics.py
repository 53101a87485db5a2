"""The metrics module: outcome folding, exposition, docs and the shipped alert rules."""

from __future__ import annotations

import re
import shutil
import sqlite3
import subprocess
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from automd.metrics import RUNTIME_BUCKETS, Gauges, Metrics, _JobTotals

DOCS = Path(__file__).parents[2] / "docs"


def gauges() -> Gauges:
    return Gauges(
        running=lambda: 2, connections=lambda: 3, followers=lambda: 1, replays=lambda: 4,
        denials=lambda: Counter({"admin": 5}), dbus_reconnects=lambda: 0,
        connections_refused=lambda: {"max_connections": 6, "max_connections_per_user": 2},
        job_repairs=lambda: Counter({"unfollowed_unit": 2}),
        illegal_transitions=lambda: Counter({"queued->running": 1}),
        store_sizes=lambda: (8192, 4096), store_unwritable=lambda: "disk full",
        store_refusals=lambda: {"disk full": 3}, store_held=lambda: 2,
    )  # fmt: skip


class _NoStore:
    async def fetch_all(self, sql: str, args: Sequence[Any] = ()) -> list[sqlite3.Row]:
        raise AssertionError("these tests fold rows in by hand")


no_store: Any = _NoStore()


def rendered(metrics: Metrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = metrics.render()[0].decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_outcomes_fold_into_counters_and_a_cumulative_histogram() -> None:
    metrics = Metrics()
    metrics.attach(gauges(), no_store)
    totals: _JobTotals = metrics.totals
    totals.fold([
        (1, "backup", "succeeded", 110.0, 100.0),  # ran 10 s
        (2, "backup", "waiting_retry", 120.0, 115.0),
        (3, "backup", "failed", 200.0, 199.5),  # 0.5 s
        (4, "backup", "cancelled", 300.0, None),  # cancelled while queued: no run time
        (5, "hello", "succeeded", 10_000_000.0, 0.0),  # longer than the last bucket
    ])  # fmt: skip
    assert totals.last_rowid == 5
    found = rendered(metrics)

    def value(name: str, **labels: str) -> float | None:
        return found.get((name, frozenset(labels.items())))

    assert value("automd_jobs_finished_total", definition="backup", state="succeeded") == 1
    assert value("automd_jobs_finished_total", definition="backup", state="cancelled") == 1
    assert value("automd_job_retries_total", definition="backup") == 1
    assert value("automd_job_runtime_seconds_count", definition="backup") == 2
    assert value("automd_job_runtime_seconds_sum", definition="backup") == 10.5
    assert value("automd_job_runtime_seconds_bucket", definition="backup", le="1.0") == 1
    assert value("automd_job_runtime_seconds_bucket", definition="backup", le="15.0") == 2
    last = str(RUNTIME_BUCKETS[-1])
    assert value("automd_job_runtime_seconds_bucket", definition="hello", le=last) == 0
    assert value("automd_job_runtime_seconds_bucket", definition="hello", le="+Inf") == 1
    assert value("automd_authorization_denials_total", permission="admin") == 5
    assert value("automd_job_repairs_total", kind="unfollowed_unit") == 2
    assert value("automd_job_illegal_transitions_total", transition="queued->running") == 1
    assert value("automd_jobs_running") == 2


def test_rpc_methods_outside_the_api_share_one_label() -> None:
    metrics = Metrics()
    for method in ("job.get", "x" * 200, None, "t.echo"):
        metrics.rpc.observe(method, None, 0.001)
    metrics.rpc.observe("job.get", 1002, 0.002)
    found = rendered(metrics)
    requests = {labels: v for (name, labels), v in found.items()
                if name == "automd_rpc_requests_total"}  # fmt: skip
    assert requests == {
        frozenset({("method", "job.get"), ("code", "ok")}): 1,
        frozenset({("method", "(other)"), ("code", "ok")}): 3,
        frozenset({("method", "job.get"), ("code", "1002")}): 1,
    }


def test_rpc_latency_buckets_are_inclusive_upper_bounds_and_cumulative() -> None:
    metrics = Metrics()
    for seconds in (0.0005, 0.0006, 0.001, 9.0):
        metrics.rpc.observe("job.get", None, seconds)
    found = rendered(metrics)

    def bucket(le: str) -> float:
        labels = frozenset({("method", "job.get"), ("le", le)})
        return found[("automd_rpc_request_duration_seconds_bucket", labels)]

    assert [bucket(le) for le in ("0.0005", "0.001", "5.0", "+Inf")] == [1, 3, 3, 4]
    count = found[("automd_rpc_request_duration_seconds_count", frozenset({("method", "job.get")}))]
    total = found[("automd_rpc_request_duration_seconds_sum", frozenset({("method", "job.get")}))]
    assert (count, round(total, 4)) == (4, 9.0021)


def test_every_metric_is_documented() -> None:
    metrics = Metrics()
    metrics.attach(gauges(), no_store)
    names = {family.name for family in text_string_to_metric_families(metrics.render()[0].decode())}
    documented = (DOCS / "metrics.md").read_text()
    for name in sorted(names):
        if name.startswith("process_"):
            continue
        suffix = "_total" if f"`{name}_total`" in documented else ""
        assert re.search(rf"^\| `{re.escape(name + suffix)}` \|", documented, re.M), name


def test_the_shipped_alert_rules_pass_promtool() -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: apt-get install prometheus (packaging/apt-packages.txt)"
    checked = subprocess.run(
        [promtool, "check", "rules", str(DOCS / "alerts.yml")], capture_output=True, check=False
    )
    assert checked.returncode == 0, checked.stdout.decode() + checked.stderr.decode()
    assert b"SUCCESS: 9 rules found" in checked.stdout
