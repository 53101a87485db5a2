"""automctl's entry point: the command table, argument parsing, exit statuses."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from automd import __version__
from automd.api.codes import DEFAULT_SOCKET, ErrorCode
from automd.ctl import verbs
from automd.ctl.client import (
    ClientError,
    ConnectPermissionDenied,
    DaemonUnreachable,
    RemoteError,
    RpcClient,
)
from automd.ctl.completion import SHELLS, completion_script
from automd.ctl.context import Context, Exit, UsageError
from automd.ctl.render import Output

SOCKET_ENV = "AUTOMD_SOCKET"


def _run_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("definition", help="job definition name")
    parser.add_argument("params", nargs="*", metavar="key=value", help="job parameters")
    parser.add_argument("--idempotency-key", help="submit at most once per key (per user)")
    parser.add_argument(
        "--wait", action="store_true", help="wait for the job; exit with its exit status"
    )
    parser.add_argument(
        "--follow", action="store_true", help="print the job's output as it runs, then as --wait"
    )
    parser.add_argument("-q", "--print-id", action="store_true", help="print only the job id")


def _logs_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("id", help="job id")
    parser.add_argument(
        "-f", "--follow", action="store_true", help="keep printing new output until the job ends"
    )
    parser.add_argument(
        "-n", "--lines", type=_positive, metavar="N", help="start with the last N lines"
    )
    parser.add_argument("--attempt", type=_positive, metavar="N", help="only this attempt")


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number")
    return value


def _audit_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--since", help="entries at or after this time (RFC 3339)")
    parser.add_argument("--uid", type=int, help="only this caller")
    parser.add_argument("--method", help="only this method, e.g. job.submit")
    parser.add_argument("--outcome", choices=["ok", "denied", "error"])
    parser.add_argument("-n", "--limit", type=int, default=50, help="entries (default 50)")


def _list_arguments(parser: argparse.ArgumentParser) -> None:
    # automd.api.jobs.JobState's values, written out: importing it would load pydantic
    # into every automctl command (test_completion checks the two agree).
    states = ["queued", "starting", "running", "waiting_retry", "succeeded", "failed",
              "timed_out", "cancelled", "unknown"]  # fmt: skip
    parser.add_argument("--state", action="append", choices=states, help="repeatable")
    parser.add_argument("--definition", help="only this definition")
    parser.add_argument("--since", help="created at or after (RFC 3339 or a date)")
    parser.add_argument("-n", "--limit", type=int, default=20, help="jobs (default 20)")


def _defs_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", nargs="?", help="show this definition and its parameters")


def _wait_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("ids", nargs="+", metavar="id", help="job ids")
    parser.add_argument(
        "--success", action="store_true", help="exit non-zero unless every job succeeded"
    )


def _one_id(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("id", help="job id")


def _ids(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("ids", nargs="+", metavar="id", help="job ids")


def _completion_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("shell", choices=SHELLS, help="the shell to complete for")


def _cmd_completion(ctx: Context, args: argparse.Namespace) -> int:
    ctx.out.stream.write(completion_script(args.shell, build_parser(), prog="automctl"))
    return int(Exit.OK)


@dataclass(frozen=True)
class Verb:
    name: str
    help: str
    run: Callable[[Context, argparse.Namespace], int]
    arguments: Callable[[argparse.ArgumentParser], None] | None = None
    aliases: tuple[str, ...] = ()


VERBS: tuple[Verb, ...] = (
    Verb("run", "submit a job: run DEFINITION key=value...", verbs.cmd_run, _run_arguments),
    Verb("status", "show a job, its attempts and result", verbs.cmd_status, _one_id, ("show",)),
    Verb(
        "logs", "show a job's output (journald), -f to follow it", verbs.cmd_logs, _logs_arguments
    ),
    Verb("list", "list jobs, newest first", verbs.cmd_list, _list_arguments),
    Verb("defs", "list job definitions, or show one", verbs.cmd_defs, _defs_arguments),
    Verb("cancel", "cancel queued or running jobs", verbs.cmd_cancel, _ids),
    Verb("retry", "run a finished job again", verbs.cmd_retry, _one_id),
    Verb("wait", "wait for jobs to finish", verbs.cmd_wait, _wait_arguments),
    Verb("audit", "show the audit trail (admin)", verbs.cmd_audit, _audit_arguments),
    Verb(
        "health", "check the daemon and what it depends on (exit 1 when degraded)", verbs.cmd_health
    ),
    Verb("version", "show automctl, automd, API and systemd versions", verbs.cmd_version),
    Verb(
        "completion",
        "print a shell completion script (bash or zsh)",
        _cmd_completion,
        _completion_arguments,
    ),
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
        help="seconds to wait for each answer from the daemon (default 30)",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=argparse.SUPPRESS if suppress else False,
        help="show each request sent to automd and how long its answer took (on stderr)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="automctl", description="Control automd: run and inspect allowlisted jobs."
    )
    parser.add_argument("--version", action="version", version=f"automctl {__version__}")
    _global_options(parser, suppress=False)
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    for verb in VERBS:
        sub = verbs.add_parser(
            verb.name, help=verb.help, description=verb.help, aliases=list(verb.aliases)
        )
        if verb.arguments is not None:
            verb.arguments(sub)
        _global_options(sub, suppress=True)
        sub.set_defaults(run=verb.run)
    return parser


# Daemon error codes that have an exit status of their own.
_EXIT_BY_CODE = {
    ErrorCode.UNKNOWN_DEFINITION: Exit.NOT_FOUND,
    ErrorCode.JOB_NOT_FOUND: Exit.NOT_FOUND,
    ErrorCode.INVALID_PARAMS: Exit.USAGE,
    ErrorCode.PERMISSION_DENIED: Exit.PERMISSION_DENIED,
}


def _exit_for(error: ClientError) -> Exit:
    if isinstance(error, DaemonUnreachable):
        return Exit.UNREACHABLE
    if isinstance(error, ConnectPermissionDenied):
        return Exit.PERMISSION_DENIED
    if isinstance(error, RemoteError):
        known = {int(code): status for code, status in _EXIT_BY_CODE.items()}
        return known.get(error.code, Exit.FAILURE)
    return Exit.FAILURE


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    socket_path = args.socket or os.environ.get(SOCKET_ENV) or DEFAULT_SOCKET
    colour = False if args.no_color else None
    out = Output(sys.stdout, colour=colour)
    err = Output(sys.stderr, colour=colour)
    client = RpcClient(
        socket_path, timeout=args.timeout, trace=sys.stderr if args.verbose else None
    )
    ctx = Context(client=client, out=out, err=err, json=args.json)
    try:
        return int(args.run(ctx, args))
    except UsageError as error:
        print(f"automctl: {error}", file=sys.stderr)
        return int(Exit.USAGE)
    except ClientError as error:
        if args.json and isinstance(error, RemoteError):
            out.json({"error": error.to_json()})
        print(f"automctl: {error}", file=sys.stderr)
        return int(_exit_for(error))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (automctl logs ID | head): stop quietly, like journalctl. Point
        # stdout at /dev/null so the flush at exit does not fail a second time.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return int(Exit.OK)


if __name__ == "__main__":
    sys.exit(main())
