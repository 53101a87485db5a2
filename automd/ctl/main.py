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
from automd.ctl import arguments, defs, schedules, verbs
from automd.ctl.client import ClientError, RemoteError, RpcClient
from automd.ctl.complete_words import COMPLETE_VERB, DAEMON_WORDS, complete_words
from automd.ctl.completion import SHELLS, completion_script, parser_commands
from automd.ctl.context import Context, JobStillRunning, UsageError
from automd.ctl.exits import Exit, exit_for
from automd.ctl.interrupt import interrupts_recorded
from automd.ctl.logs import LOG_FORMATS
from automd.ctl.messages import describe
from automd.ctl.render import Output
from automd.ctl.transport import HOST_ENV, SOCKET_ENV, SshTransport, transport_for


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
    parser.add_argument(
        "-o", "--output", choices=LOG_FORMATS, default=None,
        help="cat: the text only (default); short: with timestamps; json: one object a line",
    )  # fmt: skip


_SINCE_HELP = "a time (2026-11-22T08:00, yesterday) or an age (30m, 1h, 2d)"


def _audit_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--since", type=arguments.time, help=f"entries since {_SINCE_HELP}")
    parser.add_argument("--uid", type=arguments.uid, help="only this caller (a uid or user name)")
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
        "--user", type=arguments.uid, metavar="NAME", help="only jobs this user submitted"
    )
    parser.add_argument(
        "-n", "--limit", type=arguments.count(500), default=20, help="jobs (default 20)"
    )
    parser.add_argument(
        "-w", "--watch", type=arguments.seconds, nargs="?", const=2.0, metavar="SECONDS",
        help="redraw every SECONDS (default 2) until Ctrl-C",
    )  # fmt: skip


def _wait_arguments(parser: argparse.ArgumentParser) -> None:
    _ids(parser)
    parser.add_argument(
        "--success", action="store_true", help="exit non-zero unless every job succeeded"
    )
    # wait's own --timeout: how long to wait in all. The global one (before the verb) still
    # bounds each call to the daemon.
    parser.add_argument(
        "--timeout", dest="wait_timeout", type=arguments.seconds, metavar="SECONDS",
        help="give up after SECONDS (exit 75, naming the jobs still running)",
    )  # fmt: skip


def _retry_arguments(parser: argparse.ArgumentParser) -> None:
    _one_id(parser)
    parser.add_argument(
        "--wait", action="store_true", help="wait for the job; exit with its exit status"
    )
    parser.add_argument(
        "--current", action="store_true",
        help="run the definition's active revision, not the one the job was submitted under",
    )  # fmt: skip


