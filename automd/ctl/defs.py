"""`automctl defs`: list the definitions, show one, or act on one's revisions.

`defs [NAME]` lists or shows; `defs history NAME`, `defs diff NAME [REV1] [REV2]` and
`defs rollback NAME [REV]` are the actions. A definition may itself be called history, diff
or rollback: one word alone is always a definition to show, an action takes a NAME after it.
"""

from __future__ import annotations

import argparse
from typing import Any

from automd.ctl import revisions
from automd.ctl.arguments import shown
from automd.ctl.context import Context, UsageError
from automd.ctl.definitions import parameter_rows, sandbox_line
from automd.ctl.exits import Exit

#: Each action, and the most revision numbers it takes after NAME.
ACTIONS = {"history": 0, "diff": 2, "rollback": 1}
#: The revision numbers' bound: the API's (a 32-bit integer), written out to keep pydantic out.
MAX_REVISION = 2**31 - 1
USAGE = """\
%(prog)s [options] [NAME]
       %(prog)s [options] history NAME
       %(prog)s [options] diff NAME [REV1] [REV2]
       %(prog)s [options] rollback NAME [REV]"""
DESCRIPTION = """\
list job definitions, or show one; and a definition's revisions:
  history NAME              its revisions, the active, file and canary ones, and their events
  diff NAME [REV1] [REV2]   what changed from REV1 to REV2 (default: the active revision and
                            the one numbered before it)
  rollback NAME [REV]       make REV (default: the one active before) active again (admin)"""


def defs_arguments(parser: argparse.ArgumentParser) -> None:
    parser.usage = USAGE
    parser.description = DESCRIPTION
    parser.add_argument(
        "subject", nargs="?", metavar="NAME",
        help="show this definition and its parameters; or the action history, diff or rollback",
    )  # fmt: skip
    parser.add_argument(
        "operands", nargs="*", metavar="ARG", help="the action's NAME, then revision numbers"
    )


def revision_number(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_REVISION:
        raise UsageError(
            f"{shown(text)} is not a revision number (1, 2, ...); automctl defs history NAME "
            "lists them"
        )
    return value


def parse(subject: str | None, operands: list[str]) -> tuple[str | None, str | None, list[int]]:
    """(action or None, definition name or None, revision numbers) from `defs`' words."""
    if not operands:
        return None, subject, []  # `defs history` alone: the definition named history
    if subject not in ACTIONS:
        raise UsageError(
            f"nothing may follow the definition name {shown(subject or '')}; the actions are "
            "defs history NAME, defs diff NAME [REV1] [REV2], defs rollback NAME [REV]"
        )
    name, *numbers = operands
    if len(numbers) > ACTIONS[subject]:
        forms = {"history": "NAME", "diff": "NAME [REV1] [REV2]", "rollback": "NAME [REV]"}
        raise UsageError(f"too many arguments: automctl defs {subject} {forms[subject]}")
    return subject, name, [revision_number(number) for number in numbers]


def cmd_defs(ctx: Context, args: argparse.Namespace) -> int:
    action, name, numbers = parse(args.subject, args.operands)
    if name is None:
        return _list(ctx)
    if action == "history":
        return revisions.cmd_history(ctx, name)
    if action == "diff":
        return revisions.cmd_diff(ctx, name, numbers)
    if action == "rollback":
        return revisions.cmd_rollback(ctx, name, numbers[0] if numbers else None)
    return _show(ctx, name)


def _show(ctx: Context, name: str) -> int:
    definition = ctx.client.call("definition.get", {"name": name})
    if ctx.json:
        ctx.out.json(definition)
        return int(Exit.OK)
    ctx.out.line(f"{definition['name']}: {definition['description']}")
    if revision := revisions.revision_line(definition):
        ctx.out.line(f"Revision: {revision}")
    revisions.status_lines(ctx, definition.get("status"))
    sandbox = sandbox_line(definition.get("sandbox"))
    if sandbox:
        ctx.out.line(f"Sandbox: {sandbox}")
    rows = parameter_rows(definition["params_schema"])
    ctx.out.table(rows)
    return int(Exit.OK)


def _revision_cell(ctx: Context, summary: dict[str, Any]) -> str:
    if summary.get("revision") is None:  # an automd without revisions
        return "-"
    if summary.get("diverged"):
        return ctx.out.paint(f"{summary['revision']} (diverged)", "yellow")
    return str(summary["revision"])


def _list(ctx: Context) -> int:
    listed = ctx.client.call("definition.list")
    if ctx.json:
        ctx.out.json(listed)
        return int(Exit.OK)
    rows = [["NAME", "REV", "PARAMETERS", "DESCRIPTION"]]
    for d in listed["definitions"]:
        rows.append([d["name"], _revision_cell(ctx, d), ",".join(d["parameters"]) or "-",
                     d["description"]])  # fmt: skip
    ctx.out.table(rows)
    if any(d.get("diverged") for d in listed["definitions"]):
        ctx.err.line("(diverged: the active revision is not the file's; automctl defs history "
                     "NAME says why)")  # fmt: skip
    for error in listed["errors"]:
        where = f"{error['file']}: {error['key']}" if error["key"] else error["file"]
        ctx.err.line(ctx.err.paint(f"not loaded: {where}: {error['reason']}", "red"))
    return int(Exit.OK)
