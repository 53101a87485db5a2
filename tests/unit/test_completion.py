"""automctl's shell completion, driven in real shells; and automctl's import footprint."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from automd.api.jobs import JobState
from automd.ctl.completion import SHELLS, completion_script
from automd.ctl.main import build_parser
from tests.unit.fake_automd import Method, fake_automd

# The API's states: automctl's --state choices must follow them.
STATES = [state.value for state in JobState]
GLOBAL_OPTIONS = {"--socket", "--json", "--no-color", "--timeout"}

needs_zsh = pytest.mark.skipif(shutil.which("zsh") is None, reason="zsh is not installed")


def script(tmp_path: Path, shell: str, parser: argparse.ArgumentParser | None = None) -> Path:
    path = tmp_path / f"automctl.{shell}"
    path.write_text(completion_script(shell, parser or build_parser()))
    return path


def complete(
    tmp_path: Path, *words: str, parser: argparse.ArgumentParser | None = None
) -> list[str]:
    """COMPREPLY for the command line `words` (the last one is being completed), in bash."""
    drive = 'source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _automctl; '
    drive += 'printf "%s\\n" "${COMPREPLY[@]}"'
    argv = [
        "bash",
        "--norc",
        "--noprofile",
        "-c",
        drive,
        "bash",
        str(script(tmp_path, "bash", parser)),
    ]
    done = subprocess.run([*argv, *words], capture_output=True, text=True, check=True, timeout=10)
    assert done.stderr == ""
    return [line for line in done.stdout.splitlines() if line]


def test_bash_script_parses(tmp_path: Path) -> None:
    subprocess.run(["bash", "-n", str(script(tmp_path, "bash"))], check=True)


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        (["automctl", "li"], ["list"]),
        (["automctl", "sh"], ["show"]),  # an alias
        (["automctl", "list", "--st"], ["--state"]),
        (["automctl", "list", "--state", ""], STATES),
        (["automctl", "list", "--state", "su"], ["succeeded"]),
        # bash splits --state=su into three words at "="
        (["automctl", "list", "--state", "=", "su"], ["succeeded"]),
        (["automctl", "list", "--state", "="], STATES),
        (["automctl", "list", "--state=su"], ["--state=succeeded"]),
        (["automctl", "audit", "--outcome", ""], ["ok", "denied", "error"]),
        (["automctl", "--timeout", "3", "li"], ["list"]),  # an option's value is not the verb
        (["automctl", "--socket", "=", "/s", "--json", "st"], ["status"]),
        (["automctl", "status", "x", "--js"], ["--json"]),
        (["automctl", "status", ""], []),  # job ids are not completed
        (["automctl", "list", "--limit", ""], []),
    ],
)
def test_bash_completes(tmp_path: Path, words: list[str], expected: list[str]) -> None:
    assert complete(tmp_path, *words) == expected


def test_bash_completes_verbs_and_global_options(tmp_path: Path) -> None:
    verbs = complete(tmp_path, "automctl", "")
    assert {"run", "status", "show", "list", "defs", "cancel", "wait", "version"} <= set(verbs)
    assert GLOBAL_OPTIONS | {"--version", "--help"} <= set(complete(tmp_path, "automctl", "--"))
    assert set(complete(tmp_path, "automctl", "list", "--")) >= GLOBAL_OPTIONS


def test_bash_completes_run_options(tmp_path: Path) -> None:
    options = complete(tmp_path, "automctl", "run", "--")
    assert {"--wait", "--idempotency-key", "--print-id"} <= set(options)
    assert "--state" not in options


def test_bash_completes_socket_with_file_names(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "automd.sock").touch()
    (tmp_path / "run" / "other").touch()
    sock = f"{tmp_path}/run/automd.sock"
    assert complete(tmp_path, "automctl", "--socket", f"{tmp_path}/run/au") == [sock]
    assert complete(tmp_path, "automctl", "status", "--socket", f"{tmp_path}/run/au") == [sock]
    assert len(complete(tmp_path, "automctl", "--socket", f"{tmp_path}/run/")) == 2


def test_new_verbs_options_and_choices_come_from_the_parser(tmp_path: Path) -> None:
    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    frob = subparsers.add_parser("frobnicate", aliases=["frob"])
    frob.add_argument("--level", choices=["low", "high"])
    frob.add_argument("--loud", action="store_true")
    frob.add_argument("shell", choices=SHELLS)
    frob.add_argument("extra", nargs="*", choices=["x1", "x2"])
    assert "frobnicate" in complete(tmp_path, "automctl", "fro", parser=parser)
    assert complete(tmp_path, "automctl", "frob", "--l", parser=parser) == ["--level", "--loud"]
    assert complete(tmp_path, "automctl", "frob", "--level", "", parser=parser) == ["low", "high"]
    assert complete(tmp_path, "automctl", "frobnicate", "", parser=parser) == ["bash", "zsh"]
    after = ["automctl", "frob", "--level", "low", "--loud", "zsh", "x1", ""]
    assert complete(tmp_path, *after, parser=parser) == ["x1", "x2"]


def test_unknown_shell() -> None:
    with pytest.raises(ValueError, match="fish"):
        completion_script("fish", build_parser())


# --- zsh, and real TAB presses in bash and zsh (through zsh's zpty) ---------------------------

# zsh -f TYPE OUT SETUP LINE...: in an interactive shell ($TYPE_SHELL) that ran SETUP, types each
# LINE, TAB and Ctrl-T; SETUP binds Ctrl-T to append the command line to OUT and clear it.
TYPE = r"""
zmodload zsh/zpty
out=$1 setup=$2; shift 2
zpty sh ${=TYPE_SHELL}
zpty -w sh "$setup"
for line in "$@"; do zpty -w -n sh "$line"$'\t\C-T'; done
for i in {1..300}; do
  while zpty -r -t sh chunk; do :; done
  [[ -f $out ]] && typed=( ${(f)"$(<$out)"} ) && (( $#typed >= $# )) && break
  sleep 0.05
done
zpty -d sh
"""

LINES = {  # typed, then TAB: what the command line becomes
    "automctl li": "automctl list ",
    "automctl sh": "automctl show ",
    "automctl list --st": "automctl list --state ",
    "automctl list --state su": "automctl list --state succeeded ",
    "automctl list --state=fa": "automctl list --state=failed ",
    "automctl run --idem": "automctl run --idempotency-key ",
    "automctl --json st": "automctl --json status ",
    "automctl --socket dir/au": "automctl --socket dir/automd.sock ",
}


def press_tab(
    tmp_path: Path,
    shell: str,
    setup: str,
    lines: dict[str, str] = LINES,
    path: str = "/usr/bin:/bin",
) -> dict[str, str]:
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "automd.sock").touch()
    out = tmp_path / "lines"
    command = {"bash": "bash --norc --noprofile -i", "zsh": "zsh -f -i"}[shell]
    env = {"PATH": path, "HOME": str(tmp_path), "TERM": "dumb", "TYPE_SHELL": command,
           "AUTOMD_SOCKET": os.environ.get("AUTOMD_SOCKET", "")}  # fmt: skip
    subprocess.run(
        ["zsh", "-f", "-c", TYPE, "type", str(out), setup.replace("OUT", str(out)), *lines],
        cwd=tmp_path, env=env, check=True, timeout=60,
    )  # fmt: skip
    typed = out.read_text().splitlines() if out.exists() else []
    return dict(zip(lines, typed, strict=False))


@needs_zsh
def test_zsh_script_parses(tmp_path: Path) -> None:
    subprocess.run(["zsh", "-n", str(script(tmp_path, "zsh"))], check=True)


@needs_zsh
def test_zsh_script_loads_after_compinit(tmp_path: Path) -> None:
    load = 'autoload -U compinit && compinit -u -D && source "$1" && print -r -- $_comps[automctl]'
    done = subprocess.run(
        ["zsh", "-f", "-c", load, "zsh", str(script(tmp_path, "zsh"))],
        capture_output=True, text=True, check=True, timeout=30, env={"HOME": str(tmp_path)},
    )  # fmt: skip
    assert (done.stdout, done.stderr) == ("_bash_complete -F _automctl\n", "")


@needs_zsh
def test_tab_in_bash(tmp_path: Path) -> None:
    bind = r"""bind -x '"\C-t": printf "%s\n" "$READLINE_LINE" >> OUT; READLINE_LINE='"""
    # In bash, a directory gets a slash and no space (zsh adds a space: bashcompinit's limit).
    lines = LINES | {"automctl --socket di": "automctl --socket dir/"}
    assert press_tab(tmp_path, "bash", f"source {script(tmp_path, 'bash')}; {bind}", lines) == lines


@needs_zsh
@pytest.mark.parametrize("how", ["source", "fpath"])
def test_tab_in_zsh(tmp_path: Path, how: str) -> None:
    path = script(tmp_path, "zsh")
    if how == "source":
        load = f"autoload -U compinit; compinit -u -D; source {path}"
    else:  # saved as _automctl in a directory of $fpath, as its #compdef line allows
        (tmp_path / "functions").mkdir()
        path.rename(tmp_path / "functions" / "_automctl")
        load = f"fpath=({tmp_path}/functions $fpath); autoload -U compinit; compinit -u -D"
    bind = "dump() { print -r -- $BUFFER >> OUT; BUFFER=; }; zle -N dump; bindkey '^T' dump"
    assert press_tab(tmp_path, "zsh", f"{load}; {bind}") == LINES


# --- automctl starts fast: none of the daemon's dependencies ---------------------------------

HEAVY = ["pydantic", "aiohttp", "dbus_fast", "systemd", "aiosqlite", "prometheus_client",
         "automd.daemon", "automd.rpc", "automd.http", "automd.jobs", "automd.store"]  # fmt: skip


def test_automctl_imports_none_of_the_daemons_modules() -> None:
    code = "import sys, automd.ctl.main, automd.ctl.completion; print(*sys.modules, sep='\\n')"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=30
    )
    modules = done.stdout.split()
    assert "automd.ctl.main" in modules
    loaded = [m for m in modules for heavy in HEAVY if m == heavy or m.startswith(f"{heavy}.")]
    assert loaded == []


# --- the daemon's words: definitions, parameters, job ids (automctl __complete) ----------------

AUTOMCTL = str(Path(sys.executable).parent / "automctl")
JOBS = ["01jd3k5x2q8v7n4m6p9r0s1t2u", "01jd3k5x2q8v7n4m6p9r0s1t2v"]


@pytest.fixture
def daemon(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    path = Path(f"/tmp/automctl-complete-{os.getpid()}.sock")
    monkeypatch.setenv("AUTOMD_SOCKET", str(path))
    schema = {"properties": {"name": {"type": "string"}, "count": {"type": "integer"}}}
    methods: dict[str, Method] = {
        "definition.list": lambda p: {
            "definitions": [{"name": "hello"}, {"name": "backup"}],
            "errors": [],
        },
        "definition.get": lambda p: {"name": p["name"], "params_schema": schema},
        "job.list": lambda p: {"jobs": [{"id": job} for job in JOBS], "next_cursor": None},
    }
    with fake_automd(path, methods):
        yield path
    path.unlink(missing_ok=True)


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        (["run", ""], ["backup", "hello"]),
        (["defs", "he"], ["hello"]),
        (["list", "--definition", "b"], ["backup"]),
        (["run", "hello", ""], ["count=", "name="]),
        (["run", "hello", "name=Ada", "c"], ["count="]),
        (["run", "hello", "name", "=", "A"], []),  # bash's words for name=A: a value
        (["status", ""], JOBS),
        (["logs", "-f", "01jd3k5x2q8v7n4m6p9r0s1t2u"], ["01jd3k5x2q8v7n4m6p9r0s1t2u"]),
        (["cancel", JOBS[0], ""], JOBS),
        (["wait", ""], JOBS),
        (["retry", ""], JOBS),
    ],
)
def test_bash_completes_the_daemons_words(
    tmp_path: Path, daemon: Path, words: list[str], expected: list[str]
) -> None:
    assert sorted(complete(tmp_path, AUTOMCTL, *words)) == sorted(expected)


def test_no_daemon_completes_nothing_silently(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AUTOMD_SOCKET", str(tmp_path / "none.sock"))
    assert complete(tmp_path, AUTOMCTL, "status", "") == []


def test_the_completion_verb_is_hidden(tmp_path: Path) -> None:
    assert not [word for word in complete(tmp_path, "automctl", "") if word.startswith("_")]


DAEMON_LINES = {  # typed, then TAB, with automctl on PATH and the fake daemon answering
    "automctl run he": "automctl run hello ",
    "automctl defs ba": "automctl defs backup ",
    "automctl list --definition he": "automctl list --definition hello ",
    "automctl cancel 01": "automctl cancel 01jd3k5x2q8v7n4m6p9r0s1t2",  # their common prefix
}


@needs_zsh
@pytest.mark.parametrize("shell", ["bash", "zsh"])
def test_tab_completes_the_daemons_words(tmp_path: Path, daemon: Path, shell: str) -> None:
    path = f"{Path(AUTOMCTL).parent}:/usr/bin:/bin"
    if shell == "bash":
        load = f"source {script(tmp_path, 'bash')}"
        bind = r"""bind -x '"\C-t": printf "%s\n" "$READLINE_LINE" >> OUT; READLINE_LINE='"""
        # name= waits for its value: no space after it.
        lines = DAEMON_LINES | {"automctl run hello na": "automctl run hello name="}
    else:
        load = f"autoload -U compinit; compinit -u -D; source {script(tmp_path, 'zsh')}"
        bind = "dump() { print -r -- $BUFFER >> OUT; BUFFER=; }; zle -N dump; bindkey '^T' dump"
        # zsh's bashcompinit has no per-word nospace: a space follows name= (its limit).
        lines = DAEMON_LINES | {"automctl run hello na": "automctl run hello name= "}
    assert press_tab(tmp_path, shell, f"{load}; {bind}", lines, path) == lines


def test_help_completes_the_verbs(tmp_path: Path) -> None:
    assert complete(tmp_path, "automctl", "help", "re") == ["retry"]


def test_the_socket_on_the_line_is_the_daemon_asked(
    tmp_path: Path, daemon: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AUTOMD_SOCKET", str(tmp_path / "none.sock"))
    assert complete(tmp_path, AUTOMCTL, "--socket", str(daemon), "wait", "") == JOBS
    # bash's words for --socket=PATH: the option, "=", the path.
    assert complete(tmp_path, AUTOMCTL, "--socket", "=", str(daemon), "defs", "he") == ["hello"]
