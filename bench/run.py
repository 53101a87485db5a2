"""Load automd, a FastAPI and a Go reference server in one run; print ratios, RSS, cold start."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from types import FrameType
from typing import Any

from automd.ctl.client import ClientError, RemoteError, RpcClient
from bench import footprint, gobuild
from bench.reference_server import DB_FILENAME

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"
RESULTS = BENCH / "results"
VENV_BIN = Path(sys.executable).parent

SERVERS = ("automd", "fastapi", "go")
REFERENCES = {"fastapi": "FastAPI", "go": "Go"}
SCENARIOS = ("job.get", "job.submit", "job.submit+key")
CEILING_SERVERS = ("aiohttp", "asyncio")
SERVER_CPU = "0"
LOADGEN_CPU = "1"

# Issue 17's targets, reported against (not asserted).
RSS_TARGET_MIB = 40.0
COLD_START_TARGET_MS = 250.0
GET_VS_GO_TARGET = 0.3
GET_P99_TARGET_US = 2_000.0
SUBMIT_VS_GO_TARGET = 0.5

# What every server is asked to time its cold start: an unknown job, answered with an error.
PROBE_ID = "0" * 26
_PROBE_BODY = json.dumps(
    {"jsonrpc": "2.0", "method": "job.get", "params": {"id": PROBE_ID}, "id": 1}
)
PROBE_REQUEST = (
    b"POST /rpc HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
    b"Content-Length: %d\r\n\r\n%s" % (len(_PROBE_BODY), _PROBE_BODY.encode())
)

DEFINITION = """\
description = "Benchmark job; never started here (no systemd as PID 1)"
executable = "/bin/true"
argv = ["{tag}"]

[parameters.tag]
type = "string"
max_length = 64
"""

NO_SYSTEMD_NOTE = (
    "No systemd as PID 1 on this host: submitted jobs stay queued (never started). That is "
    "fine here, the benchmark measures the API hot paths (HTTP, JSON-RPC, validation, SQLite)."
)


# --- processes -----------------------------------------------------------------------------


class Processes:
    """Every child this run started, stopped by PID (SIGTERM, then SIGKILL) on the way out."""

    def __init__(self) -> None:
        self._children: list[subprocess.Popen[bytes]] = []

    def start(
        self, argv: list[str], *, log: Path, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        with log.open("wb") as out:
            # A session of its own: Ctrl-C reaches only us, and we stop the servers in order.
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=REPO,
                start_new_session=True,
            )
        self._children.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
        if proc in self._children:
            self._children.remove(proc)

    def stop_all(self) -> None:
        for proc in list(self._children):
            with contextlib.suppress(OSError):
                self.stop(proc)


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def pinned(cpu: str, argv: list[str]) -> list[str]:
    # taskset execs the command, so the PID we hold is the server's own (for -server-pid).
    if pinning_available():
        return ["taskset", "-c", cpu, *argv]
    return argv


def pinning_available() -> bool:
    return shutil.which("taskset") is not None and (os.cpu_count() or 1) >= 2


def rpc(sock: Path, method: str, params: dict[str, Any], timeout: float = 10.0) -> Any:
    """One JSON-RPC call on a fresh connection, with automctl's client: its result."""
    return RpcClient(str(sock), timeout=timeout).call(method, params)


