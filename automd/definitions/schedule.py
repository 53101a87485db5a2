"""A definition's schedules ([[schedule]] tables): the model, its checks, and the unit names.

The calendar is checked by systemd itself (`systemd-analyze calendar`), never by a parser of
ours: a schedule automd accepts is one systemd's OnCalendar= takes. Both the daemon and the
schedule generator load definitions through the same loader, so a schedule automd rejects
never gets a timer.
"""

from __future__ import annotations

import functools
import re
import subprocess
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from automd.definitions.names import NAME_PATTERN

#: Where the unit names of schedules start; the ':' that follows the definition's name appears
#: in no definition or schedule name, nor in any job unit name (automd-<def>-<id>-<n>.service).
UNIT_PREFIX = "automd-schedule-"
SEPARATOR = ":"
SYSTEMD_ANALYZE = "/usr/bin/systemd-analyze"
# systemd.time(7) spans: "15m", "1h 30min", "90s", "0".
_SPAN = re.compile(r"^\s*(\d+\s*(us|ms|s|sec|m|min|h|hr|d|w)?\s*)+$")


class Overlap(StrEnum):
    """What a firing does while the schedule's previous job is unfinished."""

    SKIP = "skip"  # no job; the firing is counted and audited as skipped
    QUEUE = "queue"  # a job that waits until the previous one finished
    REPLACE = "replace"  # cancel the unfinished one(s), then run


class Schedule(BaseModel):
    """One [[schedule]] of a definition: when systemd fires it and with which parameters."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: Annotated[str, Field(pattern=f"^{NAME_PATTERN}$")]
    calendar: str = Field(description="systemd.time(7) calendar event, e.g. *-*-* 03:00:00")
    params: dict[str, Any] = Field(
        {}, description="the job's parameters, checked against the definition's at load"
    )
    randomized_delay: str | None = Field(
        None, description="RandomizedDelaySec= (a span such as 15m), fixed per timer"
    )
    persistent: bool = Field(False, description="catch up one missed firing (Persistent=)")
    overlap: Overlap = Overlap.SKIP
    enabled: bool = True

    @field_validator("calendar")
    @classmethod
    def _systemd_takes_it(cls, value: str) -> str:
        reason = calendar_problem(value)
        if reason is not None:
            raise ValueError(reason)
        return value

    @field_validator("randomized_delay")
    @classmethod
    def _a_span(cls, value: str | None) -> str | None:
        if value is not None and not _SPAN.fullmatch(value):
            raise ValueError("a time span such as 15m, 1h or 90s")
        return value


@functools.lru_cache(maxsize=256)
def calendar_problem(expression: str) -> str | None:
    """Why systemd refuses the calendar expression, or None when it takes it.

    Cached: definitions reload often and their calendars rarely change.
    """
    if not expression.strip() or "\n" in expression or len(expression) > 256:
        return "a calendar expression on one line, e.g. *-*-* 03:00:00"
    try:
        done = subprocess.run(
            [SYSTEMD_ANALYZE, "calendar", "--", expression],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"cannot check the calendar with {SYSTEMD_ANALYZE}: {exc}"
    if done.returncode == 0:
        return None
    said = done.stderr.strip().splitlines()
    return f"not a systemd calendar expression ({said[-1] if said else 'refused'})"


def unit_base(definition: str, schedule: str) -> str:
    """automd-schedule-<definition>:<schedule>, the name of the schedule's timer and service
    without the suffix. Names hold [a-z0-9_-] only, so the ':' makes every pair distinct
    (a-b + c and a + b-c differ) and no job unit can look like it."""
    for name in (definition, schedule):
        if not re.fullmatch(NAME_PATTERN, name):
            raise ValueError(f"not a definition or schedule name: {name!r}")
    return f"{UNIT_PREFIX}{definition}{SEPARATOR}{schedule}"


def parse_unit_base(unit: str) -> tuple[str, str] | None:
    """(definition, schedule) of a schedule's .timer or .service name, else None."""
    base = unit.removesuffix(".timer").removesuffix(".service")
    if not base.startswith(UNIT_PREFIX) or base.count(SEPARATOR) != 1:
        return None
    definition, schedule = base.removeprefix(UNIT_PREFIX).split(SEPARATOR)
    if not (re.fullmatch(NAME_PATTERN, definition) and re.fullmatch(NAME_PATTERN, schedule)):
        return None
    return definition, schedule
