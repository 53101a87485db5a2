"""The docs cover the API: every method, every error code, and the current API version."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from automd.api.codes import API_VERSION, ErrorCode
from automd.api.methods import METHODS
from automd.ctl.client import WHY_NOT_ANSWERING
from automd.ctl.exits import MEANINGS, Exit
from automd.ctl.main import VERBS

DOCS = Path(__file__).resolve().parents[2] / "docs"


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_is_documented(method: str) -> None:
    assert f"### `{method}`" in (DOCS / "api.md").read_text()


@pytest.mark.parametrize("code", list(ErrorCode), ids=lambda c: c.name)
def test_every_error_code_is_documented(code: ErrorCode) -> None:
    api = (DOCS / "api.md").read_text()
    assert re.search(rf"^\| {int(code)} \| {code.name} \| .+ \|$", api, re.M), code


def test_documented_error_codes_all_exist() -> None:
    api = (DOCS / "api.md").read_text()
    documented = {int(m) for m in re.findall(r"^\| (-?\d+) \| [A-Z_]+ \|", api, re.M)}
    assert documented == {int(code) for code in ErrorCode}


def test_error_codes_are_unique() -> None:
    assert len({int(c) for c in ErrorCode}) == len(ErrorCode)


def test_api_version_is_documented() -> None:
    assert f"API version: **{API_VERSION}**" in (DOCS / "api.md").read_text()


@pytest.mark.parametrize("verb", [v.name for v in VERBS if v.help])  # hidden: no help
def test_every_automctl_verb_is_documented(verb: str) -> None:
    assert re.search(rf"^\| `{verb}` \|", (DOCS / "automctl.md").read_text(), re.M)


def test_the_documented_exit_statuses_are_automctls() -> None:
    # docs/automctl.md's table, row by row: `| 66 | `NOT_FOUND` | ... |` is Exit.NOT_FOUND.
    docs = (DOCS / "automctl.md").read_text()
    table = docs[docs.index("## Exit status") :].split("\n## ", 1)[0]
    rows = re.findall(r"^\| (\d+) \| `([A-Z_]+)` \| (.+) \|$", table, re.M)
    assert [(int(status), name) for status, name, _ in rows] == [(s.value, s.name) for s in Exit]
    # ...and says what exits.MEANINGS says (the man page prints those).
    assert {Exit[name]: meaning for _, name, meaning in rows} == MEANINGS


def test_the_per_job_rule_in_the_docs_is_the_one_the_tests_install() -> None:
    # tests/integration/test_polkit.py installs the example commented in 50-automd.rules;
    # the rule shown in docs/polkit.md must be that same rule, so the docs are what is tested.
    docs = (DOCS / "polkit.md").read_text()
    shown = docs[docs.index("## A per-job rule") :].split("```js\n", 1)[1].split("```", 1)[0]
    rules = (DOCS.parent / "polkit" / "50-automd.rules").read_text()
    example = rules[rules.index("// polkit.addRule") :]
    shipped = "".join(
        line.removeprefix("//").removeprefix(" ") + "\n" for line in example.split("\n")
    )
    assert shown.strip() == shipped.strip()


@pytest.mark.parametrize("page", ["automctl.md", "systemd.md"])
def test_the_docs_quote_automctls_words_for_a_daemon_that_cannot_start(page: str) -> None:
    # Quoted in prose (wrapped): compared with whitespace folded.
    text = " ".join((DOCS / page).read_text().split())
    assert f"automd is busy or cannot start; {WHY_NOT_ANSWERING}" in text
