"""Every automctl command the docs show, run against the real daemon: the docs cannot drift.

The commands are read from the code blocks of docs/automctl.md and README.md: lines that start
with `automctl ` or, in a block of `$ ` prompts, `$ automctl ` (the other lines of such a block
are output). Each must exit 0, or N where its comment says `exits N`. Placeholders (<id>, ID,
the docs' example id) become a real job id. A command that cannot be run here is listed in
NOT_RUN with the reason; nothing else is left out.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

import pytest

from tests.integration.conftest import CHECKOUT, TEST_USER
from tests.integration.container import Container

AUTOMCTL = str(CHECKOUT / ".venv" / "bin" / "automctl")
DOCUMENTS = ("docs/automctl.md", "README.md")
PLACEHOLDERS = ("<id>", "ID", "01jd3k5x2q8v7n4m6p9r0s1t2u")
#: Verbs only an administrator may use: run as root.
ADMIN_VERBS = {"audit"}
#: The commands not run, each with its reason (the test fails if one is no longer documented).
NOT_RUN = {
    "automctl [-H [USER@]HOST[:PORT] | --socket PATH] [--json] [--no-color] [--timeout SECONDS] "
    "[-v] VERB": ("the synopsis, not a command"),
    "automctl list --watch 5": (
        "runs until Ctrl-C; tests/unit/test_ctl.py::test_list_watch_redraws_until_ctrl_c"
    ),
    # The test hosts load each definition once: one revision, nothing to compare or go back to.
    "automctl defs diff backup": (
        "needs two revisions of backup; tests/unit/test_ctl_revisions.py shows the output"
    ),
    "automctl defs rollback backup": (
        "needs two revisions of backup, and admin; tests/unit/test_ctl_revisions.py"
    ),
}


@dataclass(frozen=True)
class Documented:
    where: str
    line: str  # as written, without the prompt
    status: int  # what the docs say it exits with

    def argv(self, job_id: str) -> list[str]:
        words = shlex.split(self.line, comments=True)
        words = [job_id if word in PLACEHOLDERS else word for word in words]
        return [AUTOMCTL, *words[1:]]


def documented_commands() -> list[Documented]:
    found = []
    for name in DOCUMENTS:
        text = (CHECKOUT / name).read_text()
        for block in re.findall(r"^```[^\n]*\n(.*?)^```", text, re.S | re.M):
            lines = block.splitlines()
            prompted = any(line.startswith("$ ") for line in lines)
            for raw in lines:
                command = raw.removeprefix("$ ") if prompted else raw
                if (prompted and not raw.startswith("$ ")) or not command.startswith("automctl "):
                    continue
                exits = re.search(r"\bexits? (\d+)\b", command.partition("#")[2])
                found.append(Documented(name, command.strip(), int(exits[1]) if exits else 0))
    return found


def _bare(line: str) -> str:
    return line.partition("  #")[0].strip()


def test_the_docs_show_commands_and_every_exception_is_still_documented() -> None:
    lines = {_bare(d.line) for d in documented_commands()}
    assert len(lines) >= 10, lines
    assert set(NOT_RUN) <= lines, set(NOT_RUN) - lines


@pytest.fixture(scope="module")
def job_id(container: Container) -> str:
    """A finished job of TEST_USER's, for the placeholders; and /srv/www, which README says
    to make for the backup example."""
    container.run(["mkdir", "-p", "/srv/www"])
    result = container.run(
        [AUTOMCTL, "run", "hello", "name=docs", "--wait", "-q"], user=TEST_USER, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.decode().strip()


@pytest.mark.parametrize(
    "documented",
    [d for d in documented_commands() if _bare(d.line) not in NOT_RUN],
    ids=lambda d: f"{d.where}: {_bare(d.line)}"[:80],
)
def test_each_documented_command_exits_as_documented(
    container: Container, job_id: str, documented: Documented
) -> None:
    argv = documented.argv(job_id)
    user = None if argv[1] in ADMIN_VERBS else TEST_USER
    result = container.run(argv, user=user, check=False, timeout=300)
    err = result.stderr.decode()
    assert result.returncode == documented.status, (documented, err)
    assert "Traceback" not in err
    if "-q" in argv and argv[1] == "run":  # a job left running (long): do not keep it
        container.run([AUTOMCTL, "cancel", result.stdout.decode().strip()], user=TEST_USER)
