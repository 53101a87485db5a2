"""Printing a job's output (job.logs): pages, or following until the job ends."""

from __future__ import annotations

import base64
import json
import time
from datetime import datetime
from typing import Any

from automd.ctl.client import DaemonUnreachable
from automd.ctl.context import Context

#: While following, how long to keep trying when the daemon restarts (jobs keep running).
RECONNECT_SECONDS = 30.0


#: -o/--output, as journalctl names them: cat (the text only, the default), short (a
#: timestamp first), json (one entry object a line, as --json).
LOG_FORMATS = ("cat", "short", "json")


def _stamp(at: str) -> str:
    """journalctl's short timestamp, in local time: `Nov 22 11:00:01`."""
    return datetime.fromisoformat(at).astimezone().strftime("%b %d %H:%M:%S")


class LogPrinter:
    """Writes entries as the job wrote them (exact bytes), or one JSON object per line; in cat
    and short, a line `-- attempt N --` where a retried job's next attempt begins."""

    def __init__(self, ctx: Context, output: str | None = None) -> None:
        self.ctx = ctx
        self.output = output or ("json" if ctx.json else "cat")
        self.count = 0
        self._attempt: int | None = None

    def entries(self, entries: list[dict[str, Any]]) -> None:
        stream = self.ctx.out.stream
        for entry in entries:
            self.count += 1
            if self.output == "json":
                stream.write(json.dumps(entry, sort_keys=True) + "\n")
                continue
            attempt = entry.get("attempt")
            if self._attempt is not None and attempt != self._attempt:
                stream.write(self.ctx.out.paint(f"-- attempt {attempt} --", "bold") + "\n")
            self._attempt = attempt
            prefix = f"{_stamp(entry['at'])} " if self.output == "short" else ""
            text = entry["message"]
            priority = entry.get("priority")
            if priority is not None and priority <= 3:  # err and worse, as journalctl does
                text = self.ctx.out.paint(text, "red")
            if entry.get("message_base64") and hasattr(stream, "buffer"):
                stream.write(prefix)
                stream.flush()
                stream.buffer.write(base64.b64decode(entry["message_base64"]) + b"\n")
            else:
                stream.write(prefix + text + "\n")
        stream.flush()


def print_logs(
    ctx: Context, params: dict[str, Any], *, follow: bool, output: str | None = None
) -> dict[str, Any]:
    """Print the job's output; returns the last job.logs result."""
    printer = LogPrinter(ctx, output)
    if not follow:
        while True:
            result: dict[str, Any] = ctx.client.call("job.logs", params)
            printer.entries(result["entries"])
            if not result["more"]:
                return result
            params = {**params, "cursor": result["cursor"], "tail": None}
    return follow_logs(ctx, params, printer)


def follow_logs(ctx: Context, params: dict[str, Any], printer: LogPrinter) -> dict[str, Any]:
    """Stream entries until the job ends; resume from the last cursor if automd restarts."""
    cursor: str | None = params.get("cursor")
    followed = False  # the daemon streamed to us at least once

    def on_part(part: dict[str, Any]) -> None:
        nonlocal cursor, followed
        followed = True
        printer.entries(part["entries"])
        cursor = part["cursor"] or cursor

    gone_since: float | None = None
    while True:
        request = {**params, "follow": True}
        if cursor is not None:
            request = {**request, "cursor": cursor, "tail": None}
        try:
            result: dict[str, Any] = ctx.client.stream("job.logs", request, on_part)
        except DaemonUnreachable:
            # automd went away mid-follow (a restart): the job runs on, so retry for a
            # while. Unreachable from the start is an error like for any other verb.
            if not followed:
                raise
            gone_since = gone_since or time.monotonic()
            if time.monotonic() - gone_since > RECONNECT_SECONDS:
                raise
            time.sleep(0.5)
            continue
        followed = True
        gone_since = None
        printer.entries(result["entries"])
        cursor = result["cursor"] or cursor
        if result["finished"]:
            return result
