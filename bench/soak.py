"""Steady mixed load against automd and real systemd, with retention on: is it flat over time?

    .venv/bin/python -m bench.soak [--minutes 30] [--clients 4] [--burst 50]
    .venv/bin/python -m bench.soak --plot bench/results/soak-STAMP.json   # re-plot a run

Boots the test container (tests/integration), installs automd with a retention that bounds
the database within the run (`[retention] max_finished_jobs = 1000`, `[jobs]
idempotency_window_seconds = 60`), then, for `--minutes`:
- CI-like clients: submit `hello` with an idempotency key (sometimes replayed once finished),
  poll `job.get` about once a second until it is finished, pause, again;
- a burst of `--burst` submits every minute, each job polled once a second until finished;
- an operator following a short `long` job's logs (`automctl logs -f`) now and then;
- now and then a longer `long` job cancelled while it runs, retried, and cancelled again.
Every 10 s it samples automd's RSS and open fds (its MainPID, via /proc), the database and
WAL sizes, the jobs in the database and those finished so far, and the API latency
percentiles per method over the interval. Samples go to bench/results/soak-STAMP.json (and
.csv); the plot to bench/soak.png (`--png`). A benchmark, not a test; root, about --minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import itertools
import json
import random
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.drain import cpu_seconds
from tests.daemon.harness import Connection
from tests.integration.conftest import CHECKOUT, install_automd
from tests.integration.container import Container

AUTOMCTL = str(CHECKOUT / ".venv/bin/automctl")
RESULTS = CHECKOUT / "bench/results"
CONFIG = "[retention]\nmax_finished_jobs = 1000\n[jobs]\nidempotency_window_seconds = 60\n"
FINAL = {"succeeded", "failed", "timed_out", "unknown", "cancelled"}
SAMPLE_SECONDS = 10.0
COUNT_JOBS = (
    "import json, sqlite3; c = sqlite3.connect('file:/var/lib/automd/automd.db?mode=ro', "
    "uri=True, timeout=5); "
    "print(json.dumps(dict(c.execute('SELECT state, count(*) FROM jobs GROUP BY state'))))"
)


class Load:
    """The clients' shared tallies: latencies per method since the last sample, jobs done."""

    def __init__(self, sock: Path) -> None:
        self.sock = sock
        self.latencies: dict[str, list[float]] = defaultdict(list)
        self.finished = 0
        self.submitted = 0
        #: Seconds from each finished job's submit to its first attempt's start, since the
        #: last sample (the job's own record: created_at -> attempts[0].started_at).
        self.to_start: list[float] = []
        self.errors: dict[str, int] = defaultdict(int)
        self.stop = asyncio.Event()
        self.keys = itertools.count()

    async def call(self, conn: Connection, method: str, params: dict[str, Any]) -> Any:
        started = time.perf_counter()
        reply = await conn.call(method, params)
        self.latencies[method].append(time.perf_counter() - started)
        if "error" in reply:
            self.errors[f"{method} {reply['error']['code']}"] += 1
            return None
        return reply["result"]

    async def submit(self, conn: Connection, definition: str, params: dict[str, Any],
                     key: str | None = None) -> dict[str, Any] | None:  # fmt: skip
        body: dict[str, Any] = {"definition": definition, "params": params}
        if key is not None:
            body["idempotency_key"] = key
        result = await self.call(conn, "job.submit", body)
        if result is None:
            return None
        self.submitted += not result.get("replayed", False)
        job: dict[str, Any] = result["job"]
        return job

    async def until(self, conn: Connection, job_id: str, states: set[str]) -> dict[str, Any]:
        """job.get once a second until the job is in one of `states` (or the run ends)."""
        while True:
            result = await self.call(conn, "job.get", {"id": job_id})
            if result is None:
                return {}
            job: dict[str, Any] = result["job"]
            if job["state"] in states or self.stop.is_set():
                return job
            await asyncio.sleep(1.0)

    async def poll_to_end(self, conn: Connection, job_id: str) -> None:
        if (await self.until(conn, job_id, FINAL)).get("state") not in FINAL:
            return
        self.finished += 1
        detail = await self.call(conn, "job.get", {"id": job_id})
        if detail and detail["attempts"]:
            started = datetime.fromisoformat(detail["attempts"][0]["started_at"])
            created = datetime.fromisoformat(detail["job"]["created_at"])
            self.to_start.append((started - created).total_seconds())

    def take(self) -> dict[str, list[float]]:
        taken, self.latencies = self.latencies, defaultdict(list)
        if self.to_start:
            taken["submit -> start"], self.to_start = self.to_start, []
        return taken


