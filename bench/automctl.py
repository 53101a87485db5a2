"""automctl's wall time per command against a real automd, beside bare interpreter start-up.

Run as `python -m bench.automctl` (or `make bench-automctl`); bench/README.md has the results.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from automd import __version__
from tests.daemon.harness import DaemonProcess, call

PYTHON = Path(sys.executable)
AUTOMCTL = PYTHON.parent / "automctl"  # the console script pip installed (pyproject)
TARGET_MS = 150.0  # the target for `automctl status ID`

DEFINITION = """\
description = "automctl benchmark job; never started here (no systemd as PID 1)"
executable = "/bin/true"
argv = ["{tag}"]

[parameters.tag]
type = "string"
"""

# The console script's own code, to see where start-up time goes (python -X importtime).
ENTRY = "import sys; from automd.ctl.main import main; sys.exit(main())"


def commands(job_id: str) -> dict[str, list[str]]:
    automctl = str(AUTOMCTL)
    return {
        "python -c pass": [str(PYTHON), "-c", "pass"],
        "import automd.ctl.main": [str(PYTHON), "-c", "import automd.ctl.main"],
        "automctl version": [automctl, "version"],
        "automctl status ID": [automctl, "status", job_id],
        "automctl status ID --json": [automctl, "status", job_id, "--json"],
        "automctl list": [automctl, "list"],
    }


def time_once(argv: list[str], env: dict[str, str]) -> float:
    """Wall time of one run in ms; the command must succeed."""
    started = time.perf_counter()
    done = subprocess.run(
        argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False
    )
    elapsed = (time.perf_counter() - started) * 1000
    if done.returncode != 0:
        raise RuntimeError(f"{argv} exited {done.returncode}: {done.stderr.decode()}")
    return elapsed


def measure(
    cases: dict[str, list[str]], env: dict[str, str], runs: int, warmup: int
) -> dict[str, list[float]]:
    """Rounds over every command in turn (so drift hits them alike); warm-up rounds not kept."""
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for round_ in range(warmup + runs):
        for name, argv in cases.items():
            elapsed = time_once(argv, env)
            if round_ >= warmup:
                samples[name].append(elapsed)
    return samples


def import_costs(env: dict[str, str], top: int = 8) -> list[tuple[int, int, str]]:
    """(cumulative us, self us, module) of the costliest imports of `automctl version`, by
    cumulative time; the module keeps importtime's indentation, which shows the nesting."""
    argv = [str(PYTHON), "-X", "importtime", "-c", ENTRY, "version"]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=True)
    rows = []
    for line in done.stderr.splitlines():
        if line.startswith("import time:") and "[us]" not in line:
            own, cumulative, module = line.removeprefix("import time:").split("|")
            rows.append((int(cumulative), int(own), module.rstrip()))
    return sorted(rows, reverse=True)[:top]


def report(samples: dict[str, list[float]], costs: list[tuple[int, int, str]], runs: int) -> str:
    def p90(values: list[float]) -> float:
        return statistics.quantiles(values, n=10, method="inclusive")[8]

    baseline = statistics.median(samples["python -c pass"])
    lines = [
        f"automctl wall time, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, automd {__version__}",
        f"host: {os.cpu_count()} CPUs, {platform.platform()}, Python {platform.python_version()}",
        f"{runs} runs per command after warm-up, interleaved; subprocess.run wall time "
        f"(perf_counter), output to /dev/null; interpreter {PYTHON}",
        "",
        f"{'command':<28}{'median ms':>10}{'p90 ms':>9}{'min ms':>9}{'x python':>10}",
    ]
    for name, values in samples.items():
        median = statistics.median(values)
        lines.append(
            f"{name:<28}{median:>10.1f}{p90(values):>9.1f}{min(values):>9.1f}"
            f"{median / baseline:>9.2f}x"
        )
    status = samples["automctl status ID"]
    verdict = "PASS" if statistics.median(status) < TARGET_MS else "MISS"
    lines += [
        "",
        f"  {verdict}  automctl status ID under {TARGET_MS:.0f} ms (median): "
        f"median {statistics.median(status):.1f} ms, p90 {p90(status):.1f} ms",
        "",
        "costliest imports of `automctl version` (python -X importtime, us):",
        f"  {'cumulative':>10} {'self':>7}  module",
        *(f"  {cumulative:>10,} {own:>7,} {module}" for cumulative, own, module in costs),
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.automctl", description=__doc__)
    parser.add_argument("--runs", type=int, default=30, help="measured runs per command")
    parser.add_argument("--warmup", type=int, default=3, help="unmeasured runs per command")
    args = parser.parse_args(argv)
    if not AUTOMCTL.exists():
        print(f"no {AUTOMCTL}: install automd into this environment (make venv)", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="automctl-bench-") as work:
        daemon = DaemonProcess.with_definitions(Path(work), {"bench": DEFINITION})
        try:
            daemon.start()
            reply = asyncio.run(
                call(
                    daemon.socket_path,
                    "job.submit",
                    {"definition": "bench", "params": {"tag": "x"}},
                )
            )
            job_id = reply["result"]["job"]["id"]
            env = {**os.environ, "AUTOMD_SOCKET": str(daemon.socket_path), "NO_COLOR": "1"}
            samples = measure(commands(job_id), env, args.runs, args.warmup)
            costs = import_costs(env)
        except (RuntimeError, AssertionError, subprocess.CalledProcessError) as exc:
            print(f"benchmark failed: {exc}\n{daemon.output()[-2000:]}", file=sys.stderr)
            return 1
        finally:
            if daemon.proc is not None and daemon.proc.poll() is None:
                daemon.stop()
            daemon.close()
    print(report(samples, costs, args.runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
