"""automctl's entry point: the command table, argument parsing, exit codes."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from automd import __version__
from automd.api.codes import DEFAULT_SOCKET
from automd.ctl.client import (
    ClientError,
    ConnectPermissionDenied,
    DaemonUnreachable,
    RemoteError,
    RpcClient,
)
from automd.ctl.render import Output, format_duration

SOCKET_ENV = "AUTOMD_SOCKET"


class Exit(IntEnum):
    """automctl's exit statuses (docs/automctl.md lists them)."""

    OK = 0
    FAILURE = 1  # the daemon reported an error, or health is degraded
    USAGE = 2  # invalid arguments
    NOT_FOUND = 3
    PERMISSION_DENIED = 4
    UNREACHABLE = 5  # no daemon at the socket, or it did not answer


@dataclass(frozen=True)
class Context:
    client: RpcClient
    out: Output
    json: bool


def cmd_version(ctx: Context, args: argparse.Namespace) -> Exit:
    result = ctx.client.call("system.version")
    if ctx.json:
        ctx.out.json({"automctl": __version__, **result})
        return Exit.OK
    ctx.out.table(
        [
            ["automctl", __version__],
            ["automd", f"{result['version']} (API {result['api_version']})"],
            ["systemd", result["systemd_version"] or "not reachable"],
        ]
    )
    return Exit.OK


def cmd_health(ctx: Context, args: argparse.Namespace) -> Exit:
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
    return Exit.OK if healthy else Exit.FAILURE


@dataclass(frozen=True)
class Verb:
    name: str
    help: str
    run: Callable[[Context, argparse.Namespace], Exit]


VERBS: tuple[Verb, ...] = (
    Verb("version", "show automctl, automd, API and systemd versions", cmd_version),
    Verb("health", "check the daemon and what it depends on (exit 1 when degraded)", cmd_health),
)


def _global_options(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    # Global options are accepted before and after the verb; on the verb's parser they default
    # to SUPPRESS so they do not overwrite a value given before it.
    default: Any = argparse.SUPPRESS if suppress else None
    parser.add_argument(
        "--socket",
        default=default,
        help=f"automd's socket (default ${SOCKET_ENV} or {DEFAULT_SOCKET})",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        default=argparse.SUPPRESS if suppress else False,
        help="print machine-readable JSON",
    )
    parser.add_argument(
        "--no-color",
        action="store_true",
        default=argparse.SUPPRESS if suppress else False,
        help="never colour the output (also: NO_COLOR set)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=argparse.SUPPRESS if suppress else 30.0,
        help="seconds to wait for the daemon (default 30)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="automctl", description="Control automd: run and inspect allowlisted jobs."
    )
    parser.add_argument("--version", action="version", version=f"automctl {__version__}")
    _global_options(parser, suppress=False)
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    for verb in VERBS:
        sub = verbs.add_parser(verb.name, help=verb.help, description=verb.help)
        _global_options(sub, suppress=True)
        sub.set_defaults(run=verb.run)
    return parser


def _exit_for(error: ClientError) -> Exit:
    if isinstance(error, DaemonUnreachable):
        return Exit.UNREACHABLE
    if isinstance(error, ConnectPermissionDenied):
        return Exit.PERMISSION_DENIED
    return Exit.FAILURE


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    socket_path = args.socket or os.environ.get(SOCKET_ENV) or DEFAULT_SOCKET
    out = Output(colour=False if args.no_color else None)
    ctx = Context(client=RpcClient(socket_path, timeout=args.timeout), out=out, json=args.json)
    try:
        return int(args.run(ctx, args))
    except ClientError as error:
        if args.json and isinstance(error, RemoteError):
            out.json({"error": error.to_json()})
        print(f"automctl: {error}", file=sys.stderr)
        return int(_exit_for(error))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
