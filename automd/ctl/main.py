"""automctl's entry point: the command table, argument parsing, reporting failures."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from automd import __version__
from automd.api.codes import DEFAULT_SOCKET
from automd.ctl import arguments, verbs
from automd.ctl.client import ClientError, RemoteError, RpcClient
from automd.ctl.completion import SHELLS, completion_script
from automd.ctl.context import Context, JobStillRunning, UsageError
from automd.ctl.exits import Exit, exit_for
from automd.ctl.messages import describe
from automd.ctl.render import Output

SOCKET_ENV = "AUTOMD_SOCKET"


def _run_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("definition", help="job definition name")
    parser.add_argument("params", nargs="*", metavar="key=value", help="job parameters")
    parser.add_argument(
        "--idempotency-key", type=arguments.nonempty, help="submit at most once per key (per user)"
    )
    parser.add_argument(
        "--wait", action="store_true", help="wait for the job; exit with its exit status"
    )
    parser.add_argument(
        "--follow", action="store_true", help="print the job's output as it runs, then as --wait"
    )
    parser.add_argument("-q", "--print-id", action="store_true", help="print only the job id")


def _logs_arguments(parser: argparse.ArgumentParser) -> None:
    _one_id(parser)
    parser.add_argument(
        "-f", "--follow", action="store_true", help="keep printing new output until the job ends"
    )
    # The bounds are the API's (automd/api/jobs.py), written out to keep pydantic out.
    parser.add_argument(
        "-n", "--lines", type=arguments.count(10_000), metavar="N",
        help="start with the last N lines",
    )  # fmt: skip
    parser.add_argument(
        "--attempt", type=arguments.count(2**31 - 1), metavar="N", help="only this attempt"
    )


_SINCE_HELP = "a time (2026-11-22T08:00, yesterday) or an age (30m, 1h, 2d)"


def _audit_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--since", type=arguments.time, help=f"entries since {_SINCE_HELP}")
    parser.add_argument("--uid", type=arguments.uid, help="only this caller")
    parser.add_argument(
        "--method", type=arguments.nonempty, help="only this method, e.g. job.submit"
    )
    parser.add_argument("--outcome", choices=["ok", "denied", "error"])
    parser.add_argument(
        "-n", "--limit", type=arguments.count(1000), default=50, help="entries (default 50)"
    )


def _list_arguments(parser: argparse.ArgumentParser) -> None:
    # automd.api.jobs.JobState's values, written out: importing it would load pydantic
    # into every automctl command (test_completion checks the two agree).
    states = ["queued", "starting", "running", "waiting_retry", "succeeded", "failed",
              "timed_out", "cancelled", "unknown"]  # fmt: skip
    parser.add_argument("--state", action="append", choices=states, help="repeatable")
    parser.add_argument("--definition", type=arguments.nonempty, help="only this definition")
    parser.add_argument("--since", type=arguments.time, help=f"created since {_SINCE_HELP}")
    parser.add_argument(
        "-n", "--limit", type=arguments.count(500), default=20, help="jobs (default 20)"
    )


def _defs_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", nargs="?", help="show this definition and its parameters")


def _wait_arguments(parser: argparse.ArgumentParser) -> None:
    _ids(parser)
    parser.add_argument(
        "--success", action="store_true", help="exit non-zero unless every job succeeded"
    )


def _one_id(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("id", type=arguments.job_id, help="job id")


def _ids(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("ids", nargs="+", type=arguments.job_id, metavar="id", help="job ids")


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
        type=arguments.nonempty,
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
        type=arguments.seconds,
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
    parser = arguments.Parser(
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


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # Looked at before parsing, so that a usage error too is {"error": ...} under --json.
    json_wanted = "--json" in argv
    out = Output(sys.stdout, colour=False if "--no-color" in argv else None)
    err = Output(sys.stderr, colour=False if "--no-color" in argv else None)
    try:
        arguments.check_utf8(argv)
        args = build_parser().parse_args(argv)
        socket_path = args.socket or os.environ.get(SOCKET_ENV) or DEFAULT_SOCKET
        client = RpcClient(
            socket_path, timeout=args.timeout, trace=sys.stderr if args.verbose else None
        )
        ctx = Context(client=client, out=out, err=err, json=args.json)
        return int(args.run(ctx, args))
    except UsageError as error:
        return _fail(out, json_wanted, str(error), Exit.USAGE)
    except ClientError as error:
        detail = error.to_json() if isinstance(error, RemoteError) else None
        return _fail(out, json_wanted, describe(error), exit_for(error), detail)
    except JobStillRunning as running:
        # The job runs on in its unit: say so, and how to stop it (stderr: not the output).
        job = running.job_id
        err.line(f"automctl: job {job} is still running; automctl cancel {job} stops it")
        return int(Exit.INTERRUPTED)
    except KeyboardInterrupt:
        return int(Exit.INTERRUPTED)
    except BrokenPipeError:
        # The reader went away (automctl logs ID | head): stop quietly, like journalctl. Point
        # stdout at /dev/null so the flush at exit does not fail a second time.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return int(Exit.OK)


def _fail(out: Output, json_wanted: bool, message: str, status: Exit, detail: Any = None) -> int:
    """One line on stderr; under --json also the error as one JSON line on stdout."""
    if json_wanted:
        out.json({"error": detail or {"message": message}}, compact=True)
    print(f"automctl: {message}", file=sys.stderr, flush=True)
    return int(status)


if __name__ == "__main__":
    sys.exit(main())
