"""A burst of jobs drained at systemd's pace, per sandbox profile: automd against systemd alone.

Boots the test container (tests/integration), installs automd, and for each sandbox profile
(a `/bin/true` definition, `bench-<profile>`, loaded with `systemctl reload automd`):
1. baseline: starts the units automd would start for that definition (its plan, sandbox and
   slice, built by automd's own make_plan/unit_spec) straight over D-Bus with automd's own
   Systemd class, as many at once as automd would run, timed to their end, before and after;
2. automd: N `job.submit`s at once over 16 connections, timed until none is unfinished;
3. one job at a time: systemd alone (start call -> finished signal) against automd (the job's
   own record: acknowledged -> outcome recorded), medians of sequential runs.
Run as `python -m bench.drain` (root; several minutes). bench/README.md has the results.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from automd.config import JobsSettings, starts_in_flight
from automd.definitions.loader import load_file
from automd.definitions.model import Definition
from automd.definitions.render import validate_params
from automd.jobs.ids import new_job_id
from automd.jobs.plan import make_plan, unit_spec
from automd.sandbox import PROFILES
from automd.systemd.manager import Manager
from automd.systemd.units import Systemd
from tests.daemon.harness import Connection
from tests.integration.conftest import CHECKOUT, JOBS_DIR, install_automd
from tests.integration.container import Container
from tests.integration.test_systemd_units import bus_for
from tests.unit_events import Recorder

MAX_RUNNING = JobsSettings().max_running
UNFINISHED = ["queued", "starting", "running", "waiting_retry"]


def write_definitions(
    c: Container, profiles: list[str], max_starting: int = 0
) -> dict[str, Definition]:
    """One `/bin/true` definition per profile, in the container's jobs.d and parsed here;
    automd restarted to load them, with `jobs.max_starting` when one is given."""
    if max_starting:
        c.write_file("/etc/automd/automd.toml", f"[jobs]\nmax_starting = {max_starting}\n")
    definitions = {}
    for profile in profiles:
        name = f"bench-{profile}"
        path = c.root / JOBS_DIR.lstrip("/") / f"{name}.toml"
        path.write_text(f'executable = "/bin/true"\n[sandbox]\nprofile = "{profile}"\n')
        loaded = load_file(path)
        assert isinstance(loaded, Definition), loaded
        definitions[name] = loaded
    c.run(["systemctl", "restart", "automd.service"])  # max_starting is read at start only
    return definitions


class Alone:
    """systemd without automd: automd's own Systemd class on its own bus connection."""

    def __init__(self, c: Container) -> None:
        self.bus = bus_for(c)
        self.systemd = Systemd(Manager(self.bus))
        self.recorder = Recorder(wait_seconds=600)

    async def run(self, definition: Definition) -> None:
        plan = make_plan(definition, validate_params(definition, {}))
        spec = unit_spec(plan, definition=definition.name, job_id=new_job_id(), attempt=1)
        await self.systemd.start_unit(spec)
        outcome = await self.recorder.outcome(spec.name)
        assert outcome.result == "success", outcome

    async def rate(self, definition: Definition, count: int) -> float:
        slots = asyncio.Semaphore(MAX_RUNNING)

        async def one() -> None:
            async with slots:
                await self.run(definition)

        started = time.monotonic()
        await asyncio.gather(*(one() for _ in range(count)))
        return count / (time.monotonic() - started)

    async def latency_ms(self, definition: Definition, runs: int) -> float:
        times = []
        for _ in range(runs):
            started = time.monotonic()
            await self.run(definition)
            times.append((time.monotonic() - started) * 1000)
        return statistics.median(times)


