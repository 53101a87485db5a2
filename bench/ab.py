"""A/B: the server CPU per request of job.submit and job.get, for several checkouts, alternated.

    .venv/bin/python -m bench.ab --source DIR --source DIR [--rounds 5] [--duration 5]

Each checkout runs with this venv (PYTHONPATH=DIR), as bench.run starts automd (the `bench`
definition, info logging to a file, the daemon pinned to CPU 0, loadgen on CPU 1), on a fresh
state directory per round. Rounds alternate the checkouts, rotating which goes first, so a
busier minute of a shared machine hurts each alike. The primary figure is the server's CPU
microseconds per request (srv CPU% / 100 * 1e6 / req/s): far less sensitive to other load on
the machine than req/s. Prints medians and each checkout's ratio to the first; `--json FILE`
keeps every run.
"""

from __future__ import annotations

import argparse
import json
import os
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


def start(source: Path, home: Path) -> tuple[subprocess.Popen[bytes], Path]:
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
    with log.open("wb") as out:
        # cwd: `python -c` puts it first on sys.path, so it must not hold an automd.
        proc = subprocess.Popen(pinned("0", argv), cwd=home, env=env, stdout=out, stderr=out)
    wait_ready(sock, proc, log)
    return proc, sock


def one_round(source: Path, loadgen: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Both scenarios against a fresh daemon of SOURCE: loadgen's JSON per scenario."""
    with tempfile.TemporaryDirectory(prefix="automd-ab-") as tmp:
        home = Path(tmp)
        proc, sock = start(source, home)
        try:
            seeded = rpc(sock, "job.submit", {"definition": "bench", "params": {"tag": "s"}})
            bodies = {
                "job.submit": submit_bodies(home / "submit.txt"),
                "job.get": get_bodies(home / "get.txt", seeded["job"]["id"]),
            }
            out = {}
            for name in args.scenario or SCENARIOS:
                argv = [str(loadgen), "-unix", str(sock), "-path", "/rpc", "-c", "16",
                        "-body", str(bodies[name]), "-server-pid", str(proc.pid),
                        "-warmup", f"{args.warmup}s", "-d", f"{args.duration}s"]  # fmt: skip
                run = subprocess.run(pinned("1", argv), capture_output=True, text=True, check=True)
                out[name] = json.loads(run.stdout)
            return out
        finally:
            proc.terminate()
            proc.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, action="append", required=True)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=float, default=5)
    parser.add_argument("--warmup", type=float, default=1)
    parser.add_argument("--scenario", action="append", choices=SCENARIOS)
    parser.add_argument("--json", type=Path, help="write every run here")
    args = parser.parse_args()
    sources = [path.resolve() for path in args.source]
    loadgen = gobuild.build("loadgen")
    runs: dict[str, list[dict[str, Any]]] = {str(s): [] for s in sources}
    for rnd in range(args.rounds):
        for i in range(len(sources)):
            source = sources[(rnd + i) % len(sources)]
            result = one_round(source, loadgen, args)
            runs[str(source)].append(result)
            brief = ", ".join(
                f"{name} {cpu_us(r):.0f} us {r['rps']:,.0f}/s" for name, r in result.items()
            )
            print(f"round {rnd + 1} {source.name}: {brief}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(runs, indent=1))
    first = str(sources[0])
    print(f"\nmedians of {args.rounds} rounds; ratio to {sources[0].name}")
    print(f"{'scenario':12} {'checkout':24} {'CPU-us/req':>10} {'ratio':>6} {'req/s':>8} "
          f"{'ratio':>6} {'p50 ms':>7} {'p99 ms':>7} {'other CPU%':>10}")  # fmt: skip
    for name in args.scenario or SCENARIOS:

        def med(source: str, key: str, name: str = name) -> float:
            values = [cpu_us(r[name]) if key == "cpu_us" else r[name][key] for r in runs[source]]
            return float(statistics.median(values))

        for source in sources:
            s = str(source)
            print(f"{name:12} {source.name[:24]:24} {med(s, 'cpu_us'):10.1f} "
                  f"{med(s, 'cpu_us') / med(first, 'cpu_us'):6.3f} {med(s, 'rps'):8,.0f} "
                  f"{med(s, 'rps') / med(first, 'rps'):6.3f} {med(s, 'p50_us') / 1000:7.2f} "
                  f"{med(s, 'p99_us') / 1000:7.2f} {med(s, 'other_cpu_pct'):10.0f}")  # fmt: skip


if __name__ == "__main__":
    main()