def _one_id(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("id", type=arguments.job_id, help="job id")


def _ids(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("ids", nargs="+", type=arguments.job_id, metavar="id", help="job ids")


def _completion_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("shell", choices=SHELLS, help="the shell to complete for")


def _cmd_completion(ctx: Context, args: argparse.Namespace) -> int:
    ctx.out.stream.write(completion_script(args.shell, build_parser(), prog="automctl"))
    return int(Exit.OK)


def _help_arguments(parser: argparse.ArgumentParser) -> None:
    # The verbs as choices: completed, and a typo is a usage error naming them.
    shown = [name for verb in VERBS if verb.help for name in (verb.name, *verb.aliases)]
    parser.add_argument(
        "topic", nargs="?", metavar="verb", choices=shown, help="the verb to explain"
    )


def _cmd_help(ctx: Context, args: argparse.Namespace) -> int:
    """`automctl help VERB` is `automctl VERB --help`; `automctl help` is `automctl --help`."""
    parser = build_parser()
    helped = next(sub for names, sub in parser_commands(parser) if (args.topic or "") in names)
    ctx.out.stream.write(helped.format_help())
    return int(Exit.OK)


def _complete_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("kind", choices=DAEMON_WORDS)
    parser.add_argument("words", nargs="*")


@dataclass(frozen=True)
class Verb:
    name: str
    help: str
    run: Callable[[Context, argparse.Namespace], int]
    arguments: Callable[[argparse.ArgumentParser], None] | None = None
    aliases: tuple[str, ...] = ()
    #: Shown under the verb's --help; docs/automctl.md's examples are run against the daemon.
    examples: tuple[str, ...] = ()


_ID = "01jd3k5x2q8v7n4m6p9r0s1t2u"

VERBS: tuple[Verb, ...] = (
    Verb(
        "run", "submit a job: run DEFINITION key=value...", verbs.cmd_run, _run_arguments,
        examples=("automctl run hello name=Ada --wait",
                  "automctl run backup source=/srv/www --idempotency-key nightly -q",
                  "automctl run backup source=/srv/www --follow"),
    ),
    Verb(
        "status", "show a job, its attempts and result", verbs.cmd_status, _one_id, ("show",),
        examples=(f"automctl status {_ID}",),
    ),
    Verb(
        "logs", "show a job's output (journald), -f to follow it", verbs.cmd_logs,
        _logs_arguments,
        examples=(f"automctl logs {_ID} -n 20", f"automctl logs -f {_ID}",
                  f"automctl logs -o short {_ID}"),
    ),
    Verb(
        "list", "list jobs, newest first", verbs.cmd_list, _list_arguments,
        examples=("automctl list --state running --state queued", "automctl list --since 1h",
                  "automctl list --watch 5"),
    ),
    Verb(
        "defs", "list job definitions, show one, or its revisions (history, diff, rollback)",
        defs.cmd_defs, defs.defs_arguments,
        examples=("automctl defs", "automctl defs backup", "automctl defs history backup",
                  "automctl defs diff backup", "automctl defs diff backup 2 4",
                  "automctl defs rollback backup", "automctl defs rollback backup 2"),
    ),
    Verb(
        "cancel", "cancel queued or running jobs", verbs.cmd_cancel, _ids,
        examples=(f"automctl cancel {_ID}",),
    ),
    Verb(
        "retry", "run a finished job again", verbs.cmd_retry, _retry_arguments,
        examples=(f"automctl retry {_ID} --wait", f"automctl retry {_ID} --current"),
    ),
    Verb(
        "wait", "wait for jobs to finish", verbs.cmd_wait, _wait_arguments,
        examples=(f"automctl wait {_ID} --success", f"automctl wait {_ID} --timeout 600"),
    ),
    Verb(
        "audit", "show the audit trail (admin)", verbs.cmd_audit, _audit_arguments,
        examples=("automctl audit --since 1h --outcome denied", "automctl audit --uid alice"),
    ),
    Verb(
        "schedules", "list schedules: next and last firing, last job state",
        schedules.cmd_schedules, examples=("automctl schedules", "automctl schedules --json"),
    ),
    Verb(
        "schedule", "act on one schedule: run DEFINITION:SCHEDULE fires it now",
        schedules.cmd_schedule, schedules.schedule_arguments,
        examples=("automctl schedule run backup:nightly",),
    ),
    Verb(
        "health", "check the daemon and what it depends on (exit 1 when degraded)",
        verbs.cmd_health, examples=("automctl health",),
    ),
    Verb(
        "version", "show automctl, automd, API and systemd versions", verbs.cmd_version,
        examples=("automctl version",),
    ),
    Verb(
        "completion", "print a shell completion script (bash or zsh)", _cmd_completion,
        _completion_arguments, examples=("source <(automctl completion bash)",),
    ),
    Verb(
        "help", "show a verb's help (as VERB --help)", _cmd_help, _help_arguments,
        examples=("automctl help run",),
    ),
    # Hidden (no help; completion.py leaves it out): what the completion scripts call.
    Verb(COMPLETE_VERB, "", complete_words, _complete_arguments),
    # Hidden: what a schedule's service runs when its timer elapses (automd/schedule_units.py).
    Verb(schedules.FIRE_VERB, "", schedules.cmd_fire, schedules.fire_arguments),
)  # fmt: skip


def _global_options(
    parser: argparse.ArgumentParser, *, suppress: bool, own: frozenset[str] = frozenset()
) -> None:
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
        "-H", "--host", type=arguments.nonempty, default=default, metavar="[USER@]HOST[:PORT]",
        help=f"ask automd on this host, over ssh (default ${HOST_ENV}; docs/fleet.md)",
    )  # fmt: skip
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
    if "--timeout" not in own:
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
        epilog = "examples:\n" + "\n".join(f"  {e}" for e in verb.examples)
        extra: dict[str, Any] = {"help": verb.help} if verb.help else {}  # none: hidden
        sub = verbs.add_parser(
            verb.name,
            description=verb.help,
            aliases=list(verb.aliases),
            epilog=epilog if verb.examples else None,
            formatter_class=argparse.RawDescriptionHelpFormatter,
            **extra,
        )
        if verb.arguments is not None:
            verb.arguments(sub)
        own = frozenset(o for action in sub._actions for o in action.option_strings)
        _global_options(sub, suppress=True, own=own)
        sub.set_defaults(run=verb.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        with interrupts_recorded():
            return _main(argv)
    except Exception as error:  # docs/automctl.md: never a traceback
        # Anything else is a bug, or an answer whose shape automctl does not know (a field
        # missing): one line naming it, and -v shows the exchange that led to it.
        what = f"{type(error).__name__}: {str(error)[:80]}"
        message = f"unexpected failure ({what}); automctl -v shows the exchange, please report it"
        out = Output(sys.stdout, colour=False)
        return _fail(out, "--json" in argv, message, Exit.SOFTWARE)


def _main(argv: list[str]) -> int:
    # Looked at before parsing, so that a usage error too is {"error": ...} under --json.
    json_wanted = "--json" in argv
    out = Output(sys.stdout, colour=False if "--no-color" in argv else None)
    err = Output(sys.stderr, colour=False if "--no-color" in argv else None)
    try:
        arguments.check_utf8(argv)
        args = build_parser().parse_args(argv)
        try:
            transport = transport_for(args.host, args.socket)
        except ValueError as error:
            raise UsageError(f"{error} (see automctl --help)") from None
        remote = isinstance(transport, SshTransport)
        if remote and (
            named := [v for v in vars(args).values() if isinstance(v, arguments.NamedUid)]
        ):
            raise UsageError(
                f"{named[0].name!r}: give a uid with -H (a user name resolves on this machine)"
            )
        client = RpcClient(
            transport, timeout=args.timeout, trace=sys.stderr if args.verbose else None
        )
        ctx = Context(client=client, out=out, err=err, json=args.json, remote=remote)
        try:
            return int(args.run(ctx, args))
        finally:
            client.close()
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
