"""`automctl defs history|diff|rollback NAME`: a definition's revisions, what changed between
two of them, and making an earlier one active again; and the status lines `defs NAME` shares.

What a revision is, and when automd makes, promotes or rolls back one, is the daemon's
(docs/definitions.md, Revisions); this only words definition.get/history/rollback's answers.
"""

from __future__ import annotations

from typing import Any

from automd.ctl.client import ProtocolError
from automd.ctl.context import Context
from automd.ctl.exits import Exit
from automd.ctl.modeldiff import Change, diff, path_text, value_text
from automd.ctl.times import local_time

#: The number of hex digits of a revision's hash shown in tables (as git's short hashes).
SHORT_HASH = 12
ROLE_COLOURS = {"active": "green", "canary": "yellow"}


def revision_line(definition: dict[str, Any]) -> str | None:
    """`3 (active; file 3)`, `4 (canary; file 4)`; None from an automd without revisions."""
    revision, status = definition.get("revision"), definition.get("status")
    if not revision or not status:
        return None
    parts = [revision["role"]]
    if revision["role"] != "active":
        parts.append(f"active {status['active']}")
    parts.append("file " + _number(status["file"]))
    if status["canary"] is not None and status["canary"] != revision["number"]:
        parts.append(f"canary {status['canary']}")
    return f"{revision['number']} ({'; '.join(parts)})"


def diverged_line(status: dict[str, Any]) -> str | None:
    """The warning for a definition whose active revision is not its file's."""
    if not status.get("diverged"):
        return None
    file = status.get("file")
    holds = f"the file holds revision {file}" if file is not None else "the file loads no revision"
    return f"diverged: {holds}, revision {status['active']} is active (rolled back)"


def canary_line(status: dict[str, Any]) -> str | None:
    """`canary 4 at 50%: 3 succeeded, 1 failed (promote after 20, roll back above 20% failed)`."""
    if status.get("canary") is None:
        return None
    line = (
        f"canary {status['canary']} at {_percent(status.get('canary_percent'))}: "
        f"{status.get('canary_succeeded', 0)} succeeded, {status.get('canary_failed', 0)} failed"
    )
    terms = []
    if status.get("promote_after_successes") is not None:
        terms.append(f"promote after {status['promote_after_successes']}")
    if status.get("max_failure_rate") is not None:
        rollback = f"roll back above {_percent(status['max_failure_rate'] * 100)} failed"
        if status.get("min_finished") is not None:  # automd 0.8.0 says when judging starts
            rollback += f" of at least {status['min_finished']} finished"
        terms.append(rollback)
    return line + (f" ({', '.join(terms)})" if terms else "")


def status_lines(ctx: Context, status: dict[str, Any] | None) -> None:
    """The canary's progress and the divergence warning, when they apply."""
    if not status:
        return
    if canary := canary_line(status):
        ctx.out.line(ctx.out.paint(canary, "yellow"))
    if diverged := diverged_line(status):
        ctx.out.line(ctx.out.paint(diverged, "yellow"))


def _number(value: int | None) -> str:
    return "-" if value is None else str(value)


def _percent(value: float | None) -> str:
    return "?%" if value is None else f"{value:g}%"


def cmd_history(ctx: Context, name: str) -> int:
    result = ctx.client.call("definition.history", {"name": name})
    if ctx.json:
        ctx.out.json(result)
        return int(Exit.OK)
    rows = [["REV", "HASH", "LOADED", "SOURCE", "ROLE", "JOBS"]]
    for revision in result["revisions"]:
        role = revision["role"]
        painted = ctx.out.paint(role, ROLE_COLOURS[role]) if role in ROLE_COLOURS else role
        rows.append([str(revision["number"]), revision["hash"][:SHORT_HASH],
                     local_time(revision["created_at"]), revision["source"], painted,
                     str(revision["jobs"])])  # fmt: skip
    ctx.out.table(rows)
    status = result["status"]
    ctx.out.line()
    ctx.out.line(
        f"{result['definition']}: active {status['active']}, file {_number(status['file'])}, "
        f"canary {_number(status['canary'])}"
    )
    status_lines(ctx, status)
    if result["events"]:
        ctx.out.line()
        events = [["TIME", "REV", "EVENT", "BY", "DETAIL"]]
        for event in result["events"]:
            events.append([local_time(event["at"]), str(event["revision"]), event["event"],
                           event["actor"] or "-", event["detail"] or ""])  # fmt: skip
        ctx.out.table(events)
    return int(Exit.OK)


