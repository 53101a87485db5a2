"""Start slots (systemd/watch.py TrackedUnits): units whose sandbox protects the kernel wait
for a slow slot; other units only for a start slot, so they pass slow ones waiting."""

from __future__ import annotations

import asyncio

import pytest

from automd.sandbox import PROFILES, Profile, protects_the_kernel, sandbox_for
from automd.systemd.spec import UnitSpec
from automd.systemd.watch import TrackedUnits


def started(units: TrackedUnits, name: str, *, slow: bool) -> asyncio.Task[object]:
    return asyncio.ensure_future(units.track_start(name, f"/unit/{name}", slow=slow))


async def settled() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_a_unit_quick_to_set_up_passes_slow_ones_waiting_for_their_slot() -> None:
    units = TrackedUnits(max_starts=4, max_slow_starts=1)
    first = started(units, "heavy-1", slow=True)
    second = started(units, "heavy-2", slow=True)
    light = [started(units, f"light-{i}", slow=False) for i in range(3)]
    await settled()
    assert first.done()
    assert not second.done()  # one slow slot
    assert all(task.done() for task in light)  # 1 + 3 = the four start slots
    tracker = units.named("heavy-1")
    assert tracker is not None
    units.start_job_done(tracker)
    await settled()
    assert second.done()  # its start job ended: both of its slots are free again


async def test_all_starts_are_bounded_whatever_their_kind() -> None:
    units = TrackedUnits(max_starts=2, max_slow_starts=2)
    tasks = [started(units, f"light-{i}", slow=False) for i in range(3)]
    await settled()
    assert [task.done() for task in tasks] == [True, True, False]
    forgotten = units.named("light-0")
    assert forgotten is not None
    units.forget(forgotten)  # a start that failed gives its slot back too
    await settled()
    assert tasks[2].done()


async def test_a_cancelled_wait_for_a_start_slot_gives_the_slow_slot_back() -> None:
    units = TrackedUnits(max_starts=1, max_slow_starts=1)
    started(units, "light", slow=False)
    waiting = started(units, "heavy-1", slow=True)  # holds the slow slot, waits
    await settled()
    waiting.cancel()
    await settled()
    after = started(units, "heavy-2", slow=True)
    light = units.named("light")
    assert light is not None
    units.start_job_done(light)
    await settled()
    assert after.done()  # the start slot light gave back, the slow slot heavy-1 did


@pytest.mark.parametrize(
    ("profile", "root", "slow"),
    [
        ("strict", False, True),
        ("default", False, False),
        ("minimal", False, False),
        ("minimal", True, True),  # a root job gets the kernel protections back
    ],
)
def test_which_units_are_slow_to_set_up(profile: Profile, root: bool, slow: bool) -> None:
    sandbox = sandbox_for(profile, runs_as_root=root)
    spec = UnitSpec(name="automd-x-1.service", description="x", argv=("/bin/true",),
                    environment={}, log_extra_fields={}, sandbox=sandbox)  # fmt: skip
    assert spec.slow_to_set_up is slow


def test_kernel_protections_turned_off_are_not_slow() -> None:
    assert not protects_the_kernel({**PROFILES["default"], "ProtectKernelTunables": False})
    assert protects_the_kernel({**PROFILES["default"], "ProtectKernelLogs": True})
