"""Waiting for jobs to finish: the live status line, Ctrl-C, and the systemd-run-like summary."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from automd.ctl.client import RpcClient
from automd.ctl.context import Context, JobStillRunning
from automd.ctl.exits import job_exit_status
from automd.ctl.jobtext import FINISHED, UNIT_EXISTS, print_summary
from automd.ctl.logs import LogPrinter, follow_logs
from automd.ctl.render import format_duration


@contextmanager
def interrupted_is_still_running(job_id: str) -> Iterator[None]:
    """Ctrl-C stops automctl waiting, not the job: JobStillRunning lets main say so."""
    try:
        yield
    except KeyboardInterrupt:
        raise JobStillRunning(job_id) from None


def wait_for(
    client: RpcClient, job_id: str, ctx: Context, deadline: float | None = None
) -> dict[str, Any]:
    """Poll job.get until the job is finished, or (returned unfinished) until the monotonic
    `deadline`; a live status line on a terminal."""
    delay = 0.1
    live = ctx.err.stream.isatty() and not ctx.json
    started = time.monotonic()
    drawn = False
    try:
        while True:
            job: dict[str, Any] = client.call("job.get", {"id": job_id})["job"]
            now = time.monotonic()
            if job["state"] in FINISHED or (deadline is not None and now >= deadline):
                if drawn:
                    ctx.err.stream.write("\r\x1b[K")
                return job
            if live:
                elapsed = format_duration(time.monotonic() - started)
                unit = job["unit"] if job["state"] in UNIT_EXISTS else ""
                ctx.err.stream.write(f"\r\x1b[K{job['state']} ({elapsed}) {unit or ''}")
                ctx.err.stream.flush()
                drawn = True
            left = deadline - now if deadline is not None else delay
            time.sleep(max(0.0, min(delay, left)))
            delay = min(delay * 1.5, 1.0)
    except KeyboardInterrupt:
        if drawn:  # end the status line, so what follows starts on a line of its own
            ctx.err.stream.write("\n")
        raise


def wait_and_summarise(
    ctx: Context, job_id: str, *, follow: bool = False, quiet: bool = False, **shown: Any
) -> int:
    """run/retry --wait: wait (with --follow, printing its output), summarise, and exit with
    the job's status, as systemd-run --wait does. `shown`: more keys for --json's object."""
    with interrupted_is_still_running(job_id):
        if follow:
            follow_logs(ctx, {"id": job_id}, LogPrinter(ctx))
        job = wait_for(ctx.client, job_id, ctx)
    if ctx.json:
        # After --follow's entries (one object a line) the summary is one line too: NDJSON.
        ctx.out.json({"job": job, **shown}, compact=follow)
    elif not quiet:
        print_summary(ctx, job)
    return job_exit_status(job)
