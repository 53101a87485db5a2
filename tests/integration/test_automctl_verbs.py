"""Every automctl verb, human and --json, and every documented error path, against the daemon."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from jsonschema import Draft7Validator  # type: ignore[import-untyped]

from automd.api.codes import API_VERSION
from automd.api.methods import METHODS
from tests.integration.conftest import CHECKOUT, OTHER_USER, SOCKET_PATH, TEST_USER
from tests.integration.container import Container
from tests.unit.test_openrpc import _REGISTRY as META_REGISTRY
from tests.unit.test_openrpc import HERE as OPENRPC_TESTS
from tests.unit.test_openrpc import _problems

AUTOMCTL = str(CHECKOUT / ".venv" / "bin" / "automctl")
UNKNOWN_ID = "0" * 26


def automctl(c: Container, *args: str, user: str | None = TEST_USER) -> tuple[int, str, str]:
    result = c.run([AUTOMCTL, *args], user=user, check=False, timeout=120)
    return result.returncode, result.stdout.decode(), result.stderr.decode()


@pytest.fixture(scope="module")
def job_id(container: Container) -> str:
    """A finished job of TEST_USER's, for the verbs that take an id."""
    code, out, err = automctl(container, "run", "hello", "name=verbs", "--wait", "-q")
    assert code == 0, err
    container.sync_journal()  # its output is all there, for the logs verbs
    return out.strip()


def verb_lines(job: str) -> list[list[str]]:
    return [
        ["run", "hello", "name=json"],
        ["run", "hello", "--wait"],
        ["status", job],
        ["show", job],
        ["logs", job],
        ["logs", job, "-n", "1"],
        ["list", "-n", "3"],
        ["defs"],
        ["defs", "backup"],
        ["retry", job],
        ["wait", job],
        ["cancel", job],  # finished by now: -> 1003, exit 1, checked below
        ["health"],
        ["version"],
        ["completion", "bash"],
    ]


@pytest.mark.parametrize("form", ["human", "json"])
def test_every_verb_in_human_and_json_form(container: Container, job_id: str, form: str) -> None:
    for args in verb_lines(job_id):
        extra = ["--json"] if form == "json" else []
        code, out, err = automctl(container, *args, *extra)
        if args[0] == "cancel":
            assert code == 1, (args, err)
            assert err.startswith("automctl: The job's state does not allow this (1003)"), err
            continue
        assert code == 0, (args, form, err)
        assert out, args
        if form == "json" and args[0] == "logs":
            assert [json.loads(line)["message"] for line in out.splitlines()][-1] == (
                "Hello, verbs!"
            )
        elif form == "json" and args[0] != "completion":
            json.loads(out)  # one JSON document
    # The admin-only verb, as an admin (root).
    code, out, err = automctl(container, "audit", "-n", "2", "--json", user=None)
    assert code == 0, err
    assert len(json.loads(out)["entries"]) == 2


def _one_clean_line(err: str) -> str:
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("automctl: ")
    return lines[0]


# (arguments, exit status, what the one stderr line says, whether the daemon said it)
ERRORS = [
    (["status", UNKNOWN_ID], 3, "No such job (1002)", True),
    (["logs", UNKNOWN_ID], 3, "No such job (1002)", True),
    (["logs", "-f", UNKNOWN_ID], 3, "No such job (1002)", True),
    (["cancel", UNKNOWN_ID], 3, "No such job (1002)", True),
    (["retry", UNKNOWN_ID], 3, "No such job (1002)", True),
    (["wait", UNKNOWN_ID], 3, "No such job (1002)", True),
    (["run", "nope"], 3, "No such job definition (1001)", True),
    (["defs", "nope"], 3, "No such job definition (1001)", True),
    (["run", "fail", "code=999"], 2, "params.code: must be between 0 and 255", True),
    (["run", "hello", "colour=blue"], 2, "colour: unknown parameter", True),
    (["status", "not-an-id"], 2, "Invalid params (-32602)", True),
    (["audit"], 4, "Permission denied (1007)", True),
    (["run", "hello", "nonsense"], 2, "expected key=value", False),
    (["run", "fail", "code=x"], 2, "code: 'x' is not an integer", False),
]


@pytest.mark.parametrize(("args", "status", "message", "remote"), ERRORS)
def test_error_paths_exit_with_their_status_and_one_line(
    container: Container, args: list[str], status: int, message: str, remote: bool
) -> None:
    code, out, err = automctl(container, *args)
    assert code == status, (args, err)
    assert message in _one_clean_line(err)
    assert out == ""
    code, out, err = automctl(container, *args, "--json")
    assert code == status
    line = _one_clean_line(err)
    assert message in line
    if remote:  # --json also puts the daemon's error object on stdout
        assert json.loads(out)["error"]["message"] in line


@pytest.fixture
def no_daemon(container: Container) -> Iterator[Container]:
    # Seven tests in a row: without stop_units/start_units resetting the start count, the
    # sixth start of automd.socket within 10 s hit its start limit (issue 13).
    container.stop_units("automd.socket", "automd.service")
    yield container
    container.start_units("automd.socket")


@pytest.mark.parametrize(
    "args",
    [["status", UNKNOWN_ID], ["logs", "-f", UNKNOWN_ID], ["list"], ["run", "hello"],
     ["version"], ["health"], ["wait", UNKNOWN_ID]],
)  # fmt: skip
def test_daemon_stopped_exits_5(no_daemon: Container, args: list[str]) -> None:
    code, _out, err = automctl(no_daemon, *args)
    assert code == 5, err
    assert "no such socket (is automd.socket running?)" in _one_clean_line(err)


@pytest.mark.parametrize("args", [["status", UNKNOWN_ID], ["list"], ["run", "hello"], ["defs"]])
def test_a_user_outside_group_automd_exits_4(container: Container, args: list[str]) -> None:
    code, _out, err = automctl(container, *args, user=OTHER_USER)
    assert code == 4
    assert "permission denied (are you root or in group automd?)" in _one_clean_line(err)


def test_rpc_discover_from_the_running_daemon_validates(container: Container) -> None:
    request = json.dumps({"jsonrpc": "2.0", "method": "rpc.discover", "id": 1})
    out = container.run(
        ["curl", "-sS", "--unix-socket", SOCKET_PATH, "-H", "Content-Type: application/json",
         "-d", request, "http://automd/rpc"],
        user=TEST_USER,
    ).stdout  # fmt: skip
    document = json.loads(out)["result"]
    schema = json.loads((OPENRPC_TESTS / "openrpc_meta_schema.json").read_text())
    validator = Draft7Validator(schema, registry=META_REGISTRY)
    assert _problems(validator, document) == []
    assert document["info"]["version"] == API_VERSION
    assert {m["name"] for m in document["methods"]} == set(METHODS)
