"""Plot a `make vm-test` run: the API's latency over time, alone and beside the runaway jobs,
automd's RSS, and when each runaway job was recorded final.

    .venv/bin/python -m bench.runaway_plot [test-artifacts/vm/result.json] [--png bench/runaway.png]

tests/vm/test_runaway.py keeps each run's result.json in test-artifacts/vm/ (tests/vm/runner.py
writes its `timeline`: every light-load call, the RSS samples, the jobs' seconds to final).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

CHECKOUT = Path(__file__).resolve().parents[1]


def plot(result: dict[str, Any], png: Path) -> None:
    import matplotlib  # noqa: PLC0415 (only for the plot)

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    line = result["timeline"]
    fig, axes = plt.subplots(2, 1, figsize=(9, 7), sharex=True)
    phases = (("baseline", ".", "alone"), ("runaway", "x", "beside the runaway jobs"))
    for phase, marker, when in phases:
        for method in ("job.get", "system.health"):
            points = [(at, ms) for at, ms, m in line[phase] if m == method]
            if points:
                axes[0].plot(*zip(*points, strict=True), marker, markersize=4,
                             label=f"{method}, {when}")  # fmt: skip
    axes[0].set_yscale("log")
    axes[0].set_ylabel("latency (ms)")
    rss = line["rss_mib"]
    if rss:
        axes[1].plot(*zip(*rss, strict=True), label="automd VmRSS (MiB)")
        axes[1].set_ylim(0, 1.3 * max(mib for _, mib in rss))
    recorded = sorted((s, n) for n, s in line["recorded_s"].items() if s is not None)
    for row, (seconds, name) in enumerate(recorded):
        for ax in axes:
            ax.axvline(seconds, color="grey", linestyle=":", linewidth=1)
        # Staggered: jobs recorded at nearly the same time keep readable labels.
        axes[1].annotate(f"{name} recorded", (seconds, 5 + 8 * row), fontsize=7,
                         xytext=(3, 0), textcoords="offset points")  # fmt: skip
    axes[1].set_xlabel("seconds since the load began (each phase on its own clock)")
    latency = result["latency"]
    fig.suptitle(
        "runaway jobs under enforced limits (VM, TCG): p99 "
        f"{latency['baseline']['p99_ms']} ms alone, {latency['runaway']['p99_ms']} ms beside them",
        fontsize=9,
    )
    for ax in axes:
        ax.legend(loc="upper left", fontsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(png, dpi=80)
    print(f"plot: {png}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("result", type=Path, nargs="?",
                        default=CHECKOUT / "test-artifacts/vm/result.json")  # fmt: skip
    parser.add_argument("--png", type=Path, default=CHECKOUT / "bench/runaway.png")
    args = parser.parse_args()
    plot(json.loads(args.result.read_text()), args.png)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
