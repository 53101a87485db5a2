"""The unit event stream and the typed Manager signals (no bus needed)."""

from __future__ import annotations

import asyncio

from dbus_fast import Message, Variant

from automd.systemd.bus import MANAGER_IFACE
from automd.systemd.events import UnitEventStream, UnitFinished, UnitStarted
from automd.systemd.manager import (
    JobRemoved,
    PropertiesChanged,
    UnitRemoved,
    decode_signal,
)
from automd.systemd.outcome import UnitOutcome

UNIT = "automd-echo-01-1.service"
OUTCOME = UnitOutcome(UNIT, "ab" * 16, "success", 0, None, "dbus")


async def test_events_arrive_in_publish_order_and_are_held_until_taken() -> None:
    stream = UnitEventStream()
    stream.publish(UnitStarted(UNIT, "ab" * 16))
    stream.publish(UnitFinished(OUTCOME))
    assert stream.holds(UNIT)
    assert len(stream) == 2
    events = aiter(stream)
    assert await anext(events) == UnitStarted(UNIT, "ab" * 16)
    # The end is still held: a self-check asking now must not think the unit unfollowed.
    assert stream.holds(UNIT)
    assert await anext(events) == UnitFinished(OUTCOME)
    assert not stream.holds(UNIT)
    assert len(stream) == 0


async def test_a_consumer_waiting_on_an_empty_stream_gets_the_next_event() -> None:
    stream = UnitEventStream()
    waiting = asyncio.create_task(anext(aiter(stream)))
    await asyncio.sleep(0)  # let it block on the empty queue
    stream.publish(UnitFinished(OUTCOME))
    assert await asyncio.wait_for(waiting, 5) == UnitFinished(OUTCOME)
    assert not stream.holds(UNIT)


def signal(member: str, signature: str, body: list[object], *, path: str = "/x",
           interface: str = MANAGER_IFACE) -> Message:  # fmt: skip
    return Message.new_signal(path, interface, member, signature, body)


def test_manager_signals_decode_to_typed_values() -> None:
    job = "/org/freedesktop/systemd1/job/7"
    assert decode_signal(signal("JobRemoved", "uoss", [7, job, UNIT, "failed"])) == JobRemoved(
        7, job, UNIT, "failed"
    )
    unit_path = "/org/freedesktop/systemd1/unit/automd_2decho"
    assert decode_signal(signal("UnitRemoved", "so", [UNIT, unit_path])) == UnitRemoved(
        UNIT, unit_path
    )
    changed = signal(
        "PropertiesChanged",
        "sa{sv}as",
        ["org.freedesktop.systemd1.Unit", {"ActiveState": Variant("s", "failed")}, []],
        path=unit_path,
        interface="org.freedesktop.DBus.Properties",
    )
    assert decode_signal(changed) == PropertiesChanged(
        unit_path, "org.freedesktop.systemd1.Unit", {"ActiveState": "failed"}
    )
    assert decode_signal(signal("Reloading", "b", [True])) is None
