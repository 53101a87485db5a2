"""How automctl describes a job to a person: states, outcomes, runtimes, relative times."""

from __future__ import annotations

import pwd
from datetime import datetime
from typing import Any

from automd.api.exit_status import exit_status_name
from automd.ctl.context import Context
from automd.ctl.render import format_duration


def user_name(uid: int, *, local: bool = True) -> str:
    """The user's name, or the uid when this host has no such user. Not `local` (automctl -H):
    the uid, since this machine's names need not be the other host's."""
    if not local:
        return str(uid)
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


FINISHED = {"succeeded", "failed", "timed_out", "cancelled", "unknown"}
# A job's transient unit exists only while an attempt runs; after that systemd drops it.
UNIT_EXISTS = {"starting", "running"}
STATE_COLOURS = {
    "succeeded": "green",
    "failed": "red",
    "timed_out": "red",
    "unknown": "red",
    "cancelled": "yellow",
    "waiting_retry": "yellow",
}


def runtime(job: dict[str, Any]) -> str:
    if not job["finished_at"]:
        return "-"
    created = datetime.fromisoformat(job["created_at"])
    finished = datetime.fromisoformat(job["finished_at"])
    return format_duration((finished - created).total_seconds())


def cancel_outcome(job: dict[str, Any]) -> str | None:
    """How a cancelled job ended, in automd's words ("cancelled (stopped with SIGTERM)"):
    systemd calls a unit stopped by a cancel a success, so its result must not be shown."""
    if job["state"] != "cancelled":
        return None
    return str(job.get("outcome") or "cancelled")


def print_summary(ctx: Context, job: dict[str, Any]) -> None:
    state = ctx.err.paint(job["state"], STATE_COLOURS.get(job["state"], "bold"))
    tries = f" after {job['attempts']} attempts" if job["attempts"] > 1 else ""
    result = cancel_outcome(job) or f"{job['result'] or '-'} ({state})"
    ctx.err.line(f"Finished with result: {result}{tries}")
    if job["signal"] is not None:
        ctx.err.line(f"Main process terminated with: signal {job['signal']}")
    elif job["exit_code"] is not None:
        status = exit_status_name(job["exit_code"])
        ctx.err.line(f"Main process terminated with: exit status {status}")
    # automctl logs works for whoever may see the job; journalctl needs journal access.
    ctx.err.line(f"Job runtime: {runtime(job)}  (output: automctl logs {job['id']})")


def result_with_status(job: dict[str, Any]) -> str:
    outcome = str(job["result"] or "")
    if job["exit_code"] not in (None, 0):
        outcome += f" ({exit_status_name(job['exit_code'])})"
    if job["signal"] is not None:
        outcome += f" (signal {job['signal']})"
    return outcome


def relative_time(iso: str | None, now: datetime | None = None) -> str:
    """'3min ago' for a past RFC 3339 time, like systemctl's relative timestamps."""
    if not iso:
        return "-"
    moment = datetime.fromisoformat(iso)
    now = now or datetime.now(moment.tzinfo)
    seconds = (now - moment).total_seconds()
    return f"{format_duration(abs(seconds))} {'ago' if seconds >= 0 else 'from now'}"
