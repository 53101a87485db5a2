"""Man pages for automd(8), automctl(1), automd-stdio-bridge(1), from their argparse parsers.

The Debian package runs this at build time (debian/rules), so a new option or verb needs no
change here and the pages cannot drift from `--help`:

    python -m automd.manpage automctl > automctl.1
    python -m automd.manpage automd > automd.8
    python -m automd.manpage automd-stdio-bridge > automd-stdio-bridge.1

Verbs come from the subparsers (automd.ctl.completion.parser_commands, as for the shell
completions); FILES, EXIT STATUS and SEE ALSO are the only text written here.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from automd import __version__, bridge, daemon, options
from automd.api.codes import DEFAULT_SOCKET
from automd.ctl import main as ctl
from automd.ctl.completion import parser_commands
from automd.ctl.exits import MEANINGS
from automd.ctl.transport import SOCKET_ENV


@dataclass(frozen=True)
class Page:
    name: str
    section: int
    parser: Callable[[], argparse.ArgumentParser]  # the program's own build_parser
    files: tuple[tuple[str, str], ...] = ()
    exit_status: tuple[tuple[str, str], ...] = ()
    see_also: tuple[str, ...] = ()


PAGES = {
    "automd": Page(
        name="automd",
        section=8,
        parser=options.build_parser,
        files=(
            ("/etc/automd/automd.toml", "daemon settings (reference: docs/config.md)"),
            ("/etc/automd/jobs.d/*.toml", "job definitions (docs/definitions.md)"),
            ("/var/lib/automd/automd.db", "the jobs database and audit trail (SQLite)"),
            ("/run/automd.sock", "the JSON-RPC 2.0 API socket (automd.socket)"),
        ),
        exit_status=(
            ("0", "stopped on request"),
            ("2", "invalid command line"),
            (str(daemon.EXIT_USAGE), "no socket: neither socket-activated nor --listen"),
            (str(daemon.EXIT_SOFTWARE), "an unexpected error (its traceback is in the journal)"),
            (str(daemon.EXIT_CANTCREAT), "the state store could not be opened"),
            (str(daemon.EXIT_CONFIG), "bad configuration: the message names the file, key, reason"),
        ),
        see_also=("automctl(1)", "systemctl(1)", "journalctl(1)", "polkit(8)"),
    ),
    "automctl": Page(
        name="automctl",
        section=1,
        parser=ctl.build_parser,
        files=((DEFAULT_SOCKET, f"automd's socket, unless --socket, ${SOCKET_ENV} or -H"),),
        exit_status=(
            *((str(int(status)), text.replace("`", "")) for status, text in MEANINGS.items()),
            ("", "run --wait and wait --success pass a finished job's own exit status through."),
        ),
        see_also=("automd(8)", "automd-stdio-bridge(1)", "ssh(1)"),
    ),
    "automd-stdio-bridge": Page(
        name="automd-stdio-bridge",
        section=1,
        parser=bridge.build_parser,
        files=((DEFAULT_SOCKET, f"the socket it connects to, unless ${bridge.SOCKET_ENV}"),),
        exit_status=(
            ("0", "automd closed the connection (the client's requests were answered)"),
            (str(bridge.EX_UNAVAILABLE), "the socket cannot be reached (automd not installed?)"),
            (str(bridge.EX_NOPERM), "the socket refused the user (not root, not in group automd)"),
        ),
        see_also=("automctl(1)", "automd(8)", "sshd(8)"),
    ),
}


def escape(text: str) -> str:
    """Text safe in a roff line: backslashes, hyphens, and a leading control character."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\\&" + text if text.startswith((".", "'")) else text


def _help(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    # argparse's own expansion of %(default)s and friends, as --help shows it.
    return parser._get_formatter()._expand_help(action) if action.help else ""


def _argument(action: argparse.Action) -> str:
    """How an option or positional is written: bold names, an italic value."""
    if not action.option_strings:
        return f"\\fI{escape(action.metavar or action.dest)}\\fR"  # type: ignore[arg-type]
    names = ", ".join(f"\\fB{escape(option)}\\fR" for option in action.option_strings)
    if action.nargs == 0:
        return names
    metavar = action.metavar or action.dest.upper()
    return f"{names} \\fI{escape(str(metavar))}\\fR"


def _arguments(parser: argparse.ArgumentParser, *, skip: frozenset[str] = frozenset()) -> str:
    lines = []
    for action in parser._actions:
        if action.help == argparse.SUPPRESS or isinstance(action, argparse._SubParsersAction):
            continue
        if action.dest in skip:
            continue
        lines += [".TP", _argument(action), escape(_help(parser, action))]
    return "\n".join(lines)


def _usage(parser: argparse.ArgumentParser) -> str:
    """One line per form: argparse's wrapped lines joined, but a line that starts with the
    program again (a verb whose usage spells out several forms, as `defs`) is a form of its own."""
    forms: list[str] = []
    for line in parser.format_usage().removeprefix("usage:").splitlines():
        words = line.split()
        if not forms or words[: len(parser.prog.split())] == parser.prog.split():
            forms.append(" ".join(words))
        elif words:
            forms[-1] += " " + " ".join(words)
    return ".nf\n" + "\n".join(escape(form) for form in forms) + "\n.fi"


def _text(text: str) -> str:
    """A description or epilog: filled when it is one line, kept as written when it has more."""
    if "\n" not in text.strip():
        return escape(text.strip())
    return ".nf\n" + "\n".join(escape(line) for line in text.strip().splitlines()) + "\n.fi"


def render(page: Page) -> str:
    """The page as roff (man(7) macros)."""
    parser = page.parser()
    commands = parser_commands(parser)[1:]
    top_options = {action.dest for action in parser._actions if action.option_strings}
    title = f'{page.name.upper()} {page.section} "" "automd {__version__}" "automd"'
    out = [
        f".\\\" Generated by automd/manpage.py from {page.name}'s argument parser; do not edit.",
        f".TH {title}",
        ".SH NAME",
        f"{page.name} \\- {escape((parser.description or '').rstrip('.'))}",
        ".SH SYNOPSIS",
        _usage(parser),
        ".SH OPTIONS",
        _arguments(parser),
    ]
    if commands:
        out.append(".SH COMMANDS")
        out.append("Options before the command also work after it.")
        for names, sub in commands:
            out += [".SS " + escape(" | ".join(names)), _text(sub.description or ""), ".PP"]
            out.append(_usage(sub))
            # The global options are repeated on each verb's parser; listed once, above.
            if body := _arguments(sub, skip=frozenset(top_options)):
                out.append(body)
            if sub.epilog:  # the examples
                out += [".PP", _text(sub.epilog)]
    if page.exit_status:
        out.append('.SH "EXIT STATUS"')
        for code, meaning in page.exit_status:
            out += [".TP", f"\\fB{code}\\fR", escape(meaning)] if code else [".PP", escape(meaning)]
    if page.files:
        out.append(".SH FILES")
        for path, meaning in page.files:
            out += [".TP", f"\\fI{escape(path)}\\fR", escape(meaning)]
    out += [
        '.SH "SEE ALSO"',
        ", ".join(
            f"\\fB{escape(ref.split('(')[0])}\\fR({ref.split('(')[1]}" for ref in page.see_also
        )
        + ";",
        "the documentation in \\fI/usr/share/doc/automd\\fR.",
    ]
    return "\n".join(out) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    if len(args) != 1 or args[0] not in PAGES:
        print(f"usage: python -m automd.manpage {{{','.join(PAGES)}}}", file=sys.stderr)
        return 2
    sys.stdout.write(render(PAGES[args[0]]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
