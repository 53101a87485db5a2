"""What each job sandbox costs per launch, and how exposed it leaves a job, in one container.

For each sandbox (automd's named profiles, the pre-profile default, and none at all) it starts
`/bin/true` as a transient unit with exactly the properties automd would send (automd's own
spec.unit_properties, DynamicUser, automd-jobs.slice), straight over D-Bus with automd's
Systemd class, and measures:
- launches per second with 16 and with 4 units in flight (start call -> unit finished);
- one job's latency, start call -> finished, median of sequential runs;
- `systemd-analyze security`'s overall exposure for a unit with that sandbox.
Run as `python -m bench.sandbox_profiles` (root; a few minutes). docs/systemd.md has the table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import secrets
import statistics
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from automd.sandbox import KERNEL_PROTECTION, PROFILES, SandboxValue
from automd.systemd.manager import Manager
from automd.systemd.spec import UnitSpec
from automd.systemd.units import Systemd
from tests.integration.conftest import CHECKOUT, install_automd
from tests.integration.container import Container
from tests.integration.test_systemd_units import bus_for, journal_dir
from tests.unit_events import Recorder

# automd's default sandbox before the profiles (until API 0.5.0), for comparison.
PREVIOUS_DEFAULT: dict[str, SandboxValue] = {
    "NoNewPrivileges": True, "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": True,
    "PrivateDevices": True, "PrivateIPC": True, **KERNEL_PROTECTION, "ProtectClock": True,
    "ProtectHostname": True, "ProtectProc": "invisible", "RestrictSUIDSGID": True,
    "RestrictRealtime": True, "LockPersonality": True, "MemoryDenyWriteExecute": True,
    "RemoveIPC": True, "KeyringMode": "private",
}  # fmt: skip

SANDBOXES: dict[str, Mapping[str, SandboxValue]] = {
    "none": {},
    "previous default": PREVIOUS_DEFAULT,
    **{f"profile {name}": profile for name, profile in PROFILES.items()},
    "default without SystemCallFilter": {
        k: v for k, v in PROFILES["default"].items() if k != "SystemCallFilter"
    },
}


def spec(label: str, sandbox: Mapping[str, SandboxValue], argv: tuple[str, ...]) -> UnitSpec:
    name = f"automd-bench-{label}-{secrets.token_hex(4)}.service"
    return UnitSpec(name=name, description=f"bench {label}", argv=argv, environment={},
                    log_extra_fields={}, sandbox=dict(sandbox))  # fmt: skip


async def launch_rate(systemd: Systemd, recorder: Recorder, sandbox: Mapping[str, SandboxValue],
                      count: int, in_flight: int) -> float:  # fmt: skip
    slots = asyncio.Semaphore(in_flight)
    specs = [spec("rate", sandbox, ("/bin/true",)) for _ in range(count)]

    async def run(unit: UnitSpec) -> None:
        async with slots:
            await systemd.start_unit(unit)
            outcome = await recorder.outcome(unit.name)
            assert outcome.result == "success", outcome

    started = time.monotonic()
    await asyncio.gather(*(run(unit) for unit in specs))
    return count / (time.monotonic() - started)


async def one_job_ms(systemd: Systemd, recorder: Recorder, sandbox: Mapping[str, SandboxValue],
                     runs: int) -> float:  # fmt: skip
    times = []
    for _ in range(runs):
        unit = spec("one", sandbox, ("/bin/true",))
        started = time.monotonic()
        await systemd.start_unit(unit)
        await recorder.outcome(unit.name)
        times.append((time.monotonic() - started) * 1000)
    return statistics.median(times)


async def exposure(c: Container, systemd: Systemd, recorder: Recorder,
                   sandbox: Mapping[str, SandboxValue]) -> str:  # fmt: skip
    unit = spec("exposure", sandbox, ("/bin/sleep", "600"))
    await systemd.start_unit(unit)
    await recorder.wait_started(unit.name)
    try:
        printed = c.run(["systemd-analyze", "security", "--no-pager", unit.name]).stdout.decode()
    finally:
        await systemd.stop_unit(unit.name)
        await recorder.outcome(unit.name)
    found = re.search(r"Overall exposure level for \S+: (\S+ \S+)", printed)
    assert found, printed[-500:]
    return found.group(1)


async def measure(args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    with Container(CHECKOUT, log_path=Path("/tmp/automd-bench-nspawn.log")) as c:
        install_automd(c)  # the jobs slice, as shipped
        recorder = Recorder(wait_seconds=600)
        bus = bus_for(c)
        systemd = Systemd(Manager(bus), journal_path=journal_dir(c))
        async with recorder.reading(systemd.events):
            for label, sandbox in SANDBOXES.items():
                await launch_rate(systemd, recorder, sandbox, 20, 4)  # warm-up
                rows.append({
                    "sandbox": label,
                    "units_per_s_16": round(await launch_rate(
                        systemd, recorder, sandbox, args.count, 16), 1),
                    "units_per_s_4": round(await launch_rate(
                        systemd, recorder, sandbox, args.count, 4), 1),
                    "one_job_ms_p50": round(await one_job_ms(systemd, recorder, sandbox, 21), 1),
                    "exposure": await exposure(c, systemd, recorder, sandbox),
                })  # fmt: skip
                print(json.dumps(rows[-1]), flush=True)
        await systemd.close()
        await bus.close()
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200, help="units per launch-rate run")
    rows = asyncio.run(measure(parser.parse_args()))
    print("| sandbox | units/s (16 in flight) | (4 in flight) | one job p50 | exposure |")
    print("|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['sandbox']} | {row['units_per_s_16']} | {row['units_per_s_4']} | "
              f"{row['one_job_ms_p50']} ms | {row['exposure']} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
