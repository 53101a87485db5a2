"""journald's Synchronize call: a point after which everything logged before it is stored.

When systemd reports that a job's unit ended, the job's last lines may still be queued in its
stdout stream's socket, and on a busy machine journald lags further. journald answers
Synchronize (varlink, the call behind `journalctl --sync`) only after handling every message
queued to it before the call: it defers the reply at a lower priority than its input sources.
So a read after the reply sees all of a finished job's output, however far journald lagged,
with no guess at a delay. Concurrent askers share requests: each is answered by one sent
after it asked.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time

log = logging.getLogger(__name__)

SOCKET = "/run/systemd/journal/io.systemd.journal"
#: journald fsyncs every journal file before it answers; beyond this, the answer is "unknown".
TIMEOUT_SECONDS = 10.0
_REQUEST = json.dumps({"method": "io.systemd.Journal.Synchronize", "parameters": {}}).encode()


class JournalSync:
    """Asks journald to synchronize, one request at a time, shared by everyone waiting."""

    def __init__(self, socket_path: str = SOCKET, timeout: float = TIMEOUT_SECONDS) -> None:
        self._socket_path = socket_path
        self._timeout = timeout
        self._lock = asyncio.Lock()
        #: The request not sent yet: whoever asks now is covered by it.
        self._next: asyncio.Task[bool] | None = None
        #: Wall-clock time at which the last request that journald answered was sent.
        self._synced_at: float | None = None
        #: The request in flight, and when it was sent: it covers whatever ended before.
        self._inflight: tuple[float, asyncio.Task[bool]] | None = None
        self._warned = False
        #: Requests that failed or timed out (journald absent, not allowed, not answering).
        self.failures = 0

    async def synchronized_since(self, when: float) -> bool:
        """True once journald has stored everything logged before wall-clock time `when`:
        at once if an answered request was sent after it, else after a new request. False
        when journald cannot say so (then callers fall back to waiting a while)."""
        if self._synced_at is not None and self._synced_at >= when:
            return True
        inflight = self._inflight
        if inflight is not None and inflight[0] >= when:  # sent after it ended: it covers it
            return await asyncio.shield(inflight[1])
        return await self.synchronize()

    async def synchronize(self) -> bool:
        """True once journald has stored everything logged before this call."""
        if self._next is None:
            self._next = asyncio.get_running_loop().create_task(self._round())
        return await asyncio.shield(self._next)

    async def _round(self) -> bool:
        async with self._lock:  # one request in flight; askers meanwhile wait for the next
            self._next = None
            sent_at = time.time()
            this = asyncio.current_task()
            assert this is not None  # a round runs as its own task (synchronize())
            self._inflight = (sent_at, this)
            try:
                async with asyncio.timeout(self._timeout):
                    answered = await self._request()
            except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError) as exc:
                answered = False
                self._failed(f"{type(exc).__name__}: {exc}")
            finally:
                self._inflight = None
            if answered:
                self._synced_at = max(self._synced_at or 0.0, sent_at)
            return answered

    async def _request(self) -> bool:
        reader, writer = await asyncio.open_unix_connection(self._socket_path)
        try:
            writer.write(_REQUEST + b"\0")
            reply = json.loads((await reader.readuntil(b"\0"))[:-1])
        finally:
            writer.close()
        if not isinstance(reply, dict) or "error" in reply:
            self._failed(f"journald answered {reply!r}")
            return False
        return True

    def _failed(self, why: str) -> None:
        self.failures += 1
        if not self._warned:  # once: without journald every follower would say it again
            self._warned = True
            log.warning("cannot synchronize with journald (%s); a finished job's output is "
                        "taken as complete a moment after it ends instead", why)  # fmt: skip
        else:
            log.debug("cannot synchronize with journald (%s)", why)