async def ci_client(load: Load, n: int) -> None:
    conn = await Connection.open(load.sock)
    while not load.stop.is_set():
        key = f"ci-{n}-{next(load.keys)}-{uuid.uuid4().hex[:8]}"
        job = await load.submit(conn, "hello", {"name": f"ci {n}"}, key)
        if job is not None:
            await load.poll_to_end(conn, job["id"])
            if random.random() < 0.2:  # a CI retrying its request: the same job, replayed
                await load.submit(conn, "hello", {"name": f"ci {n}"}, key)
        await asyncio.sleep(random.uniform(0.5, 2.0))
    await conn.close()


async def bursts(load: Load, size: int) -> None:
    """Every minute `size` submits over 5 connections at once; each connection then polls its
    share of the jobs, one job.get per unfinished job once a second. New connections each
    burst: automd closes a connection idle for a minute (`[server] idle_timeout_seconds`)."""

    async def share(count: int) -> None:
        conn = await Connection.open(load.sock)
        ids = []
        for i in range(count):
            key = f"burst-{next(load.keys)}-{uuid.uuid4().hex[:8]}"
            job = await load.submit(conn, "hello", {"name": f"burst {i}"}, key)
            if job is not None:
                ids.append(job["id"])
        while ids and not load.stop.is_set():
            await asyncio.sleep(1.0)
            for job_id in list(ids):
                result = await load.call(conn, "job.get", {"id": job_id})
                if result is None or result["job"]["state"] in FINAL:
                    ids.remove(job_id)
                    load.finished += result is not None
        await conn.close()

    while not load.stop.is_set():
        busy = asyncio.gather(*(share(size // 5 + (i < size % 5)) for i in range(5)))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(load.stop.wait(), 60.0)
        await busy  # a burst not drained within the minute delays the next one


async def now_and_then(
    load: Load, seconds: tuple[float, float], params: dict[str, Any]
) -> AsyncIterator[tuple[Connection, dict[str, Any]]]:
    """Every `seconds` (a random span) a `long` job submitted on a new connection (automd
    closes idle ones), given to the caller with that connection, closed after."""
    while not load.stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(load.stop.wait(), random.uniform(*seconds))
        if load.stop.is_set():
            return
        conn = await Connection.open(load.sock)
        try:
            job = await load.submit(conn, "long", params)
            if job is not None:
                yield conn, job
        finally:
            await conn.close()


async def operator(load: Load, c: Container) -> None:
    """Follows a 5-step job's logs to its end with `automctl logs -f`."""
    async for conn, job in now_and_then(load, (40, 80), {"steps": 5, "interval": 1}):
        started = time.perf_counter()
        proc = c.popen([AUTOMCTL, "logs", "-f", job["id"]])
        out, _err = await asyncio.to_thread(proc.communicate)
        load.latencies["logs -f (whole job)"].append(time.perf_counter() - started)
        if proc.returncode != 0 or out.count(b"step ") != 5:
            load.errors["logs -f"] += 1
        await load.poll_to_end(conn, job["id"])


async def canceller(load: Load) -> None:
    """A 30-step job: running, cancelled, retried, running, cancelled."""
    async for conn, job in now_and_then(load, (20, 40), {"steps": 30, "interval": 1}):
        for round_ in range(2):
            await load.until(conn, job["id"], {"running"} | FINAL)
            await load.call(conn, "job.cancel", {"id": job["id"]})
            job = await load.until(conn, job["id"], FINAL) or job  # noqa: PLW2901
            if round_ == 0:
                await load.call(conn, "job.retry", {"id": job["id"]})
        load.finished += 1


def memory_report(c: Container, heading: str) -> None:
    """Asks automd for a report (automd/memreport.py) and returns once it is in the journal:
    with thousands of traced allocations, taking the snapshot takes seconds."""

    def logged() -> int:
        found = c.run(["journalctl", "--no-pager", "-o", "cat", "-u", "automd.service",
                       "-g", heading], check=False)  # fmt: skip
        return found.stdout.count(heading.encode())

    before = logged()
    c.run(["systemctl", "kill", "--kill-whom=main", "--signal=SIGUSR2", "automd.service"])
    deadline = time.monotonic() + 300
    while logged() == before:
        if time.monotonic() > deadline:
            raise RuntimeError(f"automd logged no {heading!r} report within 300 s")
        time.sleep(1)


def main_pid(c: Container) -> int:
    return int(c.show("automd.service", "MainPID")["MainPID"])


def process_figures(c: Container) -> dict[str, Any]:
    """automd's MainPID, open fds and resident memory in MiB, through the container's /proc:
    VmRSS, and its parts RssAnon (heap: what a leak grows) and RssFile (mapped files, such as
    journal files its readers map, which the kernel can drop)."""
    pid = main_pid(c)
    proc = c.root / "proc" / str(pid)
    kib = {fields[0].rstrip(":"): int(fields[1]) for fields in
           (line.split() for line in (proc / "status").read_text().splitlines())
           if fields and fields[0] in ("VmRSS:", "RssAnon:", "RssFile:")}  # fmt: skip
    return {"pid": pid, "rss_mib": round(kib["VmRSS"] / 1024, 2),
            "cpu_s": cpu_seconds(proc / "stat"),
            "anon_mib": round(kib["RssAnon"] / 1024, 2),
            "file_mib": round(kib["RssFile"] / 1024, 2),
            "fds": sum(1 for _ in (proc / "fd").iterdir())}  # fmt: skip


def store_figures(c: Container) -> dict[str, Any]:
    db = c.root / "var/lib/automd/automd.db"
    wal = db.with_name("automd.db-wal")
    figures: dict[str, Any] = {
        "db_mb": db.stat().st_size / 1e6 if db.exists() else 0.0,
        "wal_mb": wal.stat().st_size / 1e6 if wal.exists() else 0.0,
    }
    # Counted inside the container: SQLite resolves /proc/PID/root to the host's / and would
    # miss the file from here.
    counted = c.run(["/usr/bin/python3", "-c", COUNT_JOBS], check=False)
    if counted.returncode == 0:
        states = json.loads(counted.stdout)
        figures["jobs_in_db"] = sum(states.values())
        figures["finished_in_db"] = sum(n for state, n in states.items() if state in FINAL)
        # Jobs waiting for a run slot or for systemd to start them: the queue's depth.
        figures["queued"] = states.get("queued", 0) + states.get("starting", 0)
    else:
        figures["db_error"] = counted.stderr.decode(errors="replace")[-200:]
    return figures


def _pick(ordered: list[float], q: float) -> float:
    return round(ordered[min(len(ordered) - 1, int(len(ordered) * q))] * 1e3, 2)


def percentiles(latencies: dict[str, list[float]]) -> dict[str, dict[str, float]]:
    out = {}
    for method, values in sorted(latencies.items()):
        ordered = sorted(values)
        out[method] = {"n": len(ordered), "p50_ms": _pick(ordered, 0.5),
                       "p95_ms": _pick(ordered, 0.95), "p99_ms": _pick(ordered, 0.99),
                       "max_ms": _pick(ordered, 1.0)}  # fmt: skip
    return out


def loadavg() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


async def sampler(load: Load, c: Container, started: float, samples: list[dict[str, Any]],
                  path: Path) -> None:  # fmt: skip
    whole: dict[str, list[float]] = defaultdict(list)
    while True:
        try:
            await asyncio.wait_for(load.stop.wait(), SAMPLE_SECONDS)
            stopping = True
        except TimeoutError:
            stopping = False
        taken = load.take()
        for method, values in taken.items():
            whole[method] += values
        sample = {"t": round(time.monotonic() - started, 1),
                  **await asyncio.to_thread(process_figures, c),
                  **await asyncio.to_thread(store_figures, c),
                  "submitted": load.submitted, "finished": load.finished,
                  "errors": dict(load.errors), "load1": loadavg(),
                  "latency": percentiles(taken)}  # fmt: skip
        samples.append(sample)
        print(json.dumps({k: v for k, v in sample.items() if k != "latency"}), flush=True)
        write_results(path, samples, percentiles(whole))
        if stopping:
            return


def write_results(path: Path, samples: list[dict[str, Any]], whole: dict[str, Any]) -> None:
    path.write_text(json.dumps({"config": CONFIG, "samples": samples, "whole_run": whole},
                               indent=1))  # fmt: skip
    columns = ["t", "pid", "rss_mib", "anon_mib", "file_mib", "fds", "cpu_s", "db_mb", "wal_mb",
               "jobs_in_db", "finished_in_db", "queued", "submitted", "finished",
               "load1"]  # fmt: skip
    with path.with_suffix(".csv").open("w", newline="") as f:
        writer = csv.writer(f)
        methods = sorted({m for s in samples for m in s["latency"]})
        writer.writerow(
            columns + [f"{m} p50_ms" for m in methods] + [f"{m} p99_ms" for m in methods]
        )
        for s in samples:
            lat = s["latency"]
            writer.writerow([s.get(col, "") for col in columns]
                            + [lat.get(m, {}).get("p50_ms", "") for m in methods]
                            + [lat.get(m, {}).get("p99_ms", "") for m in methods])  # fmt: skip


def summarize(path: Path) -> None:
    """Start, end and max of each figure sampled, and the whole run's latency per method."""
    data = json.loads(path.read_text())
    samples = data["samples"]
    for key in (
        "rss_mib",
        "anon_mib",
        "file_mib",
        "fds",
        "db_mb",
        "wal_mb",
        "jobs_in_db",
        "queued",
        "load1",
    ):
        values = [s[key] for s in samples if key in s]
        print(f"{key:12} start {values[0]:>8} end {values[-1]:>8} max {max(values):>8} "
              f"min {min(values):>8}")  # fmt: skip
    last = samples[-1]
    if "cpu_s" in last:
        busy = (last["cpu_s"] - samples[0]["cpu_s"]) / max(last["t"] - samples[0]["t"], 1e-9)
        print(f"automd CPU: {100 * busy:.1f}% of one CPU on average")
    print(f"jobs: {last['submitted']} submitted, {last['finished']} finished; "
          f"errors: {last['errors']}")  # fmt: skip
    for method, figures in data["whole_run"].items():
        print(f"{method:22} {figures}")


def plot(path: Path, png: Path) -> None:
    import matplotlib  # noqa: PLC0415 (only for the plot)

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    data = json.loads(path.read_text())
    samples = data["samples"]
    minutes = [s["t"] / 60 for s in samples]
    fig, axes = plt.subplots(5, 1, figsize=(9, 13), sharex=True)
    axes[0].plot(minutes, [s["rss_mib"] for s in samples], label="automd VmRSS (MiB)")
    for key, label in (("anon_mib", "of which RssAnon"), ("file_mib", "of which RssFile")):
        if all(key in s for s in samples):  # runs before these were sampled lack them
            axes[0].plot(minutes, [s[key] for s in samples], label=f"{label} (MiB)")
    axes[0].plot(minutes, [s["fds"] for s in samples], label="automd open fds")
    cpu = [(b["t"] / 60, 100 * (b["cpu_s"] - a["cpu_s"]) / (b["t"] - a["t"]))
           for a, b in itertools.pairwise(samples) if "cpu_s" in a and "cpu_s" in b]  # fmt: skip
    if cpu:
        axes[0].plot(*zip(*cpu, strict=True), label="automd CPU (% of one CPU)")
    axes[0].set_ylim(bottom=0)
    axes[1].plot(minutes, [s["db_mb"] for s in samples], label="automd.db (MB)")
    axes[1].plot(minutes, [s["wal_mb"] for s in samples], label="automd.db-wal (MB)")
    axes[1].set_ylim(bottom=0)
    axes[2].plot(minutes, [s.get("jobs_in_db", 0) for s in samples], label="jobs in the db")
    axes[2].plot(minutes, [s["finished"] for s in samples], label="jobs finished so far")
    methods = sorted({m for s in samples for m in s["latency"]}
                     - {"logs -f (whole job)", "submit -> start"})  # fmt: skip
    for method in methods:
        points = [(s["t"] / 60, s["latency"][method]["p99_ms"]) for s in samples
                  if method in s["latency"]]  # fmt: skip
        axes[3].plot(*zip(*points, strict=True), label=f"{method} p99 (ms)")
    axes[3].set_yscale("log")
    _plot_queue(axes[4], samples)
    axes[4].set_xlabel("minutes")
    for ax in axes:
        ax.legend(loc="upper left", fontsize=8)
        ax.grid(alpha=0.3)
    fig.suptitle(f"automd soak, {CONFIG.strip().replace(chr(10), ' ')}", fontsize=9)
    fig.tight_layout()
    fig.savefig(png, dpi=80)
    print(f"plot: {png}")


def _plot_queue(ax: Any, samples: list[dict[str, Any]]) -> None:
    """Queue depth, and submit -> start p50/p99 of the jobs that finished in each interval."""
    minutes = [s["t"] / 60 for s in samples if "queued" in s]
    ax.plot(minutes, [s["queued"] for s in samples if "queued" in s],
            label="jobs queued or starting")  # fmt: skip
    for q in ("p50_ms", "p99_ms"):
        points = [(s["t"] / 60, s["latency"]["submit -> start"][q] / 1000) for s in samples
                  if "submit -> start" in s["latency"]]  # fmt: skip
        if points:
            ax.plot(*zip(*points, strict=True), label=f"submit -> start {q[:3]} (s)")
    ax.set_ylim(bottom=0)


async def soak(args: argparse.Namespace, path: Path) -> None:
    samples: list[dict[str, Any]] = []
    with Container(CHECKOUT, log_path=Path("/tmp/automd-soak-nspawn.log")) as c:
        install_automd(c)
        c.write_file("/etc/automd/automd.toml", CONFIG)
        if args.tracemalloc:  # automd/memreport.py: reports on SIGUSR2, into the journal
            dropin = f"[Service]\nEnvironment=PYTHONTRACEMALLOC={args.tracemalloc}\n"
            c.write_file("/etc/systemd/system/automd.service.d/20-tracemalloc.conf", dropin)
            c.run(["systemctl", "daemon-reload"])
        load = Load(c.root / "run/automd.sock")
        first = await Connection.open(load.sock)  # socket-activates automd with CONFIG
        assert "result" in await first.call("system.version"), "automd did not answer"
        await first.close()
        started = time.monotonic()
        tasks = [asyncio.create_task(ci_client(load, n)) for n in range(args.clients)]
        tasks += [asyncio.create_task(bursts(load, args.burst)),
                  asyncio.create_task(operator(load, c)),
                  asyncio.create_task(canceller(load))]  # fmt: skip
        watch = asyncio.create_task(sampler(load, c, started, samples, path))
        if args.tracemalloc:
            await asyncio.to_thread(memory_report, c, "baseline taken")  # before growth
        await asyncio.wait([watch], timeout=args.minutes * 60)
        if watch.done():  # before the stop it only ends by failing: say so now, not at the end
            watch.result()
        if args.tracemalloc:
            await asyncio.to_thread(memory_report, c, "growth since the baseline")
        load.stop.set()
        await asyncio.wait(tasks, timeout=60)
        await watch
        journal = c.run(["journalctl", "--no-pager", "-u", "automd.service", "-g",
                         "retention|reconciled|Traceback|ERROR|memory report"],
                        check=False)  # fmt: skip
        lines = journal.stdout.decode(errors="replace").splitlines()
        print("\n".join(lines[-40:]))
        data = json.loads(await asyncio.to_thread(path.read_text))
        data["journal"] = lines[-200:]
        await asyncio.to_thread(path.write_text, json.dumps(data, indent=1))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--clients", type=int, default=4, help="CI-like clients")
    parser.add_argument("--burst", type=int, default=50, help="submits in each minute's burst")
    parser.add_argument("--png", type=Path, default=CHECKOUT / "bench/soak.png")
    parser.add_argument("--tracemalloc", type=int, default=0, metavar="FRAMES",
                        help="trace automd's allocations; its growth by site goes to the "
                        "journal lines kept in the results (slows automd)")  # fmt: skip
    parser.add_argument("--plot", type=Path, help="only plot this run's JSON")
    args = parser.parse_args()
    if args.plot is None:
        RESULTS.mkdir(exist_ok=True)
        path = RESULTS / f"soak-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
        print(f"samples: {path}", flush=True)
        asyncio.run(soak(args, path))
        args.plot = path
    summarize(args.plot)
    try:
        plot(args.plot, args.png)
    except ImportError:
        print("no matplotlib: .venv/bin/pip install matplotlib, then --plot", args.plot)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
