"""automctl's side of definition revisions (issue 22): the model diff as a pure function, and
`defs history|diff|rollback`, `defs NAME`, `defs`, `retry --current` against a fake automd."""

from __future__ import annotations

import copy
import io
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest

from automd import manpage
from automd.api.codes import ErrorCode
from automd.ctl.client import RemoteError
from automd.ctl.context import Context
from automd.ctl.exits import Exit, exit_for
from automd.ctl.main import build_parser, main
from automd.ctl.messages import describe
from automd.ctl.modeldiff import Change, diff, path_text, same
from automd.ctl.render import Output
from automd.ctl.revisions import canary_line, change_line, diverged_line, rollback_sentence
from tests.unit.fake_automd import Method, Refuse, Revisions, fake_automd, job_view
from tests.unit.test_completion import AUTOMCTL, complete, needs_zsh, press_tab, script

JOB = "0" * 26

# --- the diff, a pure function over two JSON values --------------------------------------------


def changes(old: Any, new: Any) -> list[tuple[str, str, Any, Any]]:
    return [(path_text(c.path), c.kind, c.old, c.new) for c in diff(old, new)]


def test_equal_values_have_no_differences() -> None:
    assert diff({"a": [1, {"b": None}]}, {"a": [1, {"b": None}]}) == []
    assert diff(MODEL_2, copy.deepcopy(MODEL_2)) == []


def test_a_changed_leaf_is_one_change_at_its_path() -> None:
    old = {"limits": {"memory_max": 536870912, "tasks_max": 32}}
    new = {"limits": {"memory_max": 1073741824, "tasks_max": 32}}
    assert changes(old, new) == [("limits.memory_max", "changed", 536870912, 1073741824)]


def test_added_and_removed_keys_carry_their_whole_value() -> None:
    old = {"environment": {"DEBUG": "1", "LC_ALL": "C"}, "parameters": {}}
    new = {"environment": {"LC_ALL": "C"}, "parameters": {"level": {"type": "integer"}}}
    assert changes(old, new) == [
        ("environment.DEBUG", "removed", "1", None),
        ("parameters.level", "added", None, {"type": "integer"}),
    ]


def test_lists_are_compared_index_by_index() -> None:
    assert changes({"argv": ["a", "--fast"]}, {"argv": ["a", "--safe"]}) == [
        ("argv[1]", "changed", "--fast", "--safe")
    ]
    assert changes(["a"], ["a", "b", "c"]) == [("[1]", "added", None, "b"),
                                               ("[2]", "added", None, "c")]  # fmt: skip
    assert changes(["a", "b", "c"], ["a"]) == [("[1]", "removed", "b", None),
                                               ("[2]", "removed", "c", None)]  # fmt: skip


def test_nested_objects_in_lists_diff_down_to_their_leaves() -> None:
    old = {"argv": [{"if": "verbose", "args": ["--verbose"]}]}
    new = {"argv": [{"if": "verbose", "args": ["--verbose", "--stats"]}]}
    assert changes(old, new) == [("argv[0].args[1]", "added", None, "--stats")]


def test_a_value_whose_type_changed_is_one_change() -> None:
    assert changes({"user": None}, {"user": "backup"}) == [("user", "changed", None, "backup")]
    assert changes({"x": {"a": 1}}, {"x": [1]}) == [("x", "changed", {"a": 1}, [1])]
    assert changes({"x": {"a": 1}}, {"x": 1}) == [("x", "changed", {"a": 1}, 1)]
    assert changes(1, "1") == [(".", "changed", 1, "1")]


def test_json_equality_not_pythons() -> None:
    assert changes({"on": True}, {"on": 1}) == [("on", "changed", True, 1)]
    assert changes({"n": 1}, {"n": 1.0}) == []
    assert not same(True, 1)
    assert not same({"a": 1}, [1])
    assert same({"a": [1, 2]}, {"a": [1, 2]})


