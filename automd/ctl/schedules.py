"""automctl's schedule verbs: `schedules` (a table like systemctl list-timers), `schedule run`,
and the hidden `__fire` the schedules' services run when their timer elapses."""

from __future__ import annotations

import argparse
import os
from datetime import UTC, datetime
from typing import Any

from automd.ctl.context import Context, UsageError
from automd.ctl.exits import Exit
from automd.ctl.jobtext import STATE_COLOURS
from automd.ctl.render import format_duration
from automd.ctl.times import local_time

#: What systemd passes to a unit a timer started: the timer's elapse, µs since the epoch.
TRIGGER_ENV = "TRIGGER_TIMER_REALTIME_USEC"
FIRE_VERB = "__fire"


def _left(iso: str | None, now: datetime) -> str:
    if not iso:
        return "-"
    seconds = (datetime.fromisoformat(iso) - now).total_seconds()
    return format_duration(seconds) + " left" if seconds >= 0 else "-"


def cmd_schedules(ctx: Context, args: argparse.Namespace) -> int:
    listed = ctx.client.call("schedule.list")
    if ctx.json:
        ctx.out.json(listed)
        return int(Exit.OK)
    now = datetime.now(UTC)
    rows = [["NEXT", "LEFT", "LAST", "SCHEDULE", "DEFINITION", "LAST STATE"]]
    for s in listed["schedules"]:
        state = s["last_state"] or "-"
        painted = ctx.out.paint(state, STATE_COLOURS.get(state, "bold")) if s["last_state"] else "-"
        name = s["name"] if s["enabled"] else f"{s['name']} (disabled)"
        rows.append([local_time(s["next_elapse"]), _left(s["next_elapse"], now),
                     local_time(s["last_trigger"]), name, s["definition"], painted])  # fmt: skip
    ctx.out.table(rows)
    ctx.err.line(f"{len(listed['schedules'])} schedules listed.")
    return int(Exit.OK)


def schedule_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["run"], help="run: fire the schedule now")
    parser.add_argument("schedule", metavar="DEFINITION:SCHEDULE", help="the schedule")


def _split(name: str) -> tuple[str, str]:
    definition, sep, schedule = name.partition(":")
    if not sep or not definition or not schedule:
        raise UsageError(f"{name[:40]!r}: name the schedule as DEFINITION:SCHEDULE")
    return definition, schedule


def _report(ctx: Context, fired: dict[str, Any]) -> int:
    if ctx.json:
        ctx.out.json(fired)
    else:
        ctx.out.line(fired["detail"])
    return int(Exit.OK)


def cmd_schedule(ctx: Context, args: argparse.Namespace) -> int:
    definition, schedule = _split(args.schedule)
    fired = ctx.client.call("schedule.run_now", {"definition": definition, "schedule": schedule})
    return _report(ctx, fired)


def fire_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("definition")
    parser.add_argument("schedule")


def cmd_fire(ctx: Context, args: argparse.Namespace) -> int:
    """The firing service's command: one schedule.fire with the timer's trigger time.

    Without TRIGGER_TIMER_REALTIME_USEC (the service started by hand, not by its timer) the
    firing is now: each such start is a firing of its own, as an admin starting it expects.
    """
    params: dict[str, Any] = {"definition": args.definition, "schedule": args.schedule}
    raw = os.environ.get(TRIGGER_ENV)
    if raw is not None:
        if not raw.isdigit():
            raise UsageError(f"{TRIGGER_ENV}={raw[:30]!r} is not a number of microseconds")
        params["trigger_usec"] = int(raw)
    return _report(ctx, ctx.client.call("schedule.fire", params))
