"""A/B: the server CPU per request of job.submit and job.get, for several checkouts, alternated.

    .venv/bin/python -m bench.ab --source DIR --source DIR [--rounds 5] [--duration 5]
    .venv/bin/python -m bench.ab --source DIR --source DIR --callgrind 2000 [--rounds 2]

Each checkout runs with this venv (PYTHONPATH=DIR), as bench.run starts automd (the `bench`
definition, info logging to a file, the daemon pinned to CPU 0, loadgen on CPU 1), on a fresh
state directory per round. Rounds alternate the checkouts, rotating which goes first, so a
busier minute of a shared machine hurts each alike. The primary figure is the server's CPU
microseconds per request (srv CPU% / 100 * 1e6 / req/s): far less sensitive to other load on
the machine than req/s. With `--callgrind N` the daemon runs under valgrind's callgrind
instead, and the figure is instructions per request (all threads), counted over N requests
after N/4 uncounted ones: slow, but independent of the machine's load. Prints medians and
each checkout's ratio to the first; `--json FILE` keeps every run.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench import gobuild
from bench.run import DEFINITION, get_bodies, pinned, rpc, submit_bodies, wait_ready

SCENARIOS = ("job.submit", "job.get")
ENTRY = "import sys; from automd.daemon import main; sys.exit(main())"


def cpu_us(result: dict[str, Any]) -> float:
    """Server CPU microseconds per request of one loadgen run."""
    return float(result["server_cpu_pct"]) / 100 * 1e6 / max(float(result["rps"]), 1e-9)


def start(source: Path, home: Path, callgrind: bool) -> tuple[subprocess.Popen[bytes], Path]:
    """`automd --listen` of checkout SOURCE in HOME (its cwd), pinned to CPU 0; ready."""
    jobs = home / "jobs.d"
    jobs.mkdir()
    (jobs / "bench.toml").write_text(DEFINITION)
    config = home / "automd.toml"
    config.write_text(f'[jobs]\ndefinitions_directory = "{jobs}"\nmax_unfinished = 10000000\n')
    sock, log = home / "automd.sock", home / "automd.log"
    env = {**os.environ, "PYTHONPATH": str(source)}
    env.pop("NOTIFY_SOCKET", None)
    argv = [sys.executable, "-c", ENTRY, "--listen", str(sock), "--state-dir",
            str(home / "state"), "--config", str(config)]  # fmt: skip
    if callgrind:  # counting starts when one_round says (callgrind_control -i on)
        argv = ["valgrind", "--tool=callgrind", "--instr-atstart=no",
                f"--callgrind-out-file={home / 'callgrind.out'}", *argv]  # fmt: skip
    with log.open("wb") as out:
        # cwd: `python -c` puts it first on sys.path, so it must not hold an automd.
        proc = subprocess.Popen(pinned("0", argv), cwd=home, env=env, stdout=out, stderr=out)
    wait_ready(sock, proc, log, timeout=300 if callgrind else 30)
    return proc, sock


def instructions(home: Path, pid: int, load: list[str], count: int) -> dict[str, Any]:
    """Instructions per request over COUNT requests of LOAD, after COUNT/4 uncounted ones."""
    subprocess.run(pinned("1", [*load, "-n", str(max(count // 4, 16))]), check=True,
                   capture_output=True)  # fmt: skip
    subprocess.run(["callgrind_control", "-z", str(pid)], check=True, capture_output=True)
    run = subprocess.run(pinned("1", [*load, "-n", str(count)]), check=True, capture_output=True)
    subprocess.run(["callgrind_control", "-d", str(pid)], check=True, capture_output=True)
    dumps = sorted(home.glob("callgrind.out.*"), key=lambda p: int(p.suffix[1:]))
    total = re.search(r"^(?:summary|totals): (\d+)", dumps[-1].read_text(), re.MULTILINE)
    assert total is not None, f"no total in {dumps[-1]}"
    result: dict[str, Any] = json.loads(run.stdout)
    result["instructions"] = int(total.group(1)) / result["ok_total"]
    return result


def one_round(source: Path, loadgen: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Both scenarios against a fresh daemon of SOURCE: loadgen's JSON per scenario."""
    with tempfile.TemporaryDirectory(prefix="automd-ab-") as tmp:
        home = Path(tmp)
        proc, sock = start(source, home, callgrind=bool(args.callgrind))
        try:
            seeded = rpc(sock, "job.submit", {"definition": "bench", "params": {"tag": "s"}},
                         timeout=60)  # fmt: skip
            bodies = {
                "job.submit": submit_bodies(home / "submit.txt"),
                "job.get": get_bodies(home / "get.txt", seeded["job"]["id"]),
            }
            if args.callgrind:
                subprocess.run(["callgrind_control", "-i", "on", str(proc.pid)], check=True,
                               capture_output=True)  # fmt: skip
            out = {}
            for name in args.scenario or SCENARIOS:
                load = [str(loadgen), "-unix", str(sock), "-path", "/rpc", "-c", "16",
                        "-body", str(bodies[name]), "-server-pid", str(proc.pid)]  # fmt: skip
                if args.callgrind:
                    out[name] = instructions(home, proc.pid, load, args.callgrind)
                    continue
                timing = ["-warmup", f"{args.warmup}s", "-d", f"{args.duration}s"]
                run = subprocess.run(pinned("1", [*load, *timing]), capture_output=True,
                                     text=True, check=True)  # fmt: skip
                out[name] = json.loads(run.stdout)
            return out
        finally:
            proc.terminate()
            proc.wait(timeout=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, action="append", required=True)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=float, default=5)
    parser.add_argument("--warmup", type=float, default=1)
    parser.add_argument("--callgrind", type=int, metavar="N", help="count instructions instead")
    parser.add_argument("--scenario", action="append", choices=SCENARIOS)
    parser.add_argument("--json", type=Path, help="write every run here")
    args = parser.parse_args()
    sources = [path.resolve() for path in args.source]
    loadgen = gobuild.build("loadgen")
    runs: dict[str, list[dict[str, Any]]] = {str(s): [] for s in sources}
    key = "instructions" if args.callgrind else "cpu_us"

    def figure(result: dict[str, Any]) -> float:
        return float(result["instructions"]) if args.callgrind else cpu_us(result)

    for rnd in range(args.rounds):
        for i in range(len(sources)):
            source = sources[(rnd + i) % len(sources)]
            result = one_round(source, loadgen, args)
            runs[str(source)].append(result)
            brief = ", ".join(
                f"{name} {figure(r):,.0f} {key} {r['rps']:,.0f}/s" for name, r in result.items()
            )
            print(f"round {rnd + 1} {source.name}: {brief}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(runs, indent=1))
    first = str(sources[0])
    print(f"\nmedians of {args.rounds} rounds; ratio to {sources[0].name}")
    print(f"{'scenario':12} {'checkout':24} {key + '/req':>16} {'ratio':>6} {'req/s':>8} "
          f"{'ratio':>6} {'p50 ms':>7} {'p99 ms':>7} {'other CPU%':>10}")  # fmt: skip
    for name in args.scenario or SCENARIOS:

        def med(source: str, field: str, name: str = name) -> float:
            values = [figure(r[name]) if field == key else r[name][field] for r in runs[source]]
            return float(statistics.median(values))

        for source in sources:
            s = str(source)
            print(f"{name:12} {source.name[:24]:24} {med(s, key):16,.1f} "
                  f"{med(s, key) / med(first, key):6.3f} {med(s, 'rps'):8,.0f} "
                  f"{med(s, 'rps') / med(first, 'rps'):6.3f} {med(s, 'p50_us') / 1000:7.2f} "
                  f"{med(s, 'p99_us') / 1000:7.2f} {med(s, 'other_cpu_pct'):10.0f}")  # fmt: skip


if __name__ == "__main__":
    main()