def test_changes_are_ordered_by_path_with_indexes_as_numbers() -> None:
    old = {"b": 1, "a": {"z": 1, "y": 1}, "argv": [str(i) for i in range(12)]}
    new = {"b": 2, "a": {"z": 2, "y": 2}, "argv": [f"{i}!" for i in range(12)]}
    paths = [path_text(c.path) for c in diff(old, new)]
    assert paths == ["a.y", "a.z", *(f"argv[{i}]" for i in range(12)), "b"]


def test_paths_quote_keys_that_are_not_names() -> None:
    assert path_text(("environment", "A.B")) == 'environment["A.B"]'
    assert path_text(("sandbox", "overrides", "MemoryDenyWriteExecute")) == (
        "sandbox.overrides.MemoryDenyWriteExecute"
    )
    assert path_text(("argv", 4, "args", 0)) == "argv[4].args[0]"
    assert path_text(()) == "."


MODEL_2: dict[str, Any] = {
    "description": "Archive a directory under /srv",
    "executable": "/usr/bin/tar",
    "argv": ["--create", "--gzip", "--fast", "--file={dest}", "--directory={source}",
             {"if": "verbose", "args": ["--verbose"]}, "."],
    "parameters": {
        "source": {"type": "path", "allowed_prefixes": ["/srv"], "required": True,
                   "default": None, "description": "", "secret": False, "max_length": 4096},
        "verbose": {"type": "boolean", "default": False, "required": True, "description": "",
                    "secret": False},
    },
    "environment": {"LC_ALL": "C.UTF-8", "DEBUG": "1"},
    "working_directory": None,
    "user": None,
    "limits": {"memory_max": 536870912, "cpu_quota": "50%", "tasks_max": 32,
               "runtime_max_seconds": 3600},
    "retry": {"max_attempts": 3, "initial_delay_seconds": 10, "multiplier": 2.0,
              "max_delay_seconds": 300, "jitter": 0.2,
              "on_results": ["exit-code", "signal", "core-dump", "timeout"], "on_exit_codes": None},
    "concurrency": 1,
    "sandbox": {"profile": "default", "private_network": True, "read_write_paths": [],
                "overrides": {}},
    "directories": {"state": ["automd-backups"], "cache": [], "logs": []},
    "access": {"allowed_users": ["alice"], "allowed_groups": []},
}  # fmt: skip


def model_3() -> dict[str, Any]:
    """Revision 3: --safe for --fast, more memory, a level parameter, no DEBUG, bob too."""
    model = copy.deepcopy(MODEL_2)
    model["argv"][2] = "--safe"
    model["limits"]["memory_max"] = 1073741824
    model["parameters"]["level"] = {"type": "integer", "minimum": 1, "maximum": 9}
    del model["environment"]["DEBUG"]
    model["access"]["allowed_users"].append("bob")
    model["retry"]["on_results"] = ["exit-code", "signal"]
    return model


def test_a_real_looking_revision_change() -> None:
    assert changes(MODEL_2, model_3()) == [
        ("access.allowed_users[1]", "added", None, "bob"),
        ("argv[2]", "changed", "--fast", "--safe"),
        ("environment.DEBUG", "removed", "1", None),
        ("limits.memory_max", "changed", 536870912, 1073741824),
        ("parameters.level", "added", None, {"type": "integer", "minimum": 1, "maximum": 9}),
        ("retry.on_results[2]", "removed", "core-dump", None),
        ("retry.on_results[3]", "removed", "timeout", None),
    ]


def test_change_lines_read_like_a_diff_and_are_coloured_on_a_terminal() -> None:
    plain = context(colour=False)
    lines = [change_line(plain, change) for change in diff(MODEL_2, model_3())]
    assert lines[1:4] == [
        '  argv[2]: "--fast" -> "--safe"',
        '- environment.DEBUG: "1"',
        "  limits.memory_max: 536870912 -> 1073741824",
    ]
    assert lines[4] == '+ parameters.level: {"maximum": 9, "minimum": 1, "type": "integer"}'
    coloured = context(colour=True)
    assert change_line(coloured, Change(("a",), "removed", old=1)) == "\x1b[31m- a: 1\x1b[0m"
    assert change_line(coloured, Change(("a",), "added", new=1)) == "\x1b[32m+ a: 1\x1b[0m"
    assert change_line(coloured, Change(("a",), "changed", 1, 2)) == (
        "  a: \x1b[31m1\x1b[0m -> \x1b[32m2\x1b[0m"
    )


