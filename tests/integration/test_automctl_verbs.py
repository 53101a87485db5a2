"""Every automctl verb, human and --json, and every documented error path, against the daemon."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from jsonschema import Draft7Validator  # type: ignore[import-untyped]

from automd.api.codes import API_VERSION
from automd.api.methods import METHODS
from tests.integration.conftest import CHECKOUT, OTHER_USER, SOCKET_PATH, TEST_USER, wait_for
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
        ["cancel", job],  # finished by now: nothing to do, exit 0 like systemctl stop
        ["health"],
        ["version"],
        ["completion", "bash"],
    ]


@pytest.mark.parametrize("form", ["human", "json"])
def test_every_verb_in_human_and_json_form(container: Container, job_id: str, form: str) -> None:
    for args in verb_lines(job_id):
        extra = ["--json"] if form == "json" else []
        code, out, err = automctl(container, *args, *extra)
        assert code == 0, (args, form, err)
        if args[0] == "cancel" and form == "human":
            assert out == f"Job {job_id}: already succeeded, nothing to cancel\n"
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


NO_JOB = f"no job {UNKNOWN_ID} (or it is not yours); automctl list shows your jobs"
# (arguments, exit status, what the one stderr line says, whether the daemon said it)
ERRORS = [
    (["status", UNKNOWN_ID], 66, NO_JOB, True),
    (["logs", UNKNOWN_ID], 66, NO_JOB, True),
    (["logs", "-f", UNKNOWN_ID], 66, NO_JOB, True),
    (["cancel", UNKNOWN_ID], 66, NO_JOB, True),
    (["retry", UNKNOWN_ID], 66, NO_JOB, True),
    (["wait", UNKNOWN_ID], 66, NO_JOB, True),
    (["run", "nope"], 66, 'no definition "nope"; automctl defs lists them', True),
    (["defs", "nope"], 66, 'no definition "nope"; automctl defs lists them', True),
    (["run", "Hello"], 64, "'Hello' is not a definition name; automctl defs lists them", True),
    (["run", "fail", "code=999"], 64,
     "code: must be between 0 and 255; automctl defs fail describes its parameters", True),
    (["run", "hello", "colour=blue"], 64,
     'hello has no parameter "colour"; automctl defs hello lists them', True),
    (["run", "hello", "name=" + "x" * 100_000], 64, "", True),
    (["audit"], 77, "permission denied", True),
    (["status", "not-an-id"], 64, "'not-an-id' is not a job id", False),
    (["run", "hello", "nonsense"], 64, "'nonsense' is not key=value", False),
    (["run", "fail", "code=x"], 64, "code: 'x' is not an integer", False),
    (["list", "--since", "1 fortnight"], 64, "'1 fortnight' is not a time", False),
    (["--timeout", "-1", "list"], 64, "argument --timeout: '-1'", False),
    (["--timeout", "0", "list"], 64, "argument --timeout: '0'", False),
    (["--timeout", "nan", "list"], 64, "argument --timeout: 'nan'", False),
    (["--timeout", "1e400", "list"], 64, "argument --timeout: '1e400'", False),
    (["list", "-n", "0"], 64, "argument -n/--limit: '0'", False),
    (["cancel", ""], 64, "'' is not a job id", False),
    (["run", "hello", "name=\udcff"], 64, "is not valid UTF-8", False),
]  # fmt: skip


@pytest.mark.parametrize(("args", "status", "message", "remote"), ERRORS, ids=lambda v: str(v)[:40])
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
    error = json.loads(out)["error"]  # --json: the error on stdout too, as one line
    assert out.count("\n") == 1
    if remote:  # the daemon's error object, as it came
        assert isinstance(error["code"], int)
    else:
        assert error["message"] in line


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
def test_daemon_stopped_exits_69(no_daemon: Container, args: list[str]) -> None:
    code, _out, err = automctl(no_daemon, *args)
    assert code == 69, err
    assert "no such socket (is automd.socket running?)" in _one_clean_line(err)


@pytest.mark.parametrize("args", [["status", UNKNOWN_ID], ["list"], ["run", "hello"], ["defs"]])
def test_a_user_outside_group_automd_exits_77(container: Container, args: list[str]) -> None:
    code, _out, err = automctl(container, *args, user=OTHER_USER)
    assert code == 77
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


CONFIG = "/etc/automd/automd.toml"


def test_a_daemon_that_cannot_start_is_named_with_where_to_look(container: Container) -> None:
    """A bad automd.toml: systemd restarts automd every 2 s while callers wait in the socket's
    backlog. automctl says automd cannot start and where to read why, not a bare timeout."""
    c = container
    kept = c.run(["cat", CONFIG], check=False)
    c.stop_units("automd.service")
    c.write_file(CONFIG, "[server]\nbogus = 1\n")
    try:
        code, out, err = automctl(c, "--timeout", "3", "version")
        assert code == 75, err
        line = _one_clean_line(err)
        assert "no answer within 3s: automd is busy or cannot start" in line
        assert "systemctl status automd and journalctl -u automd say why" in line
        assert out == ""
        # It was the configuration: automd has failed to start (78/CONFIG) meanwhile.
        wait_for(
            "automd failed to start",
            lambda: c.show("automd.service", "NRestarts", "ExecMainStatus"),
            lambda s: int(s["NRestarts"]) >= 1 or s["ExecMainStatus"] == "78",
        )
    finally:
        if kept.returncode == 0:
            c.write_file(CONFIG, kept.stdout)
        else:
            c.run(["rm", "-f", CONFIG])
    # The cause is gone: the next restart comes up and answers.
    wait_for("automd answers again", lambda: automctl(c, "version")[0], lambda code: code == 0)
