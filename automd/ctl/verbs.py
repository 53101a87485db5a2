"""automctl's verbs: one function per verb, each making one or a few JSON-RPC calls."""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

from automd import __version__
from automd.api.codes import ErrorCode
from automd.api.exit_status import exit_status_name
from automd.ctl.client import RemoteError
from automd.ctl.context import Context, UsageError
from automd.ctl.exits import Exit, job_exit_status
from automd.ctl.jobtext import (
    FINISHED,
    STATE_COLOURS,
    UNIT_EXISTS,
    cancel_outcome,
    relative_time,
    result_with_status,
    runtime,
    user_name,
)
from automd.ctl.logs import print_logs
from automd.ctl.render import format_duration
from automd.ctl.waiting import interrupted_is_still_running, wait_and_summarise, wait_for


def split_assignments(pairs: list[str]) -> list[tuple[str, str]]:
    """key=value words -> (key, value); checked before automctl asks the daemon anything."""
    split = []
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key:
            raise UsageError(
                f"{pair[:40]!r} is not key=value (automctl defs DEFINITION lists keys)"
            )
        split.append((key, text))
    return split


def parse_assignments(pairs: list[str], schema: dict[str, Any]) -> dict[str, str | int | bool]:
    """key=value words -> params, typed by the definition's JSON Schema."""
    properties: dict[str, Any] = schema.get("properties", {})
    params: dict[str, str | int | bool] = {}
    for key, text in split_assignments(pairs):
        kind = properties.get(key, {}).get("type")
        if kind == "integer":
            try:
                params[key] = int(text)
            except ValueError:
                raise UsageError(f"{key}: {text[:40]!r} is not an integer") from None
        elif kind == "boolean":
            lowered = text.lower()
            if lowered not in ("true", "false", "yes", "no", "1", "0"):
                raise UsageError(f"{key}: {text[:40]!r} is not true or false")
            params[key] = lowered in ("true", "yes", "1")
        else:
            params[key] = text  # unknown keys go through: the daemon names them in its error
    return params


def cmd_run(ctx: Context, args: argparse.Namespace) -> int:
    split_assignments(args.params)  # a malformed word fails before the daemon is asked
    definition = ctx.client.call("definition.get", {"name": args.definition})
    params = parse_assignments(args.params, definition["params_schema"])
    request: dict[str, Any] = {"definition": args.definition, "params": params}
    if args.idempotency_key:
        request["idempotency_key"] = args.idempotency_key
    submitted = ctx.client.call("job.submit", request)
    job = submitted["job"]
    if args.print_id:
        ctx.out.line(job["id"])
    elif not ctx.json:
        replay = " (an earlier job with this idempotency key)" if submitted["replayed"] else ""
        ctx.out.line(f"Job {job['id']} {job['state']}{replay}")
    if not (args.wait or args.follow):
        if ctx.json:
            ctx.out.json(submitted)
        return int(Exit.OK)
    extra = {"replayed": submitted["replayed"]}
    return wait_and_summarise(ctx, job["id"], follow=args.follow, quiet=args.print_id, **extra)


def cmd_logs(ctx: Context, args: argparse.Namespace) -> int:
    """A job's output: all of it, the last -n lines, and with -f whatever comes until it ends."""
    params: dict[str, Any] = {"id": args.id}
    if args.lines is not None:
        params["tail"] = args.lines
    if args.attempt is not None:
        params["attempt"] = args.attempt
    print_logs(ctx, params, follow=args.follow, output=args.output)
    return int(Exit.OK)