def context(*, colour: bool) -> Context:
    out = Output(io.StringIO(), colour=colour)
    return Context(client=cast(Any, None), out=out, err=out, json=False)


# --- status wording ----------------------------------------------------------------------------

CANARY = {"active": 3, "file": 4, "canary": 4, "diverged": False, "canary_percent": 50.0,
          "canary_succeeded": 3, "canary_failed": 1, "promote_after_successes": 20,
          "max_failure_rate": 0.2}  # fmt: skip
ROLLED_BACK = CANARY | {"active": 2, "file": 3, "canary": None, "diverged": True}


def test_canary_and_diverged_lines() -> None:
    assert canary_line(CANARY) == (
        "canary 4 at 50%: 3 succeeded, 1 failed (promote after 20, roll back above 20% failed)"
    )
    assert canary_line(CANARY | {"min_finished": 5}) == (
        "canary 4 at 50%: 3 succeeded, 1 failed "
        "(promote after 20, roll back above 20% failed of at least 5 finished)"
    )
    assert canary_line(ROLLED_BACK) is None
    assert diverged_line(CANARY) is None
    assert diverged_line(ROLLED_BACK) == (
        "diverged: the file holds revision 3, revision 2 is active (rolled back)"
    )


@pytest.mark.parametrize(
    ("result", "sentence"),
    [
        ({"definition": "backup", "active": 2, "previous": 3, "file": 3, "diverged": True},
         "backup: revision 2 is active again (was 3); the file holds revision 3: diverged until"
         " it changes or you roll back to 3"),
        ({"definition": "backup", "active": 3, "previous": 2, "file": 3, "diverged": False},
         "backup: revision 3 is active again (was 2); it is the file's revision: not diverged"),
        ({"definition": "backup", "active": 2, "previous": 3, "file": None, "diverged": True},
         "backup: revision 2 is active again (was 3); the file loads no revision: diverged until"
         " it does"),
    ],
)  # fmt: skip
def test_rollback_sentences(result: dict[str, Any], sentence: str) -> None:
    assert rollback_sentence(result) == sentence


# --- against a fake automd -------------------------------------------------------------------


@pytest.fixture
def socket_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    path = Path(f"/tmp/automctl-rev-{id(tmp_path)}.sock")  # AF_UNIX paths are short
    monkeypatch.setenv("AUTOMD_SOCKET", str(path))
    yield path
    path.unlink(missing_ok=True)


EVENTS = [
    {"at": "2026-12-04T10:05:00Z", "revision": 4, "event": "canary-started", "actor": None,
     "detail": "50% of new jobs"},
    {"at": "2026-12-03T10:00:00Z", "revision": 3, "event": "activated", "actor": "uid 0",
     "detail": None},
]  # fmt: skip


def backup(**status: Any) -> Revisions:
    models = {1: MODEL_2 | {"concurrency": None}, 2: MODEL_2, 3: model_3(),
              4: model_3() | {"concurrency": 2}}  # fmt: skip
    return Revisions("backup", models, events=EVENTS, **({"active": 3} | status))


def run(path: Path, methods: dict[str, Method], *argv: str) -> tuple[int, list[Any]]:
    try:
        with fake_automd(path, methods) as calls:
            status = main(list(argv))
    finally:
        path.unlink(missing_ok=True)  # the fake's socket file outlives it
    return status, list(calls)


