"""The open-file budget: what automd's caps need of RLIMIT_NOFILE, the soft limit raised to
it at start, and smaller effective caps, said in the journal and in system.health, when even
the hard limit is short.

Every connection is a descriptor, and every job.logs follower holds one journal reader, which
keeps every journal file open. With the caps above the limit, accept() failed with EMFILE
before the connection cap was ever reached (docs/security.md); with the caps checked here,
it cannot, so the cap's documented 503 is what a client gets.
"""

from __future__ import annotations

import logging
import math
import os
import resource
from dataclasses import dataclass

from automd.api.system import HealthCheck
from automd.config import ServerSettings

log = logging.getLogger(__name__)

#: Descriptors kept free beyond the counted ones, for short-lived use: a caller's
#: /proc/PID/comm read at connect, SQLite's temporary files, a D-Bus reconnect, /proc reads of
#: a metrics scrape, the accept loop's spare descriptor and the optional metrics listener.
MARGIN = 64
#: Connections the optional metrics listener serves at once (a Prometheus server scrapes over
#: one; more get 503): the TCP port must not be a way to take the API's descriptors.
METRICS_CONNECTIONS = 16
#: Journal readers open at once besides followers: job.logs pages and the journal health
#: probe, one per thread of joblog's pool.
POOL_READERS = 4


@dataclass(frozen=True)
class Caps:
    """The caps that cost descriptors."""

    connections: int
    per_user: int
    followers: int

    @classmethod
    def configured(cls, settings: ServerSettings) -> Caps:
        return cls(
            connections=settings.max_connections,
            per_user=min(settings.max_connections_per_user, settings.max_connections),
            followers=settings.max_log_followers,
        )


def needed(caps: Caps, *, base: int, reader: int) -> int:
    """Descriptors the caps need: what was open before serving, the margin, the pool's
    readers, one per connection (the metrics listener's too), and one journal reader per
    follower (a follower's connection is counted among the connections)."""
    return _fixed(base, reader) + caps.connections + caps.followers * reader


def _fixed(base: int, reader: int) -> int:
    """What the caps do not scale: open before serving, margin, pool readers, metrics."""
    return base + MARGIN + POOL_READERS * reader + METRICS_CONNECTIONS


def fit(caps: Caps, limit: int, *, base: int, reader: int) -> Caps:
    """`caps`, scaled down by one factor until they need at most `limit` descriptors."""
    if needed(caps, base=base, reader=reader) <= limit:
        return caps
    available = max(0, limit - _fixed(base, reader))
    factor = available / (caps.connections + caps.followers * reader)
    connections = max(1, math.floor(caps.connections * factor))
    return Caps(
        connections=connections,
        per_user=min(connections, max(1, math.floor(caps.per_user * factor))),
        followers=max(1, math.floor(caps.followers * factor)),
    )


@dataclass(frozen=True)
class FdBudget:
    """The outcome of the check: the limit, what the caps need, the caps in force."""

    soft: int
    hard: int
    base: int
    reader: int
    configured: Caps
    effective: Caps
    #: Why the soft limit could not be raised, if it could not.
    raise_error: str | None = None

    @property
    def needed(self) -> int:
        return needed(self.configured, base=self.base, reader=self.reader)

    @property
    def lowered(self) -> bool:
        return self.effective != self.configured

    def describe(self) -> str:
        caps = self.effective
        serving = (
            f"{caps.connections} connections, {caps.per_user} per user, "
            f"{caps.followers} log followers"
        )
        if not self.lowered:
            return (
                f"open-file limit {self.soft} (hard {self.hard}); the caps need {self.needed}: "
                f"{serving}"
            )
        configured = self.configured
        why = f" ({self.raise_error})" if self.raise_error else ""
        return (
            f"open-file limit {self.soft} (hard {self.hard}{why}) is below the {self.needed} "
            f"that server.max_connections = {configured.connections}, "
            f"server.max_connections_per_user = {configured.per_user} and "
            f"server.max_log_followers = {configured.followers} need "
            f"({self.base} open at start, {self.reader} per journal reader, margin {MARGIN}, "
            f"{METRICS_CONNECTIONS} metrics connections); "
            f"serving at most {serving}; raise LimitNOFILE= in automd.service"
        )

    def health(self) -> HealthCheck:
        return HealthCheck(ok=not self.lowered, detail=self.describe())


def open_descriptors() -> int:
    """How many descriptors this process holds now."""
    return len(os.listdir("/proc/self/fd")) - 1  # less the one listdir itself opened


def check(settings: ServerSettings, *, base: int, reader: int) -> FdBudget:
    """Raise the soft limit towards what the caps need (up to the hard limit), and fit the
    caps into whatever limit results. Logs a warning when the caps are lowered."""
    configured = Caps.configured(settings)
    want = needed(configured, base=base, reader=reader)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    ceiling = want if hard == resource.RLIM_INFINITY else min(want, hard)
    error = None
    if soft != resource.RLIM_INFINITY and soft < ceiling:
        try:
            # No privilege needed below the hard limit. (glibc makes it prlimit64, which the
            # unit's SystemCallFilter= allows; setrlimit itself is in @resources.)
            resource.setrlimit(resource.RLIMIT_NOFILE, (ceiling, hard))
        except (OSError, ValueError) as exc:
            error = f"cannot raise the soft limit: {exc}"
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    limit = want if soft == resource.RLIM_INFINITY else soft
    budget = FdBudget(
        soft=soft,
        hard=hard,
        base=base,
        reader=reader,
        configured=configured,
        effective=fit(configured, limit, base=base, reader=reader),
        raise_error=error,
    )
    if budget.lowered:
        log.warning("%s", budget.describe())
    else:
        log.info("%s", budget.describe())
    return budget