async def drain(conns: list[Connection], definition: str, count: int) -> tuple[float, float]:
    """(submits acknowledged per second, jobs finished per second) for a burst of `count`."""
    started = time.monotonic()

    async def submit(conn: Connection, n: int) -> None:
        for _ in range(n):
            reply = await conn.call("job.submit", {"definition": definition})
            assert "result" in reply, reply

    share = [count // len(conns) + (i < count % len(conns)) for i in range(len(conns))]
    await asyncio.gather(*(submit(conn, n) for conn, n in zip(conns, share, strict=True)))
    acknowledged = time.monotonic() - started
    while (await conns[0].call("job.list", {"state": UNFINISHED, "limit": 1}))["result"]["jobs"]:  # noqa: ASYNC110 (polls another process over its API)
        await asyncio.sleep(0.2)
    drained = time.monotonic() - started
    failed = await conns[0].call("job.list", {"state": ["failed", "unknown"], "limit": 1})
    assert not failed["result"]["jobs"], failed
    return count / acknowledged, count / drained


def cpu_seconds(stat: Path) -> float:
    """utime + stime of the process whose /proc/PID/stat this is."""
    ticks = stat.read_text().rsplit(")", 1)[1].split()[11:13]
    return sum(int(t) for t in ticks) / os.sysconf("SC_CLK_TCK")


def cpu_readers(c: Container) -> dict[str, Path]:
    """automd's and PID 1's stat files, read from the host (the container's /proc for
    automd's MainPID, which is a pid of the container's namespace)."""
    main_pid = c.show("automd.service", "MainPID")["MainPID"]
    return {"automd": c.root / "proc" / main_pid / "stat", "pid1": Path(f"/proc/{c.pid1}/stat")}


async def automd_latency_ms(conn: Connection, definition: str, runs: int) -> float:
    """Acknowledged -> outcome recorded, from the job's own timestamps (no polling error)."""
    times = []
    for _ in range(runs):
        job = (await conn.call("job.submit", {"definition": definition}))["result"]["job"]
        while job["state"] in UNFINISHED:
            await asyncio.sleep(0.005)  # how often we look does not change what is measured
            job = (await conn.call("job.get", {"id": job["id"]}))["result"]["job"]
        assert job["state"] == "succeeded", job
        created = datetime.fromisoformat(job["created_at"])
        finished = datetime.fromisoformat(job["finished_at"])
        times.append((finished - created).total_seconds() * 1000)
    return statistics.median(times)


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    rows = []
    with Container(CHECKOUT, log_path=Path("/tmp/automd-bench-nspawn.log")) as c:
        install_automd(c)
        definitions = write_definitions(c, args.profiles, args.max_starting)
        alone = Alone(c)
        conns = [await Connection.open(c.root / "run/automd.sock") for _ in range(16)]
        async with alone.recorder.reading(alone.systemd.events):
            for name, definition in definitions.items():
                await alone.rate(definition, 20)  # warm-up
                before = await alone.rate(definition, args.baseline)
                stats = cpu_readers(c)
                cpu_before = {who: cpu_seconds(stat) for who, stat in stats.items()}
                acked, drained = await drain(conns, name, args.jobs)
                # CPU per job while the burst drained: automd's own, and systemd's (PID 1).
                cpu_ms = {who: round((cpu_seconds(stat) - cpu_before[who]) * 1000 / args.jobs, 2)
                          for who, stat in stats.items()}  # fmt: skip
                after = await alone.rate(definition, args.baseline)
                systemd_ms = await alone.latency_ms(definition, args.latency_runs)
                automd_ms = await automd_latency_ms(conns[0], name, args.latency_runs)
                rows.append({"profile": name.removeprefix("bench-"),
                             "systemd_units_per_s": [round(before, 1), round(after, 1)],
                             "automd_acknowledged_per_s": round(acked, 1),
                             "automd_drained_per_s": round(drained, 1),
                             "ratio": round(drained / ((before + after) / 2), 3),
                             "cpu_ms_per_job": cpu_ms,
                             "one_job_ms_p50": {"systemd": round(systemd_ms, 1),
                                                "automd": round(automd_ms, 1)}})  # fmt: skip
                print(json.dumps(rows[-1]), flush=True)
        for conn in conns:
            await conn.close()
        await alone.systemd.close()
        await alone.bus.close()
    return {"jobs": args.jobs, "baseline_units": args.baseline, "max_running": MAX_RUNNING,
            "max_starting": args.max_starting or starts_in_flight(JobsSettings()),
            "profiles": rows}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1000, help="jobs in each burst")
    parser.add_argument("--baseline", type=int, default=200, help="units for systemd alone")
    parser.add_argument("--latency-runs", type=int, default=21, help="sequential single jobs")
    parser.add_argument(
        "--max-starting",
        type=int,
        default=0,
        help="automd's jobs.max_starting (default: its own, twice the CPUs)",
    )
    parser.add_argument("--profiles", type=lambda text: text.split(","), default=list(PROFILES),
                        help="comma-separated sandbox profiles (default: all)")  # fmt: skip
    result = asyncio.run(measure(parser.parse_args()))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
