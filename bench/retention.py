"""Retention on months of history: the longest purge batch, and the file before and after.

    .venv/bin/python -m bench.retention [--jobs 200000]

Builds a store of finished jobs through the store's own write functions (bench/history.py),
half of them expired, then times job.get/job.list's reads, a purge and a compaction. A
benchmark, not a test: it prints figures.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from functools import partial
from pathlib import Path

from automd.config import RetentionSettings
from automd.jobs.retention import Retention
from automd.store import jobs as rows
from automd.store.db import Store
from bench.history import add_finished_jobs

DAY = 86400.0
CHUNK = 5000  # jobs per build transaction


async def _write_latencies(store: Store, stop: asyncio.Event, least: int = 0) -> list[float]:
    """Latency of one-row writes (a submit's shape) back to back, until `stop` is set and at
    least `least` were measured."""
    latencies: list[float] = []
    while not stop.is_set() or len(latencies) < least:
        started = time.perf_counter()
        await store.write(
            lambda conn: conn.execute("INSERT OR REPLACE INTO meta VALUES ('b', 'x')")
        )
        latencies.append(time.perf_counter() - started)
    return latencies


def _percentiles(latencies: list[float]) -> str:
    ordered = sorted(latencies)
    p50, p99 = ordered[len(ordered) // 2], ordered[int(len(ordered) * 0.99)]
    return f"p50 {p50 * 1e3:.1f} ms, p99 {p99 * 1e3:.1f} ms, max {ordered[-1] * 1e3:.1f} ms"


def _mb(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


async def _build(store: Store, jobs: int, now: float) -> list[str]:
    ids: list[str] = []
    for start in range(0, jobs, CHUNK):
        # The older half expired (succeeded, 30 days): 40..35 days old, the rest 10..5.
        age = 40 * DAY if start < jobs // 2 else 10 * DAY
        count = min(CHUNK, jobs - start)
        build = partial(add_finished_jobs, count=count, finished_at=now - age, spread=5 * DAY)
        ids += await store.write(build)
    return ids


async def _reads(store: Store, job_id: str) -> str:
    started = time.perf_counter()
    for _ in range(1000):
        store.lookup(lambda conn: rows.job_detail(conn, job_id))
    get = (time.perf_counter() - started) / 1000
    started = time.perf_counter()
    for _ in range(100):
        await rows.list_jobs(store, limit=50)
    listed = (time.perf_counter() - started) / 100
    return f"job.get read {get * 1e6:.0f} us, job.list page {listed * 1e3:.2f} ms"


async def main(jobs: int) -> None:
    now = time.time()
    with tempfile.TemporaryDirectory() as directory:
        started = time.perf_counter()
        empty = await Store.open(Path(directory) / "empty")
        print(f"open, empty store: {(time.perf_counter() - started) * 1e3:.0f} ms")
        await empty.close()
        store = await Store.open(Path(directory) / "state")
        ids = await _build(store, jobs, now)
        keeper = Retention(store, RetentionSettings(), lambda: DAY)
        await keeper.compact()
        started = time.perf_counter()
        await keeper.describe()
        print(f"system.health's history count: {(time.perf_counter() - started) * 1e3:.0f} ms")
        size, wal = store.sizes()
        print(f"{jobs} finished jobs: {_mb(size)}, WAL {_mb(wal)}; {await _reads(store, ids[-1])}")
        await store.close()
        started = time.perf_counter()
        store = await Store.open(Path(directory) / "state")
        print(f"open with {jobs} jobs: {(time.perf_counter() - started) * 1e3:.0f} ms")
        keeper = Retention(store, RetentionSettings(), lambda: DAY)
        stopped = asyncio.Event()
        stopped.set()
        alone = await _write_latencies(store, stopped, least=500)
        print(f"one-row writes, alone: {_percentiles(alone)}")
        stop = asyncio.Event()
        beside = asyncio.create_task(_write_latencies(store, stop))
        started = time.perf_counter()
        purged = await keeper.purge()
        purge_seconds = time.perf_counter() - started
        stop.set()
        print(f"one-row writes during the purge: {_percentiles(await beside)}")
        _size, wal = store.sizes()
        print(
            f"purged {purged} in {purge_seconds:.1f} s, longest batch "
            f"{keeper.longest_batch * 1e3:.1f} ms; WAL after the purge {_mb(wal)}"
        )
        started = time.perf_counter()
        await keeper.compact()
        size, wal = store.sizes()
        print(
            f"compacted in {time.perf_counter() - started:.2f} s: {_mb(size)}, WAL {_mb(wal)}; "
            f"{await _reads(store, ids[-1])}"
        )
        await store.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=200_000)
    asyncio.run(main(parser.parse_args().jobs))