def cmd_status(ctx: Context, args: argparse.Namespace) -> int:
    detail = ctx.client.call("job.get", {"id": args.id})
    if ctx.json:
        ctx.out.json(detail)
        return int(Exit.OK)
    job = detail["job"]
    state = ctx.out.paint(job["state"], STATE_COLOURS.get(job["state"], "bold"))
    rows = [
        ["Job:", job["id"]],
        ["Definition:", job["definition"] + _revision(job)],
        ["State:", state + (" (cancel requested)" if job["cancel_requested"] else "")],
        ["Params:", json.dumps(job["params"], sort_keys=True)],
        ["Created:", job["created_at"]],
        ["Attempts:", f"{job['attempts']} of {job['max_attempts']}"],
    ]
    if job["next_attempt_at"]:
        rows.append(["Next attempt:", job["next_attempt_at"]])
    if job["result"]:
        outcome = cancel_outcome(job) or job["result"]
        if job["exit_code"] is not None:
            outcome += f", exit status {exit_status_name(job['exit_code'])}"
        if job["signal"] is not None:
            outcome += f", signal {job['signal']}"
        rows.append(["Result:", outcome])
    if job["finished_at"]:
        rows.append(["Finished:", f"{job['finished_at']} (ran {runtime(job)})"])
    if job["unit"]:
        gone = "" if job["state"] in UNIT_EXISTS else " (gone: systemd removes it once it ends)"
        rows.append(["Unit:", job["unit"] + gone])
    rows.append(["Logs:", f"automctl logs {job['id']}"])
    ctx.out.table(rows)
    for attempt in detail["attempts"]:
        line = f"  attempt {attempt['number']}: {attempt['state']}"
        if attempt["result"]:
            line += f", {attempt['result']}"
            if attempt["number"] == job["attempts"] and job["state"] == "cancelled":
                line += " (stopped by the cancel)"
        if attempt["retry_reason"]:
            line += f" — {attempt['retry_reason']}"
        ctx.out.line(line)
    return int(Exit.OK)


def _revision(job: dict[str, Any]) -> str:
    """` (revision 3)`: what the job runs; nothing for a job recorded before revisions."""
    return f" (revision {job['revision']})" if job.get("revision") is not None else ""


def _cancel(ctx: Context, job_id: str) -> tuple[dict[str, Any], str]:
    """Cancel one job: the job and a note. A finished job is left as it is, not an error,
    as `systemctl stop` of a stopped unit succeeds."""
    try:
        job: dict[str, Any] = ctx.client.call("job.cancel", {"id": job_id})["job"]
    except RemoteError as error:
        if error.code != ErrorCode.INVALID_JOB_STATE:
            raise
        job = ctx.client.call("job.get", {"id": job_id})["job"]
        return job, f"already {job['state']}, nothing to cancel"
    stopping = job["cancel_requested"] and job["state"] != "cancelled"
    return job, "stopping" if stopping else job["state"]


def cmd_cancel(ctx: Context, args: argparse.Namespace) -> int:
    results = [_cancel(ctx, job_id) for job_id in args.ids]
    if ctx.json:
        ctx.out.json({"jobs": [job for job, _note in results]})
    else:
        for job, note in results:
            ctx.out.line(f"Job {job['id']}: {note}")
    return int(Exit.OK)


def cmd_audit(ctx: Context, args: argparse.Namespace) -> int:
    params: dict[str, Any] = {"limit": args.limit}
    for name in ("since", "uid", "method", "outcome"):
        if getattr(args, name) is not None:
            params[name] = getattr(args, name)
    result = ctx.client.call("audit.list", params)
    if ctx.json:
        ctx.out.json(result)
        return int(Exit.OK)
    rows = [["TIME", "UID", "PROCESS", "METHOD", "OUTCOME", "JOB / DETAIL"]]
    for entry in result["entries"]:
        outcome = entry["outcome"]
        colour = {"ok": "green", "denied": "red", "error": "yellow"}.get(outcome, "bold")
        rows.append([
            entry["at"].replace("T", " ")[:19], str(entry["uid"]), entry["process"] or "?",
            entry["method"], ctx.out.paint(outcome, colour),
            entry["job_id"] or entry["detail"] or entry["definition"] or "",
        ])  # fmt: skip
    ctx.out.table(rows)
    return int(Exit.OK)


def cmd_list(ctx: Context, args: argparse.Namespace) -> int:
    if not args.watch:
        return _list_once(ctx, args)
    # --watch: redraw until Ctrl-C, which ends it normally (exit 0). On a terminal the screen
    # is cleared first; in a pipe or a log each listing simply follows the last.
    clear = ctx.out.stream.isatty() and not ctx.json
    try:
        while True:
            if clear:
                ctx.out.stream.write("\x1b[H\x1b[2J")
            _list_once(ctx, args)
            if not (clear or ctx.json):  # --json: one object a line (NDJSON) already
                ctx.out.line()
            time.sleep(args.watch)
    except KeyboardInterrupt:
        return int(Exit.OK)


