"""A burst of jobs drained at systemd's pace: automd against systemd alone, in one container.

Boots the test container (tests/integration), installs automd, then:
1. baseline: starts the same transient units automd would (same definition, same plan, same
   sandbox, same slice) straight over D-Bus with automd's own Systemd class, at most
   `jobs.max_running` at once, and times them to their end;
2. automd: submits N jobs of that definition at once over the API and times until every one
   has finished.
Run as `python -m bench.drain` (root; about a minute). bench/README.md has the results.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path
from typing import Any

from automd.config import JobsSettings
from automd.definitions.registry import DefinitionRegistry
from automd.definitions.render import validate_params
from automd.jobs.ids import new_job_id
from automd.jobs.plan import make_plan, unit_spec
from automd.systemd.manager import Manager
from automd.systemd.units import Systemd
from tests.daemon.harness import Connection
from tests.integration.conftest import CHECKOUT, install_automd
from tests.integration.container import Container
from tests.integration.test_systemd_units import bus_for
from tests.unit_events import Recorder

DEFINITION = "hello"
MAX_RUNNING = JobsSettings().max_running


async def baseline(c: Container, count: int) -> float:
    """Units per second systemd starts and finishes for automd's plan, with no automd."""
    registry = DefinitionRegistry(CHECKOUT / "etc/automd/jobs.d")
    registry.reload()
    definition = registry.get(DEFINITION)
    assert definition is not None
    plan = make_plan(definition, validate_params(definition, {}))
    specs = [unit_spec(plan, definition=DEFINITION, job_id=new_job_id(), attempt=1)
             for _ in range(count)]  # fmt: skip
    bus = bus_for(c)
    recorder = Recorder(wait_seconds=600)
    systemd = Systemd(Manager(bus))
    slots = asyncio.Semaphore(MAX_RUNNING)

    async def run(spec: Any) -> None:
        async with slots:
            await systemd.start_unit(spec)
            await recorder.outcome(spec.name)

    async with recorder.reading(systemd.events):
        started = time.monotonic()
        await asyncio.gather(*(run(spec) for spec in specs))
        elapsed = time.monotonic() - started
    await systemd.close()
    await bus.close()
    return count / elapsed


async def drain(c: Container, count: int) -> tuple[float, float]:
    """(submits acknowledged per second, jobs finished per second) for a burst of `count`."""
    socket = c.root / "run/automd.sock"
    conns = [await Connection.open(socket) for _ in range(16)]
    await conns[0].call("system.version")  # activated, definitions loaded
    started = time.monotonic()

    async def submit(conn: Connection, n: int) -> list[str]:
        ids = []
        for _ in range(n):
            reply = await conn.call("job.submit", {"definition": DEFINITION})
            ids.append(reply["result"]["job"]["id"])
        return ids

    share = [count // len(conns) + (i < count % len(conns)) for i in range(len(conns))]
    batches = await asyncio.gather(*(submit(conn, n) for conn, n in zip(conns, share, strict=True)))
    acknowledged = time.monotonic() - started
    assert sum(map(len, batches)) == count
    while True:
        reply = await conns[0].call(
            "job.list", {"state": ["queued", "starting", "running", "waiting_retry"], "limit": 1}
        )
        if not reply["result"]["jobs"]:
            break
        await asyncio.sleep(0.2)
    drained = time.monotonic() - started
    failed = await conns[0].call("job.list", {"state": ["failed", "unknown"], "limit": 1})
    assert not failed["result"]["jobs"], failed
    for conn in conns:
        await conn.close()
    return count / acknowledged, count / drained


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    with Container(CHECKOUT, log_path=Path("/tmp/automd-bench-nspawn.log")) as c:
        install_automd(c)
        base = await baseline(c, args.baseline)
        acked, drained = await drain(c, args.jobs)
        # ... and systemd alone once more, after automd: the pace can drift during a run.
        base_after = await baseline(c, args.baseline)
    return {"jobs": args.jobs, "baseline_units": args.baseline, "max_running": MAX_RUNNING,
            "systemd_units_per_s": [round(base, 1), round(base_after, 1)],
            "automd_acknowledged_per_s": round(acked, 1), "automd_drained_per_s": round(drained, 1),
            "ratio": round(drained / ((base + base_after) / 2), 3)}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1000, help="jobs in the burst")
    parser.add_argument("--baseline", type=int, default=200, help="units for systemd alone")
    result = asyncio.run(measure(parser.parse_args()))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
