"""What systemd/ publishes about the units it follows: a stream of events, in signal order.

`Systemd` publishes; one consumer (jobs/follower.py) iterates. The stream replaces a callback
object, so systemd/ is built without knowing its consumer, and the consumer is built with
the stream it reads: no construction cycle to patch up afterwards.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass

from automd.systemd.outcome import UnitOutcome


@dataclass(frozen=True)
class UnitStarted:
    """The unit's main process runs: one invocation of it has begun."""

    unit: str
    invocation_id: str


@dataclass(frozen=True)
class UnitFinished:
    """The unit invocation ended; reported once per invocation."""

    outcome: UnitOutcome

    @property
    def unit(self) -> str:
        return self.outcome.unit


UnitEvent = UnitStarted | UnitFinished


class UnitEventStream:
    """An unbounded, ordered, endless stream for one consumer, that knows what it still holds.

    `holds(unit)` is true from publish until the consumer has taken the unit's last event.
    The consumer acts on an event before its next await, so "held here, or already being
    recorded by the consumer" has no gap that a self-check could fall into.
    """

    def __init__(self) -> None:
        self._queue: asyncio.Queue[UnitEvent] = asyncio.Queue()
        self._held: Counter[str] = Counter()

    def publish(self, event: UnitEvent) -> None:
        self._held[event.unit] += 1
        self._queue.put_nowait(event)

    def holds(self, unit: str) -> bool:
        return self._held[unit] > 0

    def __len__(self) -> int:
        """Events published and not yet taken."""
        return self._queue.qsize()

    def __aiter__(self) -> UnitEventStream:
        return self

    async def __anext__(self) -> UnitEvent:
        event = await self._queue.get()
        self._held[event.unit] -= 1
        if not self._held[event.unit]:
            del self._held[event.unit]
        return event
