"""systemd's service watchdog: WATCHDOG=1 pings from the event loop, so a hung loop is restarted.

With `WatchdogSec=` in automd.service, systemd passes `WATCHDOG_USEC` (and `WATCHDOG_PID`) and
expects a ping within that limit; otherwise it kills automd and restarts it (a watchdog timeout
is a failure for `Restart=on-failure`). The pings come from a task on the event loop itself,
so they stop when the loop stops running callbacks. Nothing is sent when systemd did not enable
the watchdog for this process (development, tests on the host).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Mapping

from automd.sd import notify

log = logging.getLogger(__name__)

#: At most this long between tries of a ping that could not be sent.
_RETRY_SECONDS = 0.5


def watchdog_limit(
    environ: Mapping[str, str] | None = None, pid: int | None = None
) -> float | None:
    """The watchdog limit in seconds if systemd enabled it for this process, else None.

    sd_watchdog_enabled(3): `WATCHDOG_USEC` is a positive count of microseconds, and a set
    `WATCHDOG_PID` must be our own pid (a child that inherited the variables must not ping).
    """
    env = os.environ if environ is None else environ
    usec_text = env.get("WATCHDOG_USEC", "")
    if not usec_text:
        return None
    if not _is_decimal(usec_text) or int(usec_text) == 0:
        log.warning("ignoring WATCHDOG_USEC=%r: not a positive number of microseconds", usec_text)
        return None
    pid_text = env.get("WATCHDOG_PID", "")
    if pid_text:
        if not _is_decimal(pid_text):
            log.warning("ignoring the watchdog: WATCHDOG_PID=%r is not a pid", pid_text)
            return None
        if int(pid_text) != (os.getpid() if pid is None else pid):
            return None  # meant for another process
    return int(usec_text) / 1_000_000


def _is_decimal(text: str) -> bool:
    return text.isascii() and text.isdigit()


async def ping(limit: float, healthy: Callable[[], bool] | None = None) -> None:
    """Send WATCHDOG=1 every `limit / 2` seconds, for as long as the loop runs (until cancelled).

    With `healthy`, a ping is sent only while it returns True: systemd then restarts a daemon
    that is alive but broken. A ping that could not be sent is tried again every
    `min(limit / 40, 0.5)` seconds until one is. A wake-up late by more than a quarter of the
    limit is logged: the loop was blocked, and a longer block would have been fatal.
    """
    period = limit / 2
    pinger = _Pinger(limit, retry=min(period / 20, _RETRY_SECONDS))
    was_healthy = True
    last = time.monotonic()
    while True:
        is_healthy = healthy is None or healthy()
        sent = is_healthy and pinger.ping()
        if is_healthy != was_healthy:
            if is_healthy:
                log.warning("healthy again: watchdog pings resumed")
            else:
                log.error("unhealthy: withholding watchdog pings, systemd restarts automd")
            was_healthy = is_healthy
        # A ping that could not be sent is tried again soon, not a period later: PID 1's
        # notification queue is full while PID 1 is busy (net.unix.max_dgram_qlen datagrams:
        # 10 where PID 1 could not raise it, as in a container), and two pings lost in a row
        # are fatal. The unhealthy wait a whole period.
        wait = pinger.retry if is_healthy and not sent else period
        await asyncio.sleep(wait)
        now = time.monotonic()
        late = now - last - wait
        if late > limit / 4:
            log.warning(
                "the event loop was blocked for about %.1f s (the watchdog limit is %g s)",
                late,
                limit,
            )
        last = now


class _Pinger:
    """Sends WATCHDOG=1, and says in the journal when pings stop getting through: a warning at
    the first one refused, an error once none has got through for three quarters of the limit
    (systemd acts at the limit: the journal should say why first), a warning when one does."""

    def __init__(self, limit: float, retry: float) -> None:
        self.retry = retry
        self._limit = limit
        self._last_sent = time.monotonic()
        self._failing = False
        self._alarmed = False

    def ping(self) -> bool:
        now = time.monotonic()
        if notify(WATCHDOG="1"):
            if self._failing:
                log.warning("watchdog pings reach systemd again")
            self._last_sent, self._failing, self._alarmed = now, False, False
            return True
        if not self._failing:
            self._failing = True
            log.warning(
                "a watchdog ping could not be sent to systemd; trying again every %g s", self.retry
            )
        silent = now - self._last_sent
        if not self._alarmed and silent >= self._limit * 0.75:
            self._alarmed = True
            log.error(
                "no watchdog ping has reached systemd for %.1f s: systemd restarts automd "
                "once %g s pass without one",
                silent,
                self._limit,
            )
        return False


def start_watchdog(healthy: Callable[[], bool] | None = None) -> asyncio.Task[None]:
    """Start pinging if systemd enabled the watchdog; the caller cancels the task on exit.

    When the watchdog is not enabled the task ends at once, having sent nothing.
    """
    limit = watchdog_limit()
    if limit is None:
        log.debug("systemd watchdog not enabled")
    else:
        log.info("systemd watchdog enabled: pinging every %g s (limit %g s)", limit / 2, limit)
    task = asyncio.get_running_loop().create_task(
        ping(limit, healthy) if limit is not None else asyncio.sleep(0),
        name="automd-watchdog",
    )
    task.add_done_callback(_report_crash)
    return task


def _report_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and (exc := task.exception()) is not None:
        # No more pings: systemd will restart automd after the limit; say why.
        log.error("watchdog pings stopped", exc_info=exc)
