"""A consumer of `Systemd.events` for tests: remembers every event, waits for one unit's."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

from automd.systemd.events import UnitEventStream, UnitFinished, UnitStarted
from automd.systemd.outcome import UnitOutcome


class Recorder:
    """Everything a Systemd published, by unit; checks a unit never starts after its end."""

    def __init__(self, wait_seconds: float) -> None:
        self.wait_seconds = wait_seconds
        self.started: dict[str, list[str]] = {}
        self.finished: dict[str, list[UnitOutcome]] = {}
        self._changed = asyncio.Condition()
        self._stream: UnitEventStream | None = None

    @contextlib.asynccontextmanager
    async def reading(self, stream: UnitEventStream) -> AsyncIterator[Recorder]:
        """Consume `stream` (as the job follower would) while the block runs."""
        self._stream = stream
        task = asyncio.create_task(self._consume(stream))
        try:
            yield self
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            self._stream = None

    async def _consume(self, stream: UnitEventStream) -> None:
        async for event in stream:
            if isinstance(event, UnitStarted):
                assert event.unit not in self.finished, f"{event.unit} started after it finished"
                self.started.setdefault(event.unit, []).append(event.invocation_id)
            elif isinstance(event, UnitFinished):
                self.finished.setdefault(event.unit, []).append(event.outcome)
            async with self._changed:
                self._changed.notify_all()

    async def _wait(self, what: str, ready: Callable[[], bool]) -> None:
        try:
            async with asyncio.timeout(self.wait_seconds), self._changed:
                await self._changed.wait_for(ready)
        except TimeoutError:
            raise AssertionError(f"no {what} within {self.wait_seconds:g} s") from None

    async def wait_started(self, unit: str) -> str:
        await self._wait(f"start of {unit}", lambda: unit in self.started)
        return self.started[unit][0]

    async def outcome(self, unit: str) -> UnitOutcome:
        """The unit's one reported end (fails if it was reported twice)."""
        await self._wait(f"end of {unit}", lambda: unit in self.finished)
        (outcome,) = self.finished[unit]
        return outcome

    async def settled(self) -> None:
        """Every event published so far has been recorded."""
        stream = self._stream
        assert stream is not None, "not reading a stream"
        await self._wait("empty event stream", lambda: len(stream) == 0)
