"""`automctl __complete KIND [WORDS]`: the daemon's words for the completion scripts.

Definition names, a definition's parameters (`name=`), job ids, schedules and revision numbers
are the daemon's, so the scripts (completion.py) ask for them here, with a short timeout; any
failure completes nothing, silently: a TAB must never print an error or hang.
"""

from __future__ import annotations

import argparse

from automd.ctl.client import ClientError, RpcClient
from automd.ctl.context import Context
from automd.ctl.defs import ACTIONS
from automd.ctl.exits import Exit

COMPLETE_VERB = "__complete"
#: What a TAB may ask the daemon for; completion.DAEMON_DESTS maps arguments to these.
#: "defs": the next word of `automctl defs` (an action, a definition, a revision number).
DAEMON_WORDS = ("definitions", "parameters", "jobs", "schedules", "defs")
#: A TAB that waits longer than this feels broken; nothing is offered instead.
TIMEOUT_SECONDS = 1.0


def _defs_words(client: RpcClient, words: list[str]) -> list[str]:
    """`defs`' next word after `words`: an action or a definition, the action's definition,
    then the revisions it may take (newest first)."""
    if not words:
        try:
            return [*ACTIONS, *_words(client, "definitions", [])]
        except ClientError:  # the actions are automctl's own: offered without automd too
            return list(ACTIONS)
    action, *rest = words
    if action not in ACTIONS:
        return []  # `defs NAME` takes nothing more
    if not rest:
        return _words(client, "definitions", [])
    if len(rest) > ACTIONS[action]:
        return []
    history = client.call("definition.history", {"name": rest[0]})["revisions"]
    return [str(revision["number"]) for revision in history]


def _words(client: RpcClient, kind: str, words: list[str]) -> list[str]:
    if kind == "defs":
        return _defs_words(client, words)
    if kind == "definitions":
        listed = client.call("definition.list")["definitions"]
        return [str(d["name"]) for d in listed]
    if kind == "parameters":
        if not words:
            return []
        schema = client.call("definition.get", {"name": words[0]})["params_schema"]
        return [f"{name}=" for name in schema.get("properties", {})]
    if kind == "schedules":  # DEFINITION:SCHEDULE, as `automctl schedule run` takes them
        listed = client.call("schedule.list")["schedules"]
        return [f"{s['definition']}:{s['name']}" for s in listed]
    jobs = client.call("job.list", {"limit": 100})["jobs"]
    return [str(job["id"]) for job in jobs]


def complete_words(ctx: Context, args: argparse.Namespace) -> int:
    client = RpcClient(ctx.client.transport, timeout=min(ctx.client.timeout, TIMEOUT_SECONDS))
    try:
        found = _words(client, args.kind, args.words)
    except (ClientError, KeyError, TypeError):
        found = []
    for word in found:
        ctx.out.line(word)
    return int(Exit.OK)
