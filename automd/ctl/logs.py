"""Printing a job's output (job.logs): pages, or following until the job ends."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

from automd.ctl.client import DaemonUnreachable
from automd.ctl.context import Context

#: While following, how long to keep trying when the daemon restarts (jobs keep running).
RECONNECT_SECONDS = 30.0


class LogPrinter:
    """Writes entries as the job wrote them (exact bytes), or one JSON object per line."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.count = 0

    def entries(self, entries: list[dict[str, Any]]) -> None:
        stream = self.ctx.out.stream
        for entry in entries:
            self.count += 1
            if self.ctx.json:
                stream.write(json.dumps(entry, sort_keys=True) + "\n")
                continue
            text = entry["message"]
            priority = entry.get("priority")
            if priority is not None and priority <= 3:  # err and worse, as journalctl does
                text = self.ctx.out.paint(text, "red")
            if entry.get("message_base64") and hasattr(stream, "buffer"):
                stream.flush()
                stream.buffer.write(base64.b64decode(entry["message_base64"]) + b"\n")
            else:
                stream.write(text + "\n")
        stream.flush()


def print_logs(ctx: Context, params: dict[str, Any], *, follow: bool) -> dict[str, Any]:
    """Print the job's output; returns the last job.logs result."""
    printer = LogPrinter(ctx)
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
