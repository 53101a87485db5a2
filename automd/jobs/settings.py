"""The job service's settings, taken from the [jobs] section of automd.toml."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class JobSettings:
    max_running: int = 16
    max_unfinished: int = 100_000
    idempotency_window_seconds: float = 86400.0
    #: How often the running jobs in the store are compared with the units followed.
    self_check_seconds: float = 10.0
