"""Times as people type them (`--since 1h`, `yesterday`, a date) -> RFC 3339 for the API, and
the API's times as automctl's tables show them (local time, as systemctl list-timers)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

_UNITS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_SPAN = re.compile(r"\s*(\d{1,9})\s*(s|sec|min|m|h|d|w)")


def parse_time(text: str, now: datetime | None = None) -> str:
    """`1h`, `2d 3h`, `30m ago`, `now`, `today`, `yesterday`, or an ISO date/time (local time
    unless it has an offset, as journalctl reads it); ValueError says what is accepted."""
    now = now or datetime.now(UTC)
    word = text.strip().lower()
    try:
        if word in ("now", "today", "yesterday"):
            local = now.astimezone()
            if word != "now":
                local = local.replace(hour=0, minute=0, second=0, microsecond=0)
            return _rfc3339(local - timedelta(days=word == "yesterday"))
        spans = word.removesuffix("ago").strip()
        if spans and _SPAN.sub("", spans) == "":
            seconds = sum(int(n) * _UNITS[unit] for n, unit in _SPAN.findall(spans))
            return _rfc3339(now - timedelta(seconds=seconds))
        moment = datetime.fromisoformat(text.strip())
        return _rfc3339(moment if moment.tzinfo else moment.astimezone())
    except (ValueError, OverflowError):
        raise ValueError(
            f"{text[:40]!r} is not a time: use e.g. 30m, 1h, 2d, yesterday or 2026-11-22T08:00"
        ) from None


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def local_time(iso: str | None) -> str:
    """An RFC 3339 time in local time, `Sun 2026-12-06 12:40:02 CET`; `-` for none."""
    if not iso:
        return "-"
    return datetime.fromisoformat(iso).astimezone().strftime("%a %Y-%m-%d %H:%M:%S %Z")
