"""Shell completion scripts for automctl, generated from its argparse parser.

Everything comes from the parser: verbs and their aliases (the subparsers action), each verb's
options, the options before the verb, `choices` of options and positionals, and file names
for options whose dest is in PATH_DESTS. A new verb or option needs no change here.

zsh gets the bash script run through zsh's bashcompinit: one completion function for both
shells. Job ids and definition names are not completed (they would cost a daemon call).
"""

from __future__ import annotations

import argparse
import re
import shlex

SHELLS = ("bash", "zsh")

#: Options whose value is a path, by dest: completed with file names.
PATH_DESTS = frozenset({"socket", "path", "file", "config", "output"})

# Choices that are plain words are offered; anything a shell might expand is left out.
_PLAIN = re.compile(r"[\w.:,+/@%-]+")

Command = tuple[tuple[str, ...], argparse.ArgumentParser]  # names ("" before the verb), parser

_FUNCTION = """\
{fn}() {{
    # In zsh, bashcompinit's compgen -F runs this in sh emulation: arrays from 0, as in bash.
    local cur=${{COMP_WORDS[COMP_CWORD]}} verb='' option='' prefix='' skip='' dashdash=''
    local npos=0 i w words spec
    COMPREPLY=()
    for ((i = 1; i < COMP_CWORD; i++)); do
        w=${{COMP_WORDS[i]}}
        # bash splits --option=value into three words at "=".
        if [[ $w == = ]]; then skip=1; continue; fi
        if [[ -n $skip ]]; then skip=''; option=''; continue; fi
        if [[ -z $dashdash && $w == -- ]]; then dashdash=1
        elif [[ -z $dashdash && $w == -* ]]; then
            [[ $w != *=* ]] && {fn}_value "$verb" "$w" >/dev/null && skip=1 option=$w
        elif [[ -z $verb ]]; then verb=$w
        else npos=$((npos + 1)); fi
    done
    if [[ -n $skip ]]; then
        [[ $cur == = ]] && cur=''
    elif [[ -z $dashdash && $cur == --*=* ]]; then
        option=${{cur%%=*}} prefix=${{cur%%=*}}= cur=${{cur#*=}}
    else
        option=''
    fi
    if [[ -n $option ]]; then
        spec=$({fn}_value "$verb" "$option") || return 0
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
    COMPREPLY=($(compgen -W "$words" -- "$cur"))
}}
"""


def parser_commands(parser: argparse.ArgumentParser) -> list[Command]:
    """The parser itself (named ""), then each verb's parser with its name and aliases."""
    verbs: dict[int, Command] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
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
                spec = "@file" if action.dest in PATH_DESTS else _words(action.choices)
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


def _positionals(fn: str, commands: list[Command]) -> str:
    arms: list[tuple[list[str], str]] = []
    for names, parser in commands:
        verb_arms: list[tuple[list[str], str]] = []
        for action in (action for action in parser._actions if not action.option_strings):
            body = _print(_words(action.choices))
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
    return "\n".join([*parts, _FUNCTION.format(fn=fn), f"complete -F {fn} {shlex.quote(prog)}\n"])


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