def _list_once(ctx: Context, args: argparse.Namespace) -> int:
    params: dict[str, Any] = {"limit": args.limit}
    if args.state:
        params["state"] = args.state
    if args.definition:
        params["definition"] = args.definition
    if args.since:
        params["since"] = args.since
    if args.user is not None:
        params["caller_uid"] = args.user
    result = ctx.client.call("job.list", params)
    if ctx.json:
        ctx.out.json(result, compact=bool(args.watch))
        return int(Exit.OK)
    # Whose job each is, once the listing holds anyone else's (an administrator's view).
    owners = {job.get("caller_uid", os.getuid()) for job in result["jobs"]} - {os.getuid()}
    rows = [["ID", "DEFINITION", "STATE", "CREATED", *(["OWNER"] if owners else []), "RESULT"]]
    for job in result["jobs"]:
        outcome = cancel_outcome(job) or result_with_status(job)
        state = ctx.out.paint(job["state"], STATE_COLOURS.get(job["state"], "bold"))
        owner = [user_name(job["caller_uid"], local=not ctx.remote)] if owners else []
        rows.append(
            [job["id"], job["definition"], state, relative_time(job["created_at"]), *owner,
             outcome]
        )  # fmt: skip
    ctx.out.table(rows)
    if result["next_cursor"]:
        ctx.err.line(f"(more: -n {args.limit * 2}, or the API's cursor {result['next_cursor']})")
    return int(Exit.OK)


def cmd_retry(ctx: Context, args: argparse.Namespace) -> int:
    params: dict[str, Any] = {"id": args.id}
    if args.current:
        params["revision"] = "current"
    job = ctx.client.call("job.retry", params)["job"]
    if not ctx.json:
        ctx.out.line(f"Job {job['id']} {job['state']} (attempt {job['attempts'] + 1} next)")
    if args.wait:
        return wait_and_summarise(ctx, job["id"])
    if ctx.json:
        ctx.out.json({"job": job})
    return int(Exit.OK)


def cmd_wait(ctx: Context, args: argparse.Namespace) -> int:
    """Wait for jobs to finish; with --success, exit non-zero if any did not succeed."""
    finished, running = [], []
    deadline = time.monotonic() + args.wait_timeout if args.wait_timeout else None
    for job_id in args.ids:
        with interrupted_is_still_running(job_id):
            job = wait_for(ctx.client, job_id, ctx, deadline)
        if job["state"] not in FINISHED:
            running.append(job)
            continue
        finished.append(job)
        if not ctx.json:  # each job as it is seen finished: progress, in a log too
            state = ctx.out.paint(job["state"], STATE_COLOURS.get(job["state"], "bold"))
            how = cancel_outcome(job)
            ctx.out.line(
                f"Job {job['id']}: {state}" + (how.removeprefix("cancelled") if how else "")
            )
    if ctx.json:
        ctx.out.json({"jobs": finished + running})
    if running:
        # Like Ctrl-C, the jobs run on: say which, and that automctl stopped waiting.
        names = ", ".join(f"{job['id']} ({job['state']})" for job in running)
        ctx.err.line(f"automctl: still running after {args.wait_timeout:g}s: {names}")
        return int(Exit.TEMPFAIL)
    if args.success and any(job["state"] != "succeeded" for job in finished):
        failed = next(job for job in finished if job["state"] != "succeeded")
        return job_exit_status(failed)
    return int(Exit.OK)


def cmd_version(ctx: Context, args: argparse.Namespace) -> int:
    result = ctx.client.call("system.version")
    if ctx.json:
        ctx.out.json({"automctl": __version__, **result})
        return int(Exit.OK)
    ctx.out.table(
        [
            ["automctl", __version__],
            ["automd", f"{result['version']} (API {result['api_version']})"],
            ["systemd", result["systemd_version"] or "not reachable"],
        ]
    )
    return int(Exit.OK)


def cmd_health(ctx: Context, args: argparse.Namespace) -> int:
    result = ctx.client.call("system.health")
    healthy = result["status"] == "ok"
    if ctx.json:
        ctx.out.json(result)
    else:
        status = ctx.out.paint(result["status"], "green" if healthy else "yellow")
        ctx.out.line(f"automd is {status}, up {format_duration(result['uptime_seconds'])}")
        rows = []
        for name, check in sorted(result["checks"].items()):
            state = ctx.out.paint("ok", "green") if check["ok"] else ctx.out.paint("FAIL", "red")
            rows.append([name, state, check["detail"]])
        ctx.out.table(rows, indent="  ")
    return int(Exit.OK if healthy else Exit.FAILURE)
