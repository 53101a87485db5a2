"""Shell completion scripts for automctl, generated from its argparse parser.

Everything comes from the parser: verbs and their aliases (the subparsers action), each verb's
options, the options before the verb, `choices` of options and positionals, and file names
for options whose dest is in PATH_DESTS. A new verb or option needs no change here.

zsh gets the bash script run through zsh's bashcompinit: one completion function for both
shells. Definition names, parameters and job ids are the daemon's: arguments whose dest is in
DAEMON_DESTS get them from `automctl __complete KIND` (complete_words.py), at TAB time.
Verbs whose name starts with "_" are hidden: not offered.
"""

from __future__ import annotations

import argparse
import re
import shlex

from automd.ctl.complete_words import COMPLETE_VERB

SHELLS = ("bash", "zsh")

#: Options whose value is a path, by dest: completed with file names.
PATH_DESTS = frozenset({"socket", "path", "file", "config", "output"})
#: The option naming the daemon's socket: given on the line, the daemon's words come from it.
SOCKET_OPTION = "--socket"
#: Arguments whose values are the daemon's, by dest -> the KIND `automctl __complete` takes.
DAEMON_DESTS = {
    "definition": "definitions", "params": "parameters", "id": "jobs", "ids": "jobs",
    "schedule": "schedules", "subject": "defs", "operands": "defs",
}  # fmt: skip

# Choices that are plain words are offered; anything a shell might expand is left out.
_PLAIN = re.compile(r"[\w.:,+/@%-]+")

Command = tuple[tuple[str, ...], argparse.ArgumentParser]  # names ("" before the verb), parser

_FUNCTION = """\
{fn}_daemon() {{  # the daemon's words of kind $1; after it, the verb's positional words so far
    local kind=$1
    shift
    "${{COMP_WORDS[0]}}" ${{socket:+{socket_option} "$socket"}} {complete} "$kind" -- "$@" \
        2>/dev/null
}}

{fn}() {{
    # In zsh, bashcompinit's compgen -F runs this in sh emulation: arrays from 0, as in bash.
    local cur=${{COMP_WORDS[COMP_CWORD]}} verb='' option='' prefix='' skip='' dashdash=''
    local npos=0 socket='' i w words spec
    local -a pos=()
    COMPREPLY=()
    for ((i = 1; i < COMP_CWORD; i++)); do
        w=${{COMP_WORDS[i]}}
        # bash splits --option=value into three words at "=".
        if [[ $w == = ]]; then skip=1; continue; fi
        if [[ -n $skip ]]; then
            # The socket typed on the line is the one to ask for the daemon's words.
            [[ $option == {socket_option} ]] && socket=$w
            skip=''; option=''; continue
        fi
        if [[ -z $dashdash && $w == -- ]]; then dashdash=1
        elif [[ -z $dashdash && $w == -* ]]; then
            [[ $w == {socket_option}=* ]] && socket=${{w#*=}}
            [[ $w != *=* ]] && {fn}_value "$verb" "$w" >/dev/null && skip=1 option=$w
        elif [[ -z $verb ]]; then verb=$w
        else npos=$((npos + 1)); pos+=("$w"); fi
    done
    if [[ -n $skip ]]; then
        [[ $cur == = ]] && cur=''
    elif [[ -z $dashdash && $cur == --*=* ]]; then
        option=${{cur%%=*}} prefix=${{cur%%=*}}= cur=${{cur#*=}}
    else
        option=''
    fi
    # The value of a key=value word (bash splits it at "="): nothing to offer.
    [[ -n $skip && -z $option ]] && return 0
    if [[ -n $option ]]; then
        spec=$({fn}_value "$verb" "$option") || return 0
        [[ $spec == @daemon:* ]] && spec=$({fn}_daemon "${{spec#@daemon:}}")
        if [[ $spec == @file ]]; then
            [[ -n ${{BASH_VERSION-}} ]] && compopt -o filenames 2>/dev/null
            while IFS= read -r w; do COMPREPLY+=("$prefix$w"); done < <(compgen -f -- "$cur")
        else
            COMPREPLY=($(compgen -P "$prefix" -W "$spec" -- "$cur"))
        fi
        return 0
    fi
    if [[ -z $dashdash && $cur == -* ]]; then
        words=$({fn}_options "$verb")
    elif [[ -z $verb ]]; then
        words=$({fn}_positional '' 0)
    else
        words=$({fn}_positional "$verb" "$npos")
    fi
    if [[ $words == @daemon:parameters ]]; then
        # name= is completed without the space after it: the value comes next.
        [[ -n ${{BASH_VERSION-}} ]] && compopt -o nospace 2>/dev/null
        words=$({fn}_daemon parameters "${{pos[@]}}")
    elif [[ $words == @daemon:* ]]; then
        words=$({fn}_daemon "${{words#@daemon:}}" "${{pos[@]}}")
    fi
    COMPREPLY=($(compgen -W "$words" -- "$cur"))
}}
"""


def parser_commands(parser: argparse.ArgumentParser) -> list[Command]:
    """The parser itself (named ""), then each verb's parser with its name and aliases."""
    verbs: dict[int, Command] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                if name.startswith("_"):  # hidden
                    continue
                names = verbs.get(id(sub), ((), sub))[0]
                verbs[id(sub)] = ((*names, name), sub)
    return [(("",), parser), *verbs.values()]


