"""A million finished jobs against an empty store: the API's reads and writes, and start-up.

    .venv/bin/python -m bench.bigdb [--jobs 1000000] [--cache DIR] [--rebuild]

Builds (once, then cached under --cache, outside the checkout) a store of `--jobs` finished jobs
through the store's own write functions (bench/history.py), and a near-empty one (100 jobs, so
that job.get has something to read) the same way. For each, on a copy:
- job.get through automd.jobs.queries.JobQueries.get, uncached (a cache of 0: random jobs of
  the whole history, and of the newest 4096, what CI polls) and cached (the same job polled);
- job.list's first page and a page from a cursor 90% of the history back (900k jobs back in
  a million);
- JobService.submit (validation, the durable write, its fsynced commit) with a fake systemd
  (tests/unit/test_jobs.py's Harness), sequential; and the service's start and reconciliation;
- `automd --listen SOCK --state-dir DIR --config CONF` (as bench/footprint.py runs it): spawn to
  the first system.version reply, and to its "reconcile" log line. No systemd on this host:
  reconciliation reports systemd unreachable, so that line is the warning, not "reconciled:"
  (bench/bigdb_systemd.py times the real one, against systemd in the test container).
Prints a table and the ratios (target: within 1.2x of empty, start-up under 1 s); writes
bench/results/bigdb.json. A benchmark, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

from automd.api.jobs import JobListParams
from automd.config import JobsSettings
from automd.jobs.queries import JobQueries
from automd.store.db import DB_FILENAME, Store
from bench.footprint import call
from bench.history import add_finished_jobs
from tests.unit.test_jobs import CALLER, Harness

CHECKOUT = Path(__file__).resolve().parent.parent
DAY = 86400.0
CHUNK = 5000  # jobs per build transaction
EMPTY_JOBS = 100


async def build(directory: Path, jobs: int, plan: str | None = None) -> float:
    """A store of `jobs` succeeded jobs finished over the last 20 days, oldest first (their
    ids in time order, as the daemon makes them); seconds it took. `plan`: each job's
    RunPlan JSON (bench/history.py's 50-byte one by default)."""
    started = time.perf_counter()
    store = await Store.open(directory)
    now = time.time()
    try:
        for start in range(0, jobs, CHUNK):
            count = min(CHUNK, jobs - start)
            at = now - 20 * DAY + start * 20 * DAY / jobs
            shape: dict[str, Any] = {} if plan is None else {"plan": plan}
            await store.write(partial(add_finished_jobs, count=count, finished_at=at,
                                      spread=count * 20 * DAY / jobs, **shape))  # fmt: skip
            if start and start % 100_000 == 0:
                print(f"  built {start:,} in {time.perf_counter() - started:.0f} s", flush=True)
        await store.maintain(lambda conn: conn.execute("PRAGMA wal_checkpoint(TRUNCATE)"))
    finally:
        await store.close()
    return time.perf_counter() - started


def cached_store(
    cache: Path, jobs: int, rebuild: bool, plan: tuple[str, str] | None = None
) -> tuple[Path, float | None]:
    """The cached store of `jobs` jobs, built if missing; (its directory, build seconds).
    `plan`: (a name for the cache directory, the RunPlan JSON each job stores)."""
    directory = cache / (f"jobs-{jobs}" if plan is None else f"jobs-{jobs}-{plan[0]}")
    done = directory / "built"
    if done.exists() and not rebuild:
        return directory, json.loads(done.read_text()).get("seconds")
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    print(f"building a store of {jobs:,} finished jobs in {directory} ...", flush=True)
    seconds = asyncio.run(build(directory, jobs, None if plan is None else plan[1]))
    done.write_text(json.dumps({"seconds": seconds}))
    return directory, seconds


def timed(fn: Callable[[], Any], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return times


async def atimed(fn: Callable[[], Awaitable[Any]], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        await fn()
        times.append(time.perf_counter() - started)
    return times


def summary(times: list[float]) -> dict[str, float]:
    ordered = sorted(times)
    return {"p50_ms": statistics.median(ordered) * 1e3,
            "p99_ms": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1e3,
            "n": len(ordered)}  # fmt: skip


async def reads(state: Path) -> dict[str, dict[str, float]]:
    store = await Store.open(state)
    try:
        return await _reads(store)
    finally:
        await store.close()


async def _reads(store: Store) -> dict[str, dict[str, float]]:
    ids = [row[0] for row in await store.fetch_all("SELECT id FROM jobs ORDER BY id")]
    uncached = JobQueries(store, cache_size=0)
    cached = JobQueries(store)
    sample = random.Random(1).choices(ids, k=2000)
    recent = random.Random(2).choices(ids[-4096:], k=2000)
    one = ids[len(ids) // 2]
    await cached.get(one)
    picks, recent_picks = iter(sample), iter(recent)
    first = JobListParams()
    # 90% of the history back from the newest (a full page left even in a near-empty store).
    back = max(first.limit, len(ids) - 1 - len(ids) * 9 // 10)
    deep = ids[back]
    deep_page = JobListParams(cursor=deep)
    # A page of 50 from a million, or what is left of a near-empty store's.
    assert len((await uncached.list(deep_page)).jobs) == min(first.limit, back)
    return {
        "job.get uncached, any job": summary(await atimed(lambda: uncached.get(next(picks)), 2000)),
        "job.get uncached, newest 4096": summary(
            await atimed(lambda: uncached.get(next(recent_picks)), 2000)
        ),
        "job.get cached": summary(await atimed(lambda: cached.get(one), 2000)),
        "job.list first page": summary(await atimed(lambda: uncached.list(first), 200)),
        "job.list deep cursor page": summary(await atimed(lambda: uncached.list(deep_page), 200)),
    }


async def submits(work: Path, runs: int, starts: int) -> dict[str, dict[str, float]]:
    """JobService's start (to reconciled) `starts` times, then `runs` sequential submits, with
    a fake systemd."""
    times = []
    for _ in range(starts):
        harness = Harness(work, JobsSettings(max_unfinished=runs + 10))
        started = time.perf_counter()
        await harness.open()  # opens work/state, starts, waits for reconciliation
        times.append(time.perf_counter() - started)
        await harness.close()
    start = summary(times)
    service = await harness.open()
    try:
        times = await atimed(lambda: service.submit("echo", {"text": "x"}, None, CALLER), runs)
    finally:
        await harness.close()
    return {"JobService start + reconciled": start,
            "job.submit (JobService.submit)": summary(times)}  # fmt: skip


def daemon_start(state: Path, work: Path) -> dict[str, float]:
    """Spawn `automd --listen` on `state`: seconds to the first reply, and to its reconcile
    log line."""
    config = work / "automd.toml"
    config.write_text(
        f'[jobs]\ndefinitions_directory = "{CHECKOUT / "etc/automd/jobs.d"}"\n'
        "[access]\npolkit = false\n"
    )
    sock = work / "automd.sock"
    log_path = work / "automd.log"
    env = {**os.environ}
    env.pop("NOTIFY_SOCKET", None)
    command = [str(CHECKOUT / ".venv/bin/automd"), "--listen", str(sock), "--config",
               str(config), "--state-dir", str(state)]  # fmt: skip
    with log_path.open("wb") as log:
        started = time.monotonic()
        proc = subprocess.Popen(command, env=env, cwd=work, stdout=log, stderr=log)
        try:
            while call(sock) is None:
                if proc.poll() is not None:
                    raise RuntimeError(f"automd exited with {proc.returncode}: "
                                       f"{log_path.read_text()[-2000:]}")  # fmt: skip
                time.sleep(0.002)
            first = time.monotonic() - started
            while "reconcile" not in log_path.read_text():
                if time.monotonic() - started > 60:
                    raise RuntimeError(f"no reconcile line: {log_path.read_text()[-2000:]}")
                time.sleep(0.002)
            reconciled = time.monotonic() - started
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    line = next(x for x in log_path.read_text().splitlines() if "reconcile" in x)
    return {"first_reply_s": first, "reconcile_line_s": reconciled, "line": line}  # type: ignore[dict-item]


def measure(source: Path, label: str, runs: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix=f"automd-bigdb-{label}-") as tmp:
        work = Path(tmp)
        state = work / "state"
        state.mkdir()
        started = time.perf_counter()
        shutil.copy2(source / DB_FILENAME, state / DB_FILENAME)
        copied = time.perf_counter() - started
        size = (state / DB_FILENAME).stat().st_size
        result: dict[str, Any] = {"db_mb": size / 1e6, "copy_s": copied}
        result["reads"] = asyncio.run(reads(state))
        starts = [daemon_start(state, work) for _ in range(runs)]
        result["daemon"] = {
            "first_reply_s": statistics.median(s["first_reply_s"] for s in starts),
            "reconcile_line_s": statistics.median(s["reconcile_line_s"] for s in starts),
            "runs": runs, "line": starts[-1]["line"],
        }  # fmt: skip
        result["writes"] = asyncio.run(submits(work, 300, runs))
        return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--cache", type=Path, default=Path("/var/cache/automd-tests/bigdb"))
    parser.add_argument("--rebuild", action="store_true")
    parser.add_argument("--starts", type=int, default=5, help="daemon starts per store")
    parser.add_argument("--build-only", action="store_true")
    args = parser.parse_args()
    big, build_seconds = cached_store(args.cache, args.jobs, args.rebuild)
    if args.build_only:
        return 0
    empty, _ = cached_store(args.cache, EMPTY_JOBS, args.rebuild)
    results = {"jobs": args.jobs, "build_s": build_seconds,
               "load1_before": os.getloadavg()[0],
               "empty": measure(empty, "empty", args.starts),
               "big": measure(big, "big", args.starts),
               "load1_after": os.getloadavg()[0]}  # fmt: skip
    print(f"store of {args.jobs:,} finished jobs: {results['big']['db_mb']:.0f} MB, built in "
          f"{build_seconds or 0:.0f} s; near-empty store: {EMPTY_JOBS} jobs")  # fmt: skip
    print(f"{'measurement (us)':36} {'empty p50':>10} {'big p50':>10} {'ratio':>6} "
          f"{'empty p99':>10} {'big p99':>10}")  # fmt: skip
    rows = [*results["empty"]["reads"], *results["empty"]["writes"]]
    for name in rows:
        kind = "reads" if name in results["empty"]["reads"] else "writes"
        e, b = results["empty"][kind][name], results["big"][kind][name]
        ratio = b["p50_ms"] / e["p50_ms"]
        print(f"{name:36} {e['p50_ms'] * 1e3:10.1f} {b['p50_ms'] * 1e3:10.1f} {ratio:5.2f}x"
              f" {e['p99_ms'] * 1e3:10.1f} {b['p99_ms'] * 1e3:10.1f}")  # fmt: skip
    for key in ("first_reply_s", "reconcile_line_s"):
        e, b = results["empty"]["daemon"][key], results["big"]["daemon"][key]
        print(f"daemon {key:29} {e * 1e6:10.0f} {b * 1e6:10.0f} {b / e:5.2f}x")
    print(f"reconcile line: {results['big']['daemon']['line']}")
    print(f"load average: {results['load1_before']:.1f} before, {results['load1_after']:.1f} after")
    out = CHECKOUT / "bench/results"
    out.mkdir(exist_ok=True)
    (out / "bigdb.json").write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