def test_history_table_status_and_events(
    socket_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, calls = run(socket_path, backup(**CANARY).methods(), "defs", "history", "backup")
    assert status == Exit.OK
    assert calls == [("definition.history", {"name": "backup"})]
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["REV", "HASH", "LOADED", "SOURCE", "ROLE", "JOBS"]
    assert re.match(r"^4 +444444444444 +\w{3} 2026-12-04 \d\d:00:00 .* +reload by SIGHUP +canary"
                    r" +40$", lines[1]), lines[1]  # fmt: skip
    assert [line.split()[0] for line in lines[1:5]] == ["4", "3", "2", "1"]
    assert " active " in lines[2]
    assert " inactive " in lines[3]
    assert lines[5:8] == [
        "",
        "backup: active 3, file 4, canary 4",
        "canary 4 at 50%: 3 succeeded, 1 failed (promote after 20, roll back above 20% failed)",
    ]
    assert lines[9].split() == ["TIME", "REV", "EVENT", "BY", "DETAIL"]
    assert re.search(r" 4 +canary-started +- +50% of new jobs$", lines[10]), lines[10]
    assert re.search(r" 3 +activated +uid 0$", lines[11]), lines[11]


def test_history_says_when_the_definition_diverged(
    socket_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(socket_path, backup(**ROLLED_BACK).methods(), "defs", "history", "backup")[0] == 0
    out = capsys.readouterr().out
    assert "backup: active 2, file 3, canary -\n" in out
    assert "diverged: the file holds revision 3, revision 2 is active (rolled back)\n" in out
    assert "canary 4 at" not in out


def test_history_json_is_the_result_as_it_is(
    socket_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    revisions = backup(**CANARY)
    assert run(socket_path, revisions.methods(), "defs", "history", "backup", "--json")[0] == 0
    assert json.loads(capsys.readouterr().out) == revisions.history({"name": "backup"})


def test_defs_name_shows_its_revision_and_the_canary_and_divergence(
    socket_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(socket_path, backup().methods(), "defs", "backup")[0] == Exit.OK
    lines = capsys.readouterr().out.splitlines()
    assert lines[:2] == ["backup: Back up a directory", "Revision: 3 (active; file 3)"]
    assert lines[2].startswith("PARAMETER")
    assert run(socket_path, backup(**CANARY).methods(), "defs", "backup")[0] == Exit.OK
    lines = capsys.readouterr().out.splitlines()
    assert lines[1:3] == [
        "Revision: 3 (active; file 4; canary 4)",
        "canary 4 at 50%: 3 succeeded, 1 failed (promote after 20, roll back above 20% failed)",
    ]
    assert run(socket_path, backup(**ROLLED_BACK).methods(), "defs", "backup")[0] == Exit.OK
    lines = capsys.readouterr().out.splitlines()
    assert lines[1:3] == [
        "Revision: 2 (active; file 3)",
        "diverged: the file holds revision 3, revision 2 is active (rolled back)",
    ]


def test_defs_lists_revisions_and_marks_the_diverged(
    socket_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(socket_path, backup(**ROLLED_BACK).methods(), "defs")[0] == Exit.OK
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert lines[0].split() == ["NAME", "REV", "PARAMETERS", "DESCRIPTION"]
    assert re.match(r"^backup +2 \(diverged\) +source +Back up a directory$", lines[1]), lines
    assert "automctl defs history NAME" in err


def test_diff_defaults_to_the_active_revision_and_the_one_before(
    socket_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, calls = run(socket_path, backup().methods(), "defs", "diff", "backup")
    assert status == Exit.OK
    assert calls == [("definition.get", {"name": "backup"}),
                     ("definition.get", {"name": "backup", "revision": 2})]  # fmt: skip
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "backup: revision 2 (inactive) -> 3 (active)"
    assert lines[1:] == [change_line(context(colour=False), c) for c in diff(MODEL_2, model_3())]


def test_diff_takes_one_or_two_revisions(
    socket_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, calls = run(socket_path, backup().methods(), "defs", "diff", "backup", "1")
    assert (status, [c[1].get("revision") for c in calls]) == (Exit.OK, [None, 1])
    assert capsys.readouterr().out.splitlines()[0] == "backup: revision 1 (inactive) -> 3 (active)"
    status, calls = run(socket_path, backup(**CANARY).methods(), "defs", "diff", "backup", "3", "4")
    assert (status, [c[1].get("revision") for c in calls]) == (Exit.OK, [4, 3])
    assert capsys.readouterr().out.splitlines() == [
        "backup: revision 3 (active) -> 4 (canary)", "  concurrency: 1 -> 2"
    ]  # fmt: skip


def test_diff_of_a_revision_with_itself_has_no_differences(
    socket_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(socket_path, backup().methods(), "defs", "diff", "backup", "2", "2")[0] == 0
    assert (
        capsys.readouterr().out == "backup: revision 2 (inactive) -> 2 (inactive): no differences\n"
    )


def test_diff_without_an_earlier_revision_says_so(
    socket_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    only = Revisions("backup", {1: MODEL_2}, active=1)
    status, calls = run(socket_path, only.methods(), "defs", "diff", "backup")
    assert status == Exit.NOT_FOUND
    assert len(calls) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (
        "automctl: backup has only revision 1, nothing earlier to compare it with; "
        "automctl defs history backup lists its revisions\n"
    )


def test_diff_json(socket_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(socket_path, backup().methods(), "defs", "diff", "backup", "--json")[0] == 0
    result = json.loads(capsys.readouterr().out)
    assert (result["definition"], result["from"], result["to"]) == ("backup", 2, 3)
    assert result["changes"][:3] == [
        {"path": "access.allowed_users[1]", "change": "added", "old": None, "new": "bob"},
        {"path": "argv[2]", "change": "changed", "old": "--fast", "new": "--safe"},
        {"path": "environment.DEBUG", "change": "removed", "old": "1", "new": None},
    ]


def test_diff_against_an_automd_without_revisions_is_one_line(
    socket_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = {"definition.get": lambda p: {"name": "backup", "params_schema": {}}}
    assert run(socket_path, old, "defs", "diff", "backup")[0] == Exit.PROTOCOL
    assert "it is older than automctl" in capsys.readouterr().err


def test_rollback_says_what_is_active_and_that_it_diverged(
    socket_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, calls = run(socket_path, backup().methods(), "defs", "rollback", "backup")
    assert (status, calls) == (Exit.OK, [("definition.rollback", {"name": "backup"})])
    assert capsys.readouterr().out == (
        "backup: revision 2 is active again (was 3); the file holds revision 3: diverged until "
        "it changes or you roll back to 3\n"
    )
    status, calls = run(
        socket_path, backup().methods(), "defs", "rollback", "backup", "1", "--json"
    )
    assert calls == [("definition.rollback", {"name": "backup", "revision": 1})]
    assert json.loads(capsys.readouterr().out) == {
        "definition": "backup", "active": 1, "previous": 3, "file": 3, "diverged": True
    }  # fmt: skip


@pytest.mark.parametrize(
    ("argv", "status", "message"),
    [
        (["defs", "history", "nope"], Exit.NOT_FOUND,
         'no definition "nope"; automctl defs lists them'),
        (["defs", "diff", "backup", "9"], Exit.NOT_FOUND,
         "backup has no revision 9; automctl defs history backup lists its revisions"),
        (["defs", "diff", "backup", "1", "9"], Exit.NOT_FOUND,
         "backup has no revision 9; automctl defs history backup lists its revisions"),
        (["defs", "rollback", "backup", "7"], Exit.NOT_FOUND,
         "backup has no revision 7; automctl defs history backup lists its revisions"),
    ],
)  # fmt: skip
def test_unknown_definitions_and_revisions(
    socket_path: Path,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    status: Exit,
    message: str,
) -> None:
    assert run(socket_path, backup().methods(), *argv, "--json")[0] == status
    out, err = capsys.readouterr()
    assert err == f"automctl: {message}\n"
    assert json.loads(out)["error"]["code"] in (1001, 1010)


def test_rollback_with_nothing_earlier(
    socket_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    only = Revisions("backup", {1: MODEL_2}, active=1)
    assert run(socket_path, only.methods(), "defs", "rollback", "backup")[0] == Exit.NOT_FOUND
    assert capsys.readouterr().err == (
        "automctl: backup: no revision was active before 1; automctl defs history backup lists "
        "its revisions\n"
    )


def test_rollback_denied(socket_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def denied(params: dict[str, Any]) -> Any:
        raise Refuse(1007, "Permission denied", {"action": "org.automd.admin",
                                                 "reason": "admin only"})  # fmt: skip

    methods = backup().methods() | {"definition.rollback": denied}
    assert run(socket_path, methods, "defs", "rollback", "backup")[0] == Exit.NOPERM
    assert "permission denied: admin only" in capsys.readouterr().err


def test_unknown_revision_maps_like_unknown_definition() -> None:
    assert exit_for(RemoteError(int(ErrorCode.UNKNOWN_REVISION), "")) == Exit.NOT_FOUND
    error = RemoteError(int(ErrorCode.UNKNOWN_REVISION), "No such revision", None)
    error.method, error.params = "definition.get", {"name": "backup", "revision": 5}
    assert describe(error) == (
        "backup has no revision 5; automctl defs history backup lists its revisions"
    )


def test_a_refused_current_retry_names_the_option() -> None:
    reason = "the job has secret parameters, whose values automd does not keep"
    error = RemoteError(int(ErrorCode.INVALID_PARAMS), "Invalid params",
                        {"field": "revision", "reason": reason})  # fmt: skip
    error.method, error.params = "job.retry", {"id": JOB, "revision": "current"}
    assert describe(error) == f"--current: {reason}"


# --- `defs WORD`: a definition to show; `defs ACTION NAME ...`: the action ---------------------


@pytest.mark.parametrize("word", ["history", "diff", "rollback", "backup"])
def test_one_word_is_always_a_definition_to_show(socket_path: Path, word: str) -> None:
    shown = {"name": word, "description": "", "params_schema": {"properties": {}}}
    status, calls = run(socket_path, {"definition.get": lambda p: shown}, "defs", word)
    assert (status, calls) == (Exit.OK, [("definition.get", {"name": word})])


def test_an_action_takes_the_name_after_it_even_a_name_like_an_action(socket_path: Path) -> None:
    revisions = Revisions("history", {1: MODEL_2}, active=1)
    status, calls = run(socket_path, revisions.methods(), "defs", "history", "history")
    assert (status, calls) == (Exit.OK, [("definition.history", {"name": "history"})])


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["defs", "backup", "extra"], "nothing may follow the definition name 'backup'"),
        (["defs", "history", "backup", "2"], "too many arguments: automctl defs history NAME"),
        (["defs", "rollback", "backup", "1", "2"], "automctl defs rollback NAME [REV]"),
        (["defs", "diff", "backup", "1", "2", "3"], "automctl defs diff NAME [REV1] [REV2]"),
        (["defs", "diff", "backup", "two"], "'two' is not a revision number"),
        (["defs", "diff", "backup", "0"], "'0' is not a revision number"),
        (["defs", "rollback", "backup", "-1"], "'-1' is not a revision number"),
        (["defs", "rollback", "backup", "9" * 12], "is not a revision number"),
    ],
)
def test_mistakes_are_usage_errors_before_automd_is_asked(
    socket_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], said: str
) -> None:
    status, calls = run(socket_path, backup().methods(), *argv)
    assert (status, calls) == (Exit.USAGE, [])
    err = capsys.readouterr().err
    assert said in err
    assert len(err.splitlines()) == 1


# --- retry --current, and the revision a job runs ---------------------------------------------


def test_retry_current_asks_for_the_active_revision(socket_path: Path) -> None:
    methods: dict[str, Method] = {"job.retry": lambda p: {"job": job_view()}}
    assert run(socket_path, methods, "retry", JOB, "--current")[1] == [
        ("job.retry", {"id": JOB, "revision": "current"})
    ]
    assert run(socket_path, methods, "retry", JOB)[1] == [("job.retry", {"id": JOB})]


def test_status_names_the_jobs_revision(
    socket_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    detail = {"job": job_view(revision=2), "attempts": [], "events": []}
    assert run(socket_path, {"job.get": lambda p: detail}, "status", JOB)[0] == Exit.OK
    assert re.search(r"^Definition: +hello \(revision 2\)$", capsys.readouterr().out, re.M)


# --- help, man page, completion ----------------------------------------------------------------


def test_help_and_man_page_show_every_form_with_examples() -> None:
    parser = next(a for a in build_parser()._actions if a.dest == "verb")
    text = cast(Any, parser).choices["defs"].format_help()
    for form in ("[NAME]", "history NAME", "diff NAME [REV1] [REV2]", "rollback NAME [REV]"):
        assert f"automctl defs [options] {form}\n" in text
    assert "  automctl defs diff backup 2 4\n" in text
    page = manpage.render(manpage.PAGES["automctl"])
    assert ".nf\nautomctl defs [options] [NAME]\nautomctl defs [options] history NAME\n" in page
    assert "  automctl defs rollback backup 2\n" in page


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        ([], ["history", "diff", "rollback", "backup"]),
        (["history"], ["backup"]),
        (["diff", "backup"], ["4", "3", "2", "1"]),
        (["diff", "backup", "2"], ["4", "3", "2", "1"]),
        (["diff", "backup", "2", "3"], []),
        (["rollback", "backup"], ["4", "3", "2", "1"]),
        (["rollback", "backup", "2"], []),
        (["history", "backup"], []),
        (["backup"], []),
    ],
)
def test_completion_words_of_defs(
    socket_path: Path, capsys: pytest.CaptureFixture[str], words: list[str], expected: list[str]
) -> None:
    assert run(socket_path, backup().methods(), "__complete", "defs", "--", *words)[0] == 0
    assert capsys.readouterr().out.split() == expected


def test_without_automd_the_actions_still_complete(
    socket_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["__complete", "defs", "--"]) == Exit.OK
    assert capsys.readouterr().out.split() == ["history", "diff", "rollback"]


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        (["defs", ""], ["backup", "diff", "history", "rollback"]),
        (["defs", "hi"], ["history"]),
        (["defs", "diff", ""], ["backup"]),
        (["defs", "diff", "backup", ""], ["1", "2", "3", "4"]),
        (["--json", "defs", "rollback", "backup", "3"], ["3"]),
        (["defs", "rollback", "backup", "3", ""], []),
        (["defs", "backup", ""], []),
    ],
)
def test_bash_completes_defs(
    tmp_path: Path, socket_path: Path, words: list[str], expected: list[str]
) -> None:
    with fake_automd(socket_path, backup().methods()):
        assert sorted(complete(tmp_path, AUTOMCTL, *words)) == expected


DEFS_LINES = {  # typed, then TAB, in a real shell
    "automctl defs hi": "automctl defs history ",
    "automctl defs history ba": "automctl defs history backup ",
    "automctl defs rollback backup 4": "automctl defs rollback backup 4 ",
}


@needs_zsh
@pytest.mark.parametrize("shell", ["bash", "zsh"])
def test_tab_completes_defs(tmp_path: Path, socket_path: Path, shell: str) -> None:
    path = f"{Path(AUTOMCTL).parent}:/usr/bin:/bin"
    if shell == "bash":
        load = f"source {script(tmp_path, 'bash')}"
        bind = r"""bind -x '"\C-t": printf "%s\n" "$READLINE_LINE" >> OUT; READLINE_LINE='"""
    else:
        load = f"autoload -U compinit; compinit -u -D; source {script(tmp_path, 'zsh')}"
        bind = "dump() { print -r -- $BUFFER >> OUT; BUFFER=; }; zle -N dump; bindkey '^T' dump"
    with fake_automd(socket_path, backup().methods()):
        typed = press_tab(tmp_path, shell, f"{load}; {bind}", DEFS_LINES, path)
    assert typed == DEFS_LINES