def _words(values: object) -> str:
    items = values if isinstance(values, list | tuple | dict | set | frozenset) else []
    return " ".join(str(value) for value in items if _PLAIN.fullmatch(str(value)))


def _print(words: str) -> str:
    return f"printf '%s\\n' {shlex.quote(words)}" if words else ":"


def _function(name: str, comment: str, subject: str, arms: list[tuple[list[str], str]]) -> str:
    lines = [f"{name}() {{  # {comment}", f"    case {subject} in"]
    lines += [f"        {' | '.join(patterns)}) {body} ;;" for patterns, body in arms]
    return "\n".join([*lines, "    esac", "}", ""])


def _options(fn: str, commands: list[Command]) -> str:
    arms = []
    for names, parser in commands:
        options = [
            option
            for action in parser._actions
            if action.help != argparse.SUPPRESS
            for option in action.option_strings
        ]
        arms.append(([shlex.quote(name) for name in names], _print(" ".join(options))))
    return _function(f"{fn}_options", 'the options of verb $1 ("" before the verb)', '"$1"', arms)


def _values(fn: str, commands: list[Command]) -> str:
    specs: dict[str, dict[str, list[str]]] = {}  # spec -> option -> verbs having it so
    for names, parser in commands:
        for action in parser._actions:
            if action.option_strings and action.nargs != 0:
                spec = _spec(action) if action.dest not in PATH_DESTS else "@file"
                for option in action.option_strings:
                    specs.setdefault(spec, {}).setdefault(option, []).extend(names)
    every = sorted(name for names, _ in commands for name in names)
    arms = []
    for spec, options in specs.items():
        patterns = []
        for option, having in options.items():
            if sorted(having) == every:  # a global option: on every verb's parser
                patterns.append("*" + shlex.quote(f" {option}"))
            else:
                patterns += [shlex.quote(f"{name} {option}") for name in having]
        arms.append((patterns, _print(spec)))
    arms.append((["*"], "return 1"))
    comment = "option $2 of verb $1: its choices, or @file; fails for a flag"
    return _function(f"{fn}_value", comment, '"$1 $2"', arms)


def _spec(action: argparse.Action) -> str:
    """An argument's words: its choices, or @daemon:KIND for the daemon's names."""
    if action.dest in DAEMON_DESTS:
        return f"@daemon:{DAEMON_DESTS[action.dest]}"
    if isinstance(action, argparse._SubParsersAction):  # the verbs, hidden ones left out
        return _words([name for name in action.choices if not name.startswith("_")])
    return _words(action.choices)


def _positionals(fn: str, commands: list[Command]) -> str:
    arms: list[tuple[list[str], str]] = []
    for names, parser in commands:
        verb_arms: list[tuple[list[str], str]] = []
        for action in (action for action in parser._actions if not action.option_strings):
            body = _print(_spec(action))
            if action.nargs in ("*", "+", argparse.REMAINDER):  # every later word
                verb_arms.append(([shlex.quote(f"{name} ") + "*" for name in names], body))
                break
            for _ in range(action.nargs if isinstance(action.nargs, int) else 1):
                index = len(verb_arms)
                verb_arms.append(([shlex.quote(f"{name} {index}") for name in names], body))
            if action.nargs == argparse.PARSER:  # the verb: later words are its own
                break
        if any(body != ":" for _, body in verb_arms):
            arms += verb_arms
    comment = "choices for positional $2 (from 0) of verb $1"
    return _function(f"{fn}_positional", comment, '"$1 $2"', arms)


def _bash(parser: argparse.ArgumentParser, prog: str, fn: str) -> str:
    commands = parser_commands(parser)
    parts = [_options(fn, commands), _values(fn, commands), _positionals(fn, commands)]
    return "\n".join(
        [
            *parts,
            _FUNCTION.format(fn=fn, complete=COMPLETE_VERB, socket_option=SOCKET_OPTION),
            f"complete -F {fn} {shlex.quote(prog)}\n",
        ]
    )


def completion_script(shell: str, parser: argparse.ArgumentParser, prog: str = "automctl") -> str:
    """The completion script for `shell` (one of SHELLS), from `parser`'s actions."""
    fn = "_" + re.sub(r"\W", "_", prog)
    body = _bash(parser, prog, fn)
    if shell == "bash":
        return (
            f"# bash completion for {prog}, generated from its argument parser by\n"
            f"# `{prog} completion bash`. Load it with: source <({prog} completion bash)\n"
            f"# or save it as ~/.local/share/bash-completion/completions/{prog}.\n\n" + body
        )
    if shell == "zsh":
        return (
            f"#compdef {prog}\n"
            f"# zsh completion for {prog}, generated from its argument parser by\n"
            f"# `{prog} completion zsh`: the bash completion, through zsh's bashcompinit.\n"
            f"# Load it after compinit in ~/.zshrc: source <({prog} completion zsh)\n"
            f"# or save it as {fn} in a directory of $fpath.\n\n"
            "autoload -U +X bashcompinit && bashcompinit\n\n" + body + "\n"
            "# Autoloaded from $fpath: complete this first time too.\n"
            f"if [[ ${{funcstack[1]-}} == {fn} ]]; then _bash_complete -F {fn}; fi\n"
        )
    raise ValueError(f"unknown shell {shell!r}; expected one of {', '.join(SHELLS)}")