def wait_ready(sock: Path, proc: subprocess.Popen[bytes], log: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{_tail(log)}")
        try:
            rpc(sock, "job.get", {"id": PROBE_ID}, timeout=2)
        except RemoteError:
            return  # any JSON-RPC reply will do; an unknown job id answers 1002
        except ClientError:
            pass  # not answering yet
        else:
            return
        time.sleep(0.05)
    raise RuntimeError(f"server not answering on {sock} after {timeout}s:\n{_tail(log)}")


def _tail(log: Path, lines: int = 20) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


# --- loadgen -------------------------------------------------------------------------------


def ensure_loadgen(explicit: Path | None) -> Path:
    return explicit if explicit is not None else gobuild.build("loadgen")


@dataclass
class Load:
    loadgen: Path
    clients: int
    duration: float
    warmup: float
    cpu: str | None = LOADGEN_CPU  # None: not pinned (it then shares the CPUs with the rest)

    def run(
        self,
        sock: Path,
        bodies: Path,
        server_pid: int,
        *,
        clients: int | None = None,
        count: int | None = None,
        duration: float | None = None,
        warmup: float | None = None,
    ) -> dict[str, Any]:
        argv = [
            str(self.loadgen), "-unix", str(sock), "-path", "/rpc",
            "-c", str(clients or self.clients), "-body", str(bodies),
            "-server-pid", str(server_pid),
            "-warmup", f"{self.warmup if warmup is None else warmup}s",
        ]  # fmt: skip
        if count is not None:
            argv += ["-n", str(count)]
        else:
            argv += ["-d", f"{duration or self.duration}s"]
        command = pinned(self.cpu, argv) if self.cpu is not None else argv
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        result: dict[str, Any] = json.loads(done.stdout)
        return result


def write_bodies(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def get_bodies(path: Path, job_id: str) -> Path:
    call = {"jsonrpc": "2.0", "method": "job.get", "params": {"id": job_id}, "id": 0}
    return write_bodies(path, [json.dumps(call).replace('"id": 0}', '"id": {{N}}}')])


def submit_bodies(path: Path, key_prefix: str | None = None, definition: str = "") -> Path:
    """A submit; loadgen's {{N}} (a number unique per request of a run) makes tags and keys
    distinct, so that KEY_PREFIX must differ between the runs sent to one server. With a
    `definition`, a submit of it without parameters instead of this file's own."""
    params: dict[str, Any] = {"definition": definition or "bench"}
    if not definition:
        params["params"] = {"tag": "t-N"}
    if key_prefix is not None:
        params["idempotency_key"] = f"{key_prefix}-N"
    call = json.dumps({"jsonrpc": "2.0", "method": "job.submit", "params": params, "id": 0})
    line = call.replace("-N", "-{{N}}").replace('"id": 0}', '"id": {{N}}}')
    return write_bodies(path, [line])


# --- observations --------------------------------------------------------------------------


def count_jobs(db: Path) -> int:
    # Read-only, from outside the server: what is committed, not what was acknowledged.
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return int(conn.execute("SELECT count(*) FROM jobs").fetchone()[0])
    finally:
        conn.close()


def write_bytes(pid: int) -> int:
    """Bytes the process caused to be written to storage (/proc/PID/io), -1 if unreadable."""
    try:
        for line in Path(f"/proc/{pid}/io").read_text().splitlines():
            if line.startswith("write_bytes:"):
                return int(line.split()[1])
    except OSError:
        pass
    return -1


def sqlite_baseline(directory: Path, commits: int = 1000) -> dict[str, float]:
    """This disk's SQLite floor: fsynced one-row commits/s, and rows/s at ten rows a commit."""
    conn = sqlite3.connect(directory / "baseline.db", isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("CREATE TABLE t (v TEXT)")
        row = ("x" * 400,)
        start = time.perf_counter()
        for _ in range(commits):
            conn.execute("BEGIN")
            conn.execute("INSERT INTO t VALUES (?)", row)
            conn.execute("COMMIT")
        single = commits / (time.perf_counter() - start)
        start = time.perf_counter()
        for _ in range(commits // 10):
            conn.execute("BEGIN")
            conn.executemany("INSERT INTO t VALUES (?)", [row] * 10)
            conn.execute("COMMIT")
        grouped = (commits // 10) * 10 / (time.perf_counter() - start)
    finally:
        conn.close()
    return {"commits_per_s": single, "rows_per_s_10_per_commit": grouped}


# --- one server under load -----------------------------------------------------------------


@dataclass
class Scenario:
    name: str
    reps: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def median(self, key: str) -> float:
        return float(statistics.median(r[key] for r in self.reps))


@dataclass
class ServerRun:
    name: str
    scenarios: dict[str, Scenario] = field(default_factory=dict)
    burst: dict[str, Any] = field(default_factory=dict)
    # Medians of the cold-start runs: spawn to first reply (ms), VmRSS after it (MiB).
    cold_start_ms: float = float("nan")
    idle_rss_mib: float = float("nan")


@dataclass
class Server:
    name: str
    sock: Path
    db: Path
    proc: subprocess.Popen[bytes]
    log: Path


@dataclass
class Launch:
    """How to start one server in a directory of its own: the command and its files."""

    name: str
    argv: list[str]
    sock: Path
    db: Path
    env: dict[str, str] | None = None


# Each launcher makes HOME (a fresh directory) the server's: state, socket, config.
Launcher = Callable[[Path], Launch]


def automd_launch(home: Path, definitions: Path) -> Launch:
    config = home / "automd.toml"
    # Enough room for every submit of the run; the default (100000) would answer 1005.
    config.write_text(
        f'[jobs]\ndefinitions_directory = "{definitions}"\nmax_unfinished = 10000000\n'
    )
    sock, state = home / "automd.sock", home / "state"
    argv = [
        str(VENV_BIN / "automd"), "--listen", str(sock), "--state-dir", str(state),
        "--config", str(config),
    ]  # fmt: skip
    env = {name: value for name, value in os.environ.items() if name != "NOTIFY_SOCKET"}
    return Launch("automd", argv, sock, state / "automd.db", env)


def fastapi_launch(home: Path, definitions: Path) -> Launch:
    state, sock = home / "state", home / "fastapi.sock"
    env = {
        **os.environ,
        "BENCH_STATE_DIR": str(state),
        "BENCH_DEFINITIONS_DIR": str(definitions),
    }
    argv = [
        str(VENV_BIN / "uvicorn"), "--factory", "bench.reference_server:create_app",
        "--app-dir", str(REPO), "--uds", str(sock), "--workers", "1",
        # As production runs it (uvicorn[standard]); named so that a missing one fails.
        "--loop", "uvloop", "--http", "httptools",
        "--no-access-log", "--log-level", "warning",
    ]  # fmt: skip
    return Launch("fastapi", argv, sock, state / DB_FILENAME, env)


def go_launch(home: Path, definitions: Path, binary: Path) -> Launch:
    sock, db = home / "go.sock", home / "state" / "goref.db"
    return Launch("go", gobuild.goref_argv(binary, sock, db, definitions), sock, db)


def start(procs: Processes, launch: Launch, log: Path) -> Server:
    proc = procs.start(pinned(SERVER_CPU, launch.argv), log=log, env=launch.env)
    wait_ready(launch.sock, proc, log)
    return Server(launch.name, launch.sock, launch.db, proc, log)


def measure_footprint(launcher: Launcher, work: Path, runs: int) -> tuple[float, float]:
    """Medians over RUNS fresh starts (pinned like the load runs): cold start ms, idle RSS MiB."""
    colds, rss = [], []
    for run in range(runs):
        home = work / f"cold-{run}"
        home.mkdir(parents=True)
        launch = launcher(home)
        argv = pinned(SERVER_CPU, launch.argv)
        start = footprint.cold_start(
            argv, launch.sock, cwd=REPO, env=launch.env, request=PROBE_REQUEST
        )
        colds.append(start.seconds * 1000)
        rss.append(start.rss_mib)
        shutil.rmtree(home, ignore_errors=True)
    return statistics.median(colds), statistics.median(rss)


def measure(
    server: Server, load: Load, work: Path, *, reps: int, burst: int, burst_clients: int
) -> ServerRun:
    out = ServerRun(server.name)
    pid = server.proc.pid
    seeded = rpc(server.sock, "job.submit", {"definition": "bench", "params": {"tag": "seed"}})
    seed_id = seeded["job"]["id"]
    gets = get_bodies(work / f"{server.name}-get.txt", seed_id)
    submits = submit_bodies(work / f"{server.name}-submit.txt")

    # Warm-up: imports, caches, the writer thread, SQLite's page cache.
    load.run(server.sock, gets, pid, duration=2, warmup=0.5)
    load.run(server.sock, submits, pid, duration=2, warmup=0.5)

    def run_submits(name: str, bodies_for: Callable[[int], Path]) -> None:
        scenario = out.scenarios[name] = Scenario(name)
        for rep in range(reps):
            bodies = bodies_for(rep)
            before, written = count_jobs(server.db), write_bytes(pid)
            result = load.run(server.sock, bodies, pid)
            stored = count_jobs(server.db) - before
            acked = result["ok_total"]
            result["rows_stored"] = stored
            result["kib_written_per_submit"] = (write_bytes(pid) - written) / 1024 / max(acked, 1)
            scenario.reps.append(result)
            if stored != acked:
                scenario.problems.append(f"rep {rep}: {acked} acknowledged, {stored} rows stored")
            if result["errors"]:
                scenario.problems.append(f"rep {rep}: {result['errors']} errors")

    scenario = out.scenarios["job.get"] = Scenario("job.get")
    for rep in range(reps):
        result = load.run(server.sock, gets, pid)
        scenario.reps.append(result)
        if result["errors"]:
            scenario.problems.append(f"rep {rep}: {result['errors']} errors")

    run_submits("job.submit", lambda rep: submits)

    def keyed(rep: int) -> Path:
        path = work / f"{server.name}-submit-key-{rep}.txt"
        return submit_bodies(path, key_prefix=f"bench{rep}")

    run_submits("job.submit+key", keyed)

    burst_bodies = submit_bodies(work / f"{server.name}-burst.txt")
    before = count_jobs(server.db)
    result = load.run(server.sock, burst_bodies, pid, clients=burst_clients, count=burst, warmup=0)
    result["rows_stored"] = count_jobs(server.db) - before
    out.burst = result
    return out


def measure_ceiling(procs: Processes, load: Load, work: Path, kind: str, reps: int) -> Scenario:
    """job.get's load against a server that only answers (bench/ceiling_servers.py)."""
    sock, log = work / f"ceiling-{kind}.sock", work / f"ceiling-{kind}.log"
    argv = [str(VENV_BIN / "python"), "-m", "bench.ceiling_servers", kind, str(sock)]
    proc = procs.start(pinned(SERVER_CPU, argv), log=log)
    try:
        wait_ready(sock, proc, log)
        bodies = get_bodies(work / "ceiling-get.txt", PROBE_ID)
        load.run(sock, bodies, proc.pid, duration=2, warmup=0.5)
        scenario = Scenario(kind)
        for _ in range(reps):
            scenario.reps.append(load.run(sock, bodies, proc.pid))
        return scenario
    finally:
        procs.stop(proc)


# --- report --------------------------------------------------------------------------------


def _ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def report(
    runs: dict[str, ServerRun],
    ceilings: dict[str, Scenario],
    baseline: dict[str, float],
    args: argparse.Namespace,
) -> tuple[str, dict[str, Any]]:
    automd, go = runs["automd"], runs["go"]
    lines = [
        f"automd API benchmark, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        f"host: {os.cpu_count()} CPUs, {platform.platform()}, Python {platform.python_version()}, "
        f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} at the end",
        f"load: bench/loadgen closed loop, HTTP/1.1 keep-alive over a Unix socket, {args.clients} "
        f"connections, {args.duration:g}s measured after {args.warmup:g}s warm-up, "
        f"median of {args.reps} runs; server on CPU {SERVER_CPU}, loadgen on CPU {LOADGEN_CPU}"
        + ("" if pinning_available() else " (NOT pinned: taskset or a 2nd CPU missing)"),
        "servers: automd; fastapi = bench/reference_server.py on uvicorn (uvloop, httptools); "
        "go = bench/goref (fasthttp, database/sql + go-sqlite3)",
        f"SQLite on this disk: {baseline['commits_per_s']:,.0f} fsynced commits/s (one row "
        f"each), {baseline['rows_per_s_10_per_commit']:,.0f} rows/s at ten rows per commit",
        NO_SYSTEMD_NOTE,
        "",
        f"{'scenario':<16}{'server':<9}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}"
        f"{'srv CPU%':>10}{'other CPU%':>11}{'KiB/submit':>12}  notes",
    ]
    for name in SCENARIOS:
        for run in runs.values():
            s = run.scenarios[name]
            kib = f"{s.median('kib_written_per_submit'):.1f}" if name != "job.get" else ""
            lines.append(
                f"{name:<16}{run.name:<9}{s.median('rps'):>9,.0f}"
                f"{s.median('p50_us') / 1000:>9.2f}{s.median('p99_us') / 1000:>9.2f}"
                f"{s.median('server_cpu_pct'):>10.0f}{s.median('other_cpu_pct'):>11.0f}"
                f"{kib:>12}  {'; '.join(s.problems)}"
            )
    for run in runs.values():
        b = run.burst
        lines.append(
            f"{'burst':<16}{run.name:<9}{b['rps']:>9,.0f}{b['p50_us'] / 1000:>9.2f}"
            f"{b['p99_us'] / 1000:>9.2f}{b['server_cpu_pct']:>10.0f}{b['other_cpu_pct']:>11.0f}"
            f"{'':>12}  {b['ok_total']:,} submits from {args.burst_clients} connections in "
            f"{b['window_s']:.2f}s; {b['rows_stored']:,} rows in SQLite"
        )

    def rate(run: ServerRun, name: str) -> float:
        return run.burst["rps"] if name == "burst" else run.scenarios[name].median("rps")

    ratios = {
        ref: {
            name: _ratio(rate(automd, name), rate(runs[ref], name))
            for name in (*SCENARIOS, "burst")
        }
        for ref in REFERENCES
    }
    lines.append("")
    lines += [
        f"automd / {label}: " + ", ".join(f"{name} {r:.2f}x" for name, r in ratios[ref].items())
        for ref, label in REFERENCES.items()
    ]
    lines += [
        "",
        f"footprint (median of {args.cold_runs} fresh starts, pinned to CPU {SERVER_CPU}): "
        "cold start = spawn to the first reply, idle RSS = VmRSS after 20 more calls",
        f"{'server':<9}{'cold start ms':>15}{'idle RSS MiB':>14}",
        *(
            f"{run.name:<9}{run.cold_start_ms:>15.0f}{run.idle_rss_mib:>14.1f}"
            for run in runs.values()
        ),
        "",
        "job.get against servers that only answer (bench/ceiling_servers.py, same load): "
        + ", ".join(
            f"{kind} {c.median('rps'):,.0f}/s "
            f"(automd {rate(automd, 'job.get') / c.median('rps'):.0%} of it)"
            for kind, c in ceilings.items()
        ),
    ]

    get_p99 = automd.scenarios["job.get"].median("p99_us")
    rss, cold = automd.idle_rss_mib, automd.cold_start_ms
    get_vs_go, submit_vs_go = ratios["go"]["job.get"], ratios["go"]["job.submit"]
    burst_acked = automd.burst["ok_total"]
    targets = {
        "idle_rss": rss <= RSS_TARGET_MIB,
        "cold_start": cold <= COLD_START_TARGET_MS,
        "job.get": get_vs_go >= GET_VS_GO_TARGET and get_p99 <= GET_P99_TARGET_US,
        "job.submit": submit_vs_go >= SUBMIT_VS_GO_TARGET,
        "burst": automd.burst["errors"] == 0
        and burst_acked >= args.burst
        and automd.burst["rows_stored"] == burst_acked,
    }
    lines += [
        "",
        "targets (issue 17, reported, not asserted):",
        f"  {verdict(targets['idle_rss'])}  automd idle RSS <= {RSS_TARGET_MIB:g} MiB: "
        f"{rss:.1f} MiB",
        f"  {verdict(targets['cold_start'])}  automd cold start <= {COLD_START_TARGET_MS:g} ms: "
        f"{cold:.0f} ms",
        f"  {verdict(targets['job.get'])}  job.get >= {GET_VS_GO_TARGET}x Go with p99 <= "
        f"{GET_P99_TARGET_US / 1000:g} ms: {get_vs_go:.2f}x ({rate(automd, 'job.get'):,.0f} vs "
        f"{rate(go, 'job.get'):,.0f}/s), p99 {get_p99 / 1000:.2f} ms",
        f"  {verdict(targets['job.submit'])}  durable job.submit >= {SUBMIT_VS_GO_TARGET}x Go: "
        f"{submit_vs_go:.2f}x ({rate(automd, 'job.submit'):,.0f} vs "
        f"{rate(go, 'job.submit'):,.0f}/s;"
        f" with idempotency keys {ratios['go']['job.submit+key']:.2f}x)",
        f"  {verdict(targets['burst'])}  burst of {args.burst:,} submits absorbed durably: "
        f"{burst_acked:,} acknowledged, {automd.burst['rows_stored']:,} rows stored, "
        f"{automd.burst['window_s']:.2f}s ({automd.burst['rps']:,.0f} submits/s)",
        "",
        "KiB/submit: bytes the server wrote to storage per acknowledged submit (/proc/PID/io); "
        "fewer means more submits shared each commit (group commit).",
        "other CPU%: CPU used meanwhile by processes other than server and loadgen (noise).",
    ]
    data = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "args": vars(args) | {"loadgen": str(args.loadgen)},
        "loadavg": os.getloadavg(),
        "sqlite_baseline": baseline,
        "servers": {
            run.name: {
                "scenarios": {
                    s.name: {"reps": s.reps, "problems": s.problems} for s in run.scenarios.values()
                },
                "burst": run.burst,
                "cold_start_ms": run.cold_start_ms,
                "idle_rss_mib": run.idle_rss_mib,
            }
            for run in runs.values()
        },
        "ceilings": {kind: c.reps for kind, c in ceilings.items()},
        "ratios": ratios,
        "targets": targets,
    }
    return "\n".join(lines), data


# --- main ----------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds measured per run")
    parser.add_argument("--clients", type=int, default=16, help="keep-alive connections")
    parser.add_argument("--reps", type=int, default=3, help="runs per measurement (median)")
    parser.add_argument("--burst", type=int, default=10_000, help="submits in the burst")
    parser.add_argument("--burst-clients", type=int, default=64)
    parser.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds per run")
    parser.add_argument("--cold-runs", type=int, default=5, help="fresh starts per server")
    parser.add_argument(
        "--quick", action="store_true", help="a smoke run: 2s, 1 rep, 2000 burst, 3 cold starts"
    )
    parser.add_argument("--loadgen", type=Path, help="a prebuilt loadgen binary")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args(argv)
    if args.quick:
        args.duration, args.reps, args.burst, args.cold_runs = 2.0, 1, 2_000, 3
    return args


@contextlib.contextmanager
def workdir(keep: bool) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="automd-bench-"))
    try:
        yield path
    finally:
        if keep:
            print(f"kept {path}", file=sys.stderr)
        else:
            shutil.rmtree(path, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.loadgen = ensure_loadgen(args.loadgen)
    # SIGTERM unwinds like Ctrl-C, so the finally blocks stop the servers and remove the files.
    signal.signal(signal.SIGTERM, _raise_interrupt)
    procs = Processes()
    load = Load(args.loadgen, args.clients, args.duration, args.warmup)
    try:
        with workdir(args.keep) as work:
            definitions = work / "jobs.d"
            definitions.mkdir()
            (definitions / "bench.toml").write_text(DEFINITION)
            baseline = sqlite_baseline(work)
            launchers: dict[str, Launcher] = {
                "automd": partial(automd_launch, definitions=definitions),
                "fastapi": partial(fastapi_launch, definitions=definitions),
                "go": partial(go_launch, definitions=definitions, binary=gobuild.build("goref")),
            }
            # Cold starts from byte-code, as the Debian package ships it (bench/footprint.py).
            footprint.compile_sources(REPO / "automd", REPO / "bench")
            runs: dict[str, ServerRun] = {}
            for name, launcher in launchers.items():
                print(f"measuring {name} ...", flush=True)
                home = work / name
                home.mkdir()
                server = start(procs, launcher(home), work / f"{name}.log")
                try:
                    runs[name] = measure(
                        server, load, work,
                        reps=args.reps, burst=args.burst, burst_clients=args.burst_clients,
                    )  # fmt: skip
                finally:
                    procs.stop(server.proc)
                runs[name].cold_start_ms, runs[name].idle_rss_mib = measure_footprint(
                    launcher, work / f"{name}-cold", args.cold_runs
                )
            ceilings = {}
            for kind in CEILING_SERVERS:
                print(f"measuring the {kind} ceiling ...", flush=True)
                ceilings[kind] = measure_ceiling(procs, load, work, kind, args.reps)
            text, data = report(runs, ceilings, baseline, args)
    except KeyboardInterrupt:
        print("interrupted; servers stopped, temporary files removed", file=sys.stderr)
        return 130
    except (RuntimeError, subprocess.CalledProcessError) as exc:
        detail = getattr(exc, "stderr", None) or ""
        print(f"benchmark failed: {exc}\n{detail}", file=sys.stderr)
        return 1
    finally:
        procs.stop_all()
    print()
    print(text)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "latest.json").write_text(json.dumps(data, indent=2) + "\n")
    print(f"\nraw results: {(RESULTS / 'latest.json').relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