def _get(ctx: Context, name: str, revision: int | None = None) -> dict[str, Any]:
    params: dict[str, Any] = {"name": name}
    if revision is not None:
        params["revision"] = revision
    definition: dict[str, Any] = ctx.client.call("definition.get", params)
    if not definition.get("revision") or "model" not in definition:
        raise ProtocolError(
            "automd keeps no revisions of definitions: it is older than automctl (automctl "
            "version shows both)"
        )
    return definition


def cmd_diff(ctx: Context, name: str, revisions: list[int]) -> int:
    """REV2 defaults to the active revision, REV1 to the one numbered just below REV2."""
    to = _get(ctx, name, revisions[1] if len(revisions) > 1 else None)
    number = to["revision"]["number"]
    if revisions:
        earlier = revisions[0]
    elif number > 1:
        earlier = number - 1
    else:
        ctx.err.line(
            f"automctl: {name} has only revision 1, nothing earlier to compare it with; "
            f"automctl defs history {name} lists its revisions"
        )
        return int(Exit.NOT_FOUND)
    since = _get(ctx, name, earlier)
    changes = diff(since["model"], to["model"])
    if ctx.json:
        ctx.out.json({"definition": name, "from": earlier, "to": number,
                      "changes": [change.to_json() for change in changes]})  # fmt: skip
        return int(Exit.OK)
    title = f"{name}: revision {earlier} ({since['revision']['role']}) -> {number} "
    title += f"({to['revision']['role']})"
    ctx.out.line(title + ("" if changes else ": no differences"))
    for change in changes:
        ctx.out.line(change_line(ctx, change))
    return int(Exit.OK)


def change_line(ctx: Context, change: Change) -> str:
    """`  limits.memory_max: 1 -> 2`, `+ parameters.level: {...}`, `- environment.DEBUG: "1"`."""
    path = path_text(change.path)
    if change.kind == "added":
        return ctx.out.paint(f"+ {path}: {value_text(change.new)}", "green")
    if change.kind == "removed":
        return ctx.out.paint(f"- {path}: {value_text(change.old)}", "red")
    old = ctx.out.paint(value_text(change.old), "red")
    return f"  {path}: {old} -> {ctx.out.paint(value_text(change.new), 'green')}"


def cmd_rollback(ctx: Context, name: str, revision: int | None) -> int:
    params: dict[str, Any] = {"name": name}
    if revision is not None:
        params["revision"] = revision
    result = ctx.client.call("definition.rollback", params)
    if ctx.json:
        ctx.out.json(result)
        return int(Exit.OK)
    ctx.out.line(rollback_sentence(result))
    return int(Exit.OK)


def rollback_sentence(result: dict[str, Any]) -> str:
    """`backup: revision 2 is active again (was 3); the file holds revision 3: diverged until
    it changes or you roll back to 3`."""
    name, active, file = result["definition"], result["active"], result["file"]
    said = f"{name}: revision {active} is active again (was {result['previous']})"
    if not result["diverged"]:
        return f"{said}; it is the file's revision: not diverged"
    if file is None:
        return f"{said}; the file loads no revision: diverged until it does"
    return (
        f"{said}; the file holds revision {file}: diverged until it changes or you roll back "
        f"to {file}"
    )
