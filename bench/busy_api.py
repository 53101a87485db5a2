"""The API while a burst drains (issue 17 §2): job.submit and job.get from 16 clients, first
with nothing being started, then while a 10,000-job burst drains through systemd.

Boots the test container, installs automd, and:
1. fills every run slot (jobs.max_running) with a job that sleeps, so nothing else starts;
2. idle: bench/loadgen sends the burst, N `job.submit`s from 16 connections (queued behind
   the sleepers), then `job.get` of one job from 16 connections for a few seconds;
3. cancels the sleepers: the burst drains at systemd's pace; once jobs are finishing, the same
   two loads run again (the submits queue behind the burst);
4. waits until the drain ends (none failed), and prints both phases with the targets.
Run as `python -m bench.busy_api` (root; a few minutes). bench/README.md has the results.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from automd.jobs.plan import JOBS_SLICE
from bench import gobuild
from bench.drain import MAX_RUNNING, UNFINISHED, cpu_readers, cpu_seconds, write_definitions
from bench.run import Load, get_bodies, submit_bodies
from tests.daemon.harness import Connection
from tests.integration.conftest import CHECKOUT, JOBS_DIR, install_automd
from tests.integration.container import Container
from tests.vm.image import cached_image
from tests.vm.machine import boot_and_run
from tests.vm.runner import ThisMachine

CLIENTS = 16
SUBMIT_VS_IDLE_TARGET = 0.5  # issue 17 §2: job.submit during the drain >= 50% of idle
GET_P99_TARGET_MS = 5.0  # and job.get p99 <= 5 ms
HOLD = "bench-hold"
CPUS = os.cpu_count() or 1
_HOLD_DEFINITION = """\
description = "Holds a run slot until cancelled (bench/busy_api.py)"
executable = "/bin/sleep"
argv = ["infinity"]
[sandbox]
profile = "minimal"
"""


async def jobs_in(conn: Connection, states: list[str], limit: int) -> list[dict[str, Any]]:
    reply = await conn.call("job.list", {"state": states, "limit": limit})
    jobs: list[dict[str, Any]] = reply["result"]["jobs"]
    return jobs


async def until(conn: Connection, states: list[str], count: int, wait_s: float = 120) -> None:
    """Polls job.list (another process's state, over its API) until `count` jobs are in
    `states`."""
    deadline = time.monotonic() + wait_s
    while len(await jobs_in(conn, states, count)) < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"fewer than {count} jobs {states} after {wait_s:g} s")
        await asyncio.sleep(0.1)


def machine_idle_seconds() -> float:
    """Idle and I/O-wait time of all CPUs, from /proc/stat."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    return (int(fields[3]) + int(fields[4])) / os.sysconf("SC_CLK_TCK")


class Phase:
    """The two loads against automd's socket, with automd's CPU while each ran."""

    def __init__(self, c: Container, load: Load, work: Path) -> None:
        self.sock = c.root / "run/automd.sock"
        self.automd_stat = cpu_readers(c)["automd"]
        self.load = load
        self.work = work

    def _run(self, bodies: Path, **how: Any) -> dict[str, Any]:
        cpu_before, idle_before = cpu_seconds(self.automd_stat), machine_idle_seconds()
        started = time.monotonic()
        result = self.load.run(self.sock, bodies, 0, **how)
        elapsed = time.monotonic() - started
        cpu = cpu_seconds(self.automd_stat) - cpu_before
        idle = machine_idle_seconds() - idle_before
        assert result["errors_total"] == 0, result.get("first_error")
        return {"per_s": round(result["rps"]), "p50_ms": round(result["p50_us"] / 1000, 2),
                "p99_ms": round(result["p99_us"] / 1000, 2),
                "automd_cpu_pct": round(100 * cpu / elapsed),
                "machine_idle_pct": round(100 * idle / elapsed / CPUS)}  # fmt: skip

    def submits(self, definition: str, count: int) -> dict[str, Any]:
        bodies = submit_bodies(self.work / "submit.jsonl", definition=definition)
        return self._run(bodies, count=count)

    def gets(self, job_id: str, seconds: float) -> dict[str, Any]:
        return self._run(get_bodies(self.work / "get.jsonl", job_id), duration=seconds)


async def measure_on(c: Container, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """The run on machine `c` (the test container, or the VM itself); automd's journal and
    every warning printed if it fails."""
    try:
        return await _measure(args, work, c)
    except BaseException:
        for which in (["-u", "automd.service", "-n", "40"], ["-p", "warning", "-n", "40"]):
            journal = c.run(["journalctl", "--no-pager", *which], check=False)
            print(journal.stdout.decode(errors="replace"), flush=True)
        raise


async def _measure(args: argparse.Namespace, work: Path, c: Container) -> dict[str, Any]:
    load = Load(gobuild.build("loadgen"), CLIENTS, args.seconds, 1.0, cpu=None)
    install_automd(c)
    if args.jobs_cpu_weight:
        c.write_file(f"/etc/systemd/system/{JOBS_SLICE}.d/bench.conf",
                     f"[Slice]\nCPUWeight={args.jobs_cpu_weight}\n")  # fmt: skip
    if args.automd_cpu_weight:
        c.write_file("/etc/systemd/system/automd.service.d/bench.conf",
                     f"[Service]\nCPUWeight={args.automd_cpu_weight}\n")  # fmt: skip
    c.run(["systemctl", "daemon-reload"])
    (c.root / JOBS_DIR.lstrip("/") / f"{HOLD}.toml").write_text(_HOLD_DEFINITION)
    burst = f"bench-{args.profile}"
    write_definitions(c, [args.profile])  # restarts automd: both definitions are loaded
    conn = await Connection.open(c.root / "run/automd.sock")
    holders = [(await conn.call("job.submit", {"definition": HOLD}))["result"]["job"]["id"]
               for _ in range(MAX_RUNNING)]  # fmt: skip
    await until(conn, ["running"], MAX_RUNNING)
    phase = Phase(c, load, work)
    idle = {"job.submit": phase.submits(burst, args.jobs),
            "job.get": phase.gets(holders[0], args.seconds)}  # fmt: skip
    print("idle:", json.dumps(idle), flush=True)

    started = time.monotonic()
    for job_id in holders:
        await conn.call("job.cancel", {"id": job_id})
    await until(conn, ["succeeded"], 4 * MAX_RUNNING)
    draining = {"job.submit": phase.submits(burst, args.probe_submits),
                "job.get": phase.gets(holders[0], args.seconds)}  # fmt: skip
    still_draining = bool(await jobs_in(conn, UNFINISHED, 1))
    print("draining:", json.dumps(draining), flush=True)
    assert still_draining, "the burst drained before the loads ended: raise --jobs"
    while await jobs_in(conn, UNFINISHED, 1):  # noqa: ASYNC110 (another process's state)
        await asyncio.sleep(0.5)
    drained_s = time.monotonic() - started
    assert not await jobs_in(conn, ["failed", "unknown"], 1), "a job of the burst failed"
    await conn.close()
    total = args.jobs + args.probe_submits
    weights = {unit: c.show(unit, "CPUWeight")["CPUWeight"]
               for unit in (JOBS_SLICE, "automd.service")}  # fmt: skip
    return {"profile": args.profile, "jobs": args.jobs, "clients": CLIENTS, "idle": idle,
            "draining": draining, "drained_per_s": round(total / drained_s, 1),
            "cpu_weights": weights}  # fmt: skip


def in_vm(args: argparse.Namespace) -> dict[str, Any]:
    """The same run inside the VM tier's Debian 12 VM (tests/vm; qemu TCG), whose kernel
    enforces cgroup v2 weights: automd-jobs.slice's CPUWeight= then counts, as on a host."""
    gobuild.build("loadgen")  # here: the VM reads the checkout, and has no Go
    share = Path(tempfile.mkdtemp(prefix="automd-bench-vm-", dir="/var/tmp"))
    image = cached_image(share / "build.log")
    inside = [".venv/bin/python", "-m", "bench.busy_api", "--in-this-machine", "/ci/result.json",
              "--jobs", str(args.jobs), "--probe-submits", str(args.probe_submits),
              "--seconds", str(args.seconds), "--profile", args.profile,
              "--jobs-cpu-weight", str(args.jobs_cpu_weight),
              "--automd-cpu-weight", str(args.automd_cpu_weight)]  # fmt: skip
    run = boot_and_run(image, share, shlex.join(inside))
    result_file = share / "result.json"
    if not result_file.exists():
        raise SystemExit(f"the VM left no result (exit status {run.status}):\n{run.output()}")
    result: dict[str, Any] = json.loads(result_file.read_text())
    shutil.rmtree(share)
    return {**result, "where": "VM (qemu TCG, cgroup v2)"}


async def in_this_machine(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    machine = ThisMachine(CHECKOUT)
    result = await measure_on(machine, args, work)
    args.in_this_machine.write_text(json.dumps(result))
    return result


async def in_container(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    with Container(CHECKOUT, log_path=Path("/tmp/automd-bench-nspawn.log")) as c:
        return {**await measure_on(c, args, work), "where": "test container (cgroup v1, host's)"}


def verdicts(result: dict[str, Any]) -> list[str]:
    idle, busy = result["idle"], result["draining"]
    ratio = busy["job.submit"]["per_s"] / idle["job.submit"]["per_s"]
    p99 = busy["job.get"]["p99_ms"]
    return [
        f"{'PASS' if ratio >= SUBMIT_VS_IDLE_TARGET else 'FAIL'}  job.submit while draining >= "
        f"{SUBMIT_VS_IDLE_TARGET:.0%} of idle: {ratio:.0%} ({busy['job.submit']['per_s']:,} vs "
        f"{idle['job.submit']['per_s']:,}/s)",
        f"{'PASS' if p99 <= GET_P99_TARGET_MS else 'FAIL'}  job.get p99 while draining <= "
        f"{GET_P99_TARGET_MS:g} ms: {p99:g} ms (idle: {idle['job.get']['p99_ms']:g} ms)",
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10_000, help="jobs in the burst")
    parser.add_argument("--probe-submits", type=int, default=3_000,
                        help="job.submits sent while the burst drains")  # fmt: skip
    parser.add_argument("--seconds", type=float, default=5.0, help="job.get load, measured")
    parser.add_argument("--profile", default="minimal",
                        help="the burst's sandbox profile")  # fmt: skip
    parser.add_argument("--vm", action="store_true",
                        help="in the VM of tests/vm (cgroup v2 enforced)")  # fmt: skip
    parser.add_argument("--jobs-cpu-weight", type=int, default=0,
                        help="CPUWeight= of automd-jobs.slice (default: as shipped)")  # fmt: skip
    parser.add_argument("--automd-cpu-weight", type=int, default=0,
                        help="CPUWeight= of automd.service (default: as shipped)")  # fmt: skip
    parser.add_argument("--in-this-machine", type=Path, help=argparse.SUPPRESS)  # the VM's side
    args = parser.parse_args()
    work = Path("/tmp/automd-bench-busy-api")
    work.mkdir(exist_ok=True)
    if args.vm:
        result = in_vm(args)
    elif args.in_this_machine:
        result = asyncio.run(in_this_machine(args, work))
    else:
        result = asyncio.run(in_container(args, work))
    print(json.dumps(result, indent=2))
    print("\n".join(verdicts(result)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
