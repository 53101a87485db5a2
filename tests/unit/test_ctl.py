"""automctl against its own parsing and a fake automd (tests/unit/fake_automd.py): typing of
key=value words, exit statuses, messages, hostile option values, output order and Ctrl-C."""

from __future__ import annotations

import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from automd.api.codes import ErrorCode
from automd.api.exit_status import exit_status_name
from automd.ctl.client import (
    ClientError,
    ConnectPermissionDenied,
    DaemonUnreachable,
    NoAnswer,
    RemoteError,
)
from automd.ctl.completion import parser_commands
from automd.ctl.context import UsageError
from automd.ctl.exits import Exit, exit_for, job_exit_status
from automd.ctl.jobtext import relative_time
from automd.ctl.main import build_parser, main
from automd.ctl.messages import describe
from automd.ctl.times import parse_time
from automd.ctl.verbs import parse_assignments
from tests.terminal_signals import sigint_as_in_a_terminal
from tests.unit.fake_automd import Method, Refuse, fake_automd, job_view

SCHEMA = {
    "properties": {"n": {"type": "integer"}, "b": {"type": "boolean"}, "s": {"type": "string"}}
}
JOB = "0" * 26
ROOT = Path(__file__).resolve().parents[2]


def test_assignments_are_typed_by_the_schema() -> None:
    params = parse_assignments(["n=3", "b=yes", "s=a=b c", "other=$(id)"], SCHEMA)
    assert params == {"n": 3, "b": True, "s": "a=b c", "other": "$(id)"}


@pytest.mark.parametrize(
    ("word", "message"),
    [
        ("n=x", "not an integer"),
        ("b=maybe", "true or false"),
        ("novalue", "is not key=value"),
        ("=v", "key=value"),
    ],
)
def test_bad_assignments(word: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse_assignments([word], SCHEMA)


def job(state: str, exit_code: int | None = None, signal: int | None = None) -> dict[str, Any]:
    return {"state": state, "exit_code": exit_code, "signal": signal}


@pytest.mark.parametrize(
    ("finished", "status"),
    [
        (job("succeeded", 0), 0),
        (job("succeeded", None), 0),
        (job("failed", 3), 3),
        (job("failed", 203), 203),
        (job("failed", None, 9), Exit.KILLED),
        (job("timed_out", None, 15), Exit.KILLED),
        (job("cancelled", None, 15), Exit.KILLED),
        (job("failed", None, None), Exit.FAILURE),
        (job("unknown"), Exit.FAILURE),
    ],
)
def test_exit_status_passes_the_jobs_through(finished: dict[str, Any], status: int) -> None:
    assert job_exit_status(finished) == status


def test_automctls_own_statuses_cannot_be_a_jobs_0_to_63() -> None:
    own = {s for s in Exit if s not in (Exit.OK, Exit.FAILURE, Exit.KILLED, Exit.INTERRUPTED)}
    assert all(64 <= s <= 78 for s in own), own  # sysexits.h's range


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (RemoteError(int(ErrorCode.JOB_NOT_FOUND), ""), Exit.NOT_FOUND),
        (RemoteError(int(ErrorCode.UNKNOWN_DEFINITION), ""), Exit.NOT_FOUND),
        (RemoteError(int(ErrorCode.INVALID_PARAMS), ""), Exit.USAGE),
        (RemoteError(int(ErrorCode.INVALID_JOB_STATE), ""), Exit.REFUSED),
        (RemoteError(int(ErrorCode.QUEUE_FULL), ""), Exit.TEMPFAIL),
        (RemoteError(int(ErrorCode.STORE_UNAVAILABLE), ""), Exit.TEMPFAIL),
        (RemoteError(int(ErrorCode.PERMISSION_DENIED), ""), Exit.NOPERM),
        (RemoteError(int(ErrorCode.INTERNAL_ERROR), ""), Exit.SOFTWARE),
        (RemoteError(int(ErrorCode.METHOD_NOT_FOUND), ""), Exit.PROTOCOL),
        (RemoteError(4242, ""), Exit.PROTOCOL),
        (NoAnswer("slow"), Exit.TEMPFAIL),
        (DaemonUnreachable("gone"), Exit.UNAVAILABLE),
        (ConnectPermissionDenied("no"), Exit.NOPERM),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, Exception) else str(v),
)
def test_automctls_failures_map_to_their_status(error: ClientError, status: Exit) -> None:
    assert exit_for(error) == status


def test_systemd_exit_statuses_are_named() -> None:
    assert [exit_status_name(s) for s in (203, 217, 226, 3)] == [
        "203/EXEC", "217/USER", "226/NAMESPACE", "3"
    ]  # fmt: skip


def test_global_options_before_or_after_the_verb() -> None:
    parser = build_parser()
    assert parser.parse_args(["--json", "status", JOB]).json is True
    assert parser.parse_args(["status", JOB, "--json"]).json is True
    assert parser.parse_args(["show", JOB]).id == JOB


def test_relative_time() -> None:
    now = datetime(2026, 11, 22, 12, 0, 0, tzinfo=UTC)
    assert relative_time("2026-11-22T11:57:00Z", now) == "3min ago"
    assert relative_time("2026-11-22T12:00:30Z", now) == "30s from now"
    assert relative_time(None, now) == "-"


@pytest.mark.parametrize(
    ("typed", "sent"),
    [
        ("1h", "2026-11-22T11:00:00Z"),
        ("30m", "2026-11-22T11:30:00Z"),
        ("2d", "2026-11-20T12:00:00Z"),
        ("1h 30min ago", "2026-11-22T10:30:00Z"),
        ("2026-11-01T08:00:00+01:00", "2026-11-01T07:00:00Z"),
        ("2026-11-01T08:00:00Z", "2026-11-01T08:00:00Z"),
    ],
)
def test_times_as_people_type_them(typed: str, sent: str) -> None:
    assert parse_time(typed, datetime(2026, 11, 22, 12, 0, 0, tzinfo=UTC)) == sent


def test_yesterday_is_the_start_of_the_local_day_before() -> None:
    now = datetime(2026, 11, 22, 12, 0, 0, tzinfo=UTC)
    midnight = datetime.fromisoformat(parse_time("yesterday", now)).astimezone()
    assert (midnight.hour, midnight.minute, midnight.date()) == (0, 0, (now.astimezone().date()
            .fromordinal(now.astimezone().date().toordinal() - 1)))  # fmt: skip


# --- the one place that words automd's errors -----------------------------------------------


def remote(code: ErrorCode, data: Any, method: str = "", **params: Any) -> RemoteError:
    error = RemoteError(int(code), "raw message", data)
    error.method, error.params = method, params
    return error


@pytest.mark.parametrize(
    ("error", "sentence"),
    [
        (remote(ErrorCode.UNKNOWN_DEFINITION, {"definition": "nope"}),
         'no definition "nope"; automctl defs lists them'),
        (remote(ErrorCode.JOB_NOT_FOUND, {"id": JOB}),
         f"no job {JOB} (or it is not yours); automctl list shows your jobs"),
        (remote(ErrorCode.INVALID_JOB_STATE, {"id": JOB, "state": "running", "operation": "retry"}),
         f"job {JOB} is running: only a finished job can be retried; automctl wait {JOB}"),
        (remote(ErrorCode.INVALID_PARAMS, {"field": "name", "reason": "String should match"},
                "definition.get", name="Hello"),
         "'Hello' is not a definition name; automctl defs lists them"),
        (remote(ErrorCode.INVALID_PARAMS, {"field": "params.colour", "reason": "unknown parameter"},
                "job.submit", definition="hello"),
         'hello has no parameter "colour"; automctl defs hello lists them'),
        (remote(ErrorCode.INVALID_PARAMS, {"field": "params.code", "reason": "must be 0-255"},
                "job.submit", definition="fail"),
         "code: must be 0-255; automctl defs fail describes its parameters"),
        (remote(ErrorCode.INVALID_PARAMS, {"field": "since", "reason": "input is too short"}),
         "--since: input is too short"),
        (remote(ErrorCode.STORE_UNAVAILABLE, {"reason": "disk full"}),
         "automd cannot write its state (disk full): nothing was recorded; try again once"
         " there is space (automctl health says why)"),
        (remote(ErrorCode.PERMISSION_DENIED, {"action": "org.automd.audit", "reason": "admin"}),
         "permission denied: admin; an administrator can grant org.automd.audit"
         " (docs/polkit.md)"),
    ],
)  # fmt: skip
def test_errors_become_a_sentence_naming_what_to_do(error: RemoteError, sentence: str) -> None:
    assert describe(error) == sentence


@pytest.mark.parametrize("code", list(ErrorCode), ids=lambda c: c.name)
@pytest.mark.parametrize("data", [None, {}, "text", {"field": None, "reason": None}])
def test_every_error_code_is_one_line_whatever_its_data(code: ErrorCode, data: Any) -> None:
    sentence = describe(remote(code, data))
    assert sentence
    assert "\n" not in sentence


# --- hostile option values: one line, a documented status, never a traceback ----------------

HOSTILE = ["-1", "0", "nan", "inf", "-inf", "1e400", "", "\udcff\udcfe", "9" * 5000,
           "x" * 100_000, "1_0e", "-x"]  # fmt: skip
# (argv with {} where the hostile value goes, whether every hostile value is a usage error)
FORMS = [
    (["--timeout", "{}", "list"], True),
    (["list", "-n", "{}"], True),
    (["list", "--since", "{}"], True),
    (["list", "--definition", "{}"], False),
    (["list", "--state", "{}"], True),
    (["audit", "-n", "{}"], True),
    (["audit", "--uid", "{}"], False),  # 0 is root's
    (["audit", "--since", "{}"], True),
    (["audit", "--method", "{}"], False),
    (["audit", "--outcome", "{}"], True),
    (["logs", JOB, "-n", "{}"], True),
    (["logs", JOB, "--attempt", "{}"], True),
    (["status", "{}"], True),
    (["show", "{}"], True),
    (["logs", "{}"], True),
    (["cancel", JOB, "{}"], True),
    (["retry", "{}"], True),
    (["wait", "{}"], True),
    (["run", "{}"], False),
    (["run", "hello", "{}"], False),
    (["run", "hello", "--idempotency-key", "{}"], False),
    (["defs", "{}"], False),
    (["completion", "{}"], True),
    (["--socket", "{}", "version"], False),
    (["health", "{}"], True),
]


@pytest.fixture
def no_daemon(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "automd.sock"
    monkeypatch.setenv("AUTOMD_SOCKET", str(path))
    return path


@pytest.mark.parametrize("value", HOSTILE, ids=lambda v: repr(v)[:12])
@pytest.mark.parametrize(
    ("form", "always_usage"), [pytest.param(*f, id=" ".join(f[0])) for f in FORMS]
)
def test_hostile_values_end_in_one_line_and_a_documented_status(
    no_daemon: Path,
    capsys: pytest.CaptureFixture[str],
    form: list[str],
    always_usage: bool,
    value: str,
) -> None:
    argv = [value if word == "{}" else word for word in form]
    status = main(argv)
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    assert len(err.splitlines()) == 1, err[:500]
    assert err.startswith("automctl: ")
    # Anything not refused at once is sent, and there is no daemon (or `run hello x`).
    assert status in ((Exit.USAGE,) if always_usage else (Exit.USAGE, Exit.UNAVAILABLE))


def test_a_usage_mistake_is_one_line_pointing_at_help(
    no_daemon: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["list", "--frob"]) == Exit.USAGE
    out, err = capsys.readouterr()
    assert (out, err) == ("", "automctl: unrecognized arguments: --frob (see automctl --help)\n")
    assert main(["--json", "list", "-n", "0"]) == Exit.USAGE
    out, err = capsys.readouterr()
    assert json.loads(out)["error"]["message"] in err


def test_a_malformed_key_value_fails_before_the_daemon_is_asked(
    no_daemon: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", "hello", "nonsense", "--json"]) == Exit.USAGE
    out, err = capsys.readouterr()
    assert "is not key=value" in json.loads(out)["error"]["message"]
    assert len(err.splitlines()) == 1


def test_unreachable_under_json_is_an_error_object(
    no_daemon: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--json", "status", JOB]) == Exit.UNAVAILABLE
    out, _err = capsys.readouterr()
    assert "no such socket" in json.loads(out)["error"]["message"]


# --- against a fake automd --------------------------------------------------------------------


@pytest.fixture
def socket_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    # AF_UNIX paths are short (108 bytes): pytest's tmp_path may be longer.
    path = Path(f"/tmp/automctl-test-{os.getpid()}-{id(tmp_path)}.sock")
    monkeypatch.setenv("AUTOMD_SOCKET", str(path))
    yield path
    path.unlink(missing_ok=True)


HELLO = {"name": "hello", "description": "Print a greeting", "params_schema": {"properties": {}}}


def finished(**fields: Any) -> dict[str, Any]:
    return job_view(state="failed", result="exit-code", finished_at="2026-11-22T12:00:03+00:00",
                    unit="automd-hello-x.service", **fields)  # fmt: skip


def test_cancelling_a_finished_job_succeeds_like_systemctl_stop(
    socket_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def cancel(params: dict[str, Any]) -> Any:
        raise Refuse(1003, "The job's state does not allow this",
                     {"id": params["id"], "state": "succeeded", "operation": "cancel"})  # fmt: skip

    methods = {"job.cancel": cancel, "job.get": lambda p: {"job": job_view(state="succeeded")}}
    with fake_automd(socket_path, methods):
        assert main(["cancel", JOB]) == Exit.OK
    assert capsys.readouterr().out == f"Job {JOB}: already succeeded, nothing to cancel\n"


def test_summary_names_systemds_status_retries_and_a_log_command_that_works(
    socket_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    done = finished(exit_code=203, attempts=3, max_attempts=3)
    methods = {
        "definition.get": lambda p: HELLO,
        "job.submit": lambda p: {"job": job_view(), "replayed": False},
        "job.get": lambda p: {"job": done, "attempts": [], "events": []},
    }
    with fake_automd(socket_path, methods):
        assert main(["run", "hello", "--wait"]) == 203
        _out, err = capsys.readouterr()
        assert "Finished with result: exit-code (failed) after 3 attempts\n" in err
        assert "Main process terminated with: exit status 203/EXEC\n" in err
        assert f"(output: automctl logs {JOB})" in err
        assert "journalctl" not in err
        assert main(["status", JOB]) == Exit.OK
        out, _err = capsys.readouterr()
        assert re.search(r"^Unit: +automd-hello-x.service \(gone", out, re.M), out
        assert re.search(rf"^Logs: +automctl logs {JOB}$", out, re.M), out


def test_follow_json_is_one_object_per_line_to_the_end(
    socket_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    entry = {"message": "hi", "priority": 6, "cursor": "c1"}
    logs = {"entries": [entry, entry], "cursor": "c1", "finished": True, "more": False}
    methods = {
        "definition.get": lambda p: HELLO,
        "job.submit": lambda p: {"job": job_view(), "replayed": False},
        "job.logs": lambda p: logs,
        "job.get": lambda p: {"job": finished(exit_code=1), "attempts": [], "events": []},
    }
    with fake_automd(socket_path, methods):
        assert main(["run", "hello", "--follow", "--json"]) == 1
    lines = capsys.readouterr().out.splitlines()
    objects = [json.loads(line) for line in lines]
    assert [o.get("message") for o in objects] == ["hi", "hi", None]
    assert objects[-1]["job"]["exit_code"] == 1


def test_list_names_systemds_exit_statuses(
    socket_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    methods: dict[str, Method] = {
        "job.list": lambda p: {"jobs": [finished(exit_code=217)], "next_cursor": None}
    }
    with fake_automd(socket_path, methods):
        assert main(["list"]) == Exit.OK
    assert capsys.readouterr().out.splitlines()[1].endswith("exit-code (217/USER)")


def test_since_takes_an_age(socket_path: Path) -> None:
    methods: dict[str, Method] = {"job.list": lambda p: {"jobs": [], "next_cursor": None}}
    with fake_automd(socket_path, methods) as calls:
        assert main(["list", "--since", "1h"]) == Exit.OK
    sent = datetime.fromisoformat(calls[0][1]["since"])
    assert 3590 < (datetime.now(UTC) - sent).total_seconds() < 3700


@pytest.fixture
def running_job(socket_path: Path) -> Iterator[tuple[Path, threading.Event, threading.Event]]:
    """A fake whose job runs until `end` is set; `asked` is set once automctl polls it."""
    end, asked = threading.Event(), threading.Event()

    def get(params: dict[str, Any]) -> Any:
        asked.set()
        state = finished(exit_code=0) | {"state": "succeeded"} if end.is_set() else job_view(
            state="running", unit="automd-hello-x.service")  # fmt: skip
        return {"job": state, "attempts": [], "events": []}

    methods: dict[str, Method] = {
        "definition.get": lambda p: HELLO,
        "job.submit": lambda p: {"job": job_view(), "replayed": False},
        "job.get": get,
    }
    with fake_automd(socket_path, methods):
        yield socket_path, end, asked
    end.set()


# Without PYTHONUNBUFFERED (set in some shells): stdout block-buffered, as in a CI pipe.
ENV = {name: value for name, value in os.environ.items() if name != "PYTHONUNBUFFERED"}


@contextmanager
def automctl(socket_path: Path, *args: str) -> Iterator[subprocess.Popen[bytes]]:
    """automctl as its own process, stdout a pipe with stderr on it too (2>&1 | cat); killed
    if still running when the block ends, so no test leaves one behind."""
    with sigint_as_in_a_terminal():  # the tests Ctrl-C it
        proc = subprocess.Popen(
            [sys.executable, "-m", "automd.ctl.main", *args],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=ENV | {"AUTOMD_SOCKET": str(socket_path), "PYTHONFAULTHANDLER": "1"}, cwd=ROOT,
        )  # fmt: skip
    with proc:
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.kill()


def output_of(proc: subprocess.Popen[bytes], within: float = 60.0) -> bytes:
    """The rest of automctl's output once it exits; if it has not within `within`, its stack
    (SIGABRT: PYTHONFAULTHANDLER prints where each thread was) in the failure."""
    try:
        return proc.communicate(timeout=within)[0]
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGABRT)
        stack = proc.communicate()[0].decode(errors="replace")
        pytest.fail(f"automctl still running after {within:g}s:\n{stack}")


def first_line(proc: subprocess.Popen[bytes], within: float = 30.0) -> bytes:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], within)
    assert ready, f"no line within {within:g}s while the job runs"
    return proc.stdout.readline()


def test_under_a_pipe_the_queued_line_comes_while_the_job_runs(
    running_job: tuple[Path, threading.Event, threading.Event],
) -> None:
    path, end, _asked = running_job
    with automctl(path, "run", "hello", "--wait") as proc:
        assert first_line(proc) == f"Job {JOB} queued\n".encode()
        end.set()
        rest = output_of(proc)
    assert proc.returncode == 0
    assert rest.decode().startswith("Finished with result:")


@pytest.mark.parametrize("verb", [["run", "hello", "--wait"], ["wait", JOB]], ids=str)
def test_ctrl_c_while_waiting_says_the_job_runs_on(
    running_job: tuple[Path, threading.Event, threading.Event], verb: list[str]
) -> None:
    path, _end, asked = running_job
    with automctl(path, *verb) as proc:
        if verb[0] == "run":
            first_line(proc)
        assert asked.wait(30)  # polling the running job
        proc.send_signal(signal.SIGINT)
        rest = output_of(proc)
    assert proc.returncode == Exit.INTERRUPTED
    assert rest.decode() == (
        f"automctl: job {JOB} is still running; automctl cancel {JOB} stops it\n"
    )


def test_a_cancelled_job_never_reads_as_a_success(
    socket_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 16.4: systemd reports a unit stopped by a cancel as Result=success, signal 15,
    and automctl printed "success (cancelled)". Checked: fails on the code before the fix."""
    stopped = "cancelled (stopped with SIGTERM)"
    job = job_view(state="cancelled", result="success", signal=15, outcome=stopped,
                   finished_at="2026-11-22T12:00:03+00:00", unit="automd-x.service")  # fmt: skip
    attempt = {"number": 1, "state": "finished", "result": "success", "retry_reason": None}
    methods: dict[str, Method] = {
        "job.get": lambda p: {"job": job, "attempts": [attempt], "events": []},
        "job.list": lambda p: {"jobs": [job], "next_cursor": None},
    }
    with fake_automd(socket_path, methods):
        assert main(["status", JOB]) == Exit.OK
        shown = capsys.readouterr().out
        assert "Result:      cancelled (stopped with SIGTERM), signal 15" in shown
        assert "attempt 1: finished, success (stopped by the cancel)" in shown
        assert main(["list"]) == Exit.OK
        assert capsys.readouterr().out.splitlines()[1].endswith(stopped)


DEFINED = {
    "name": "backup", "description": "Back up a directory",
    "params_schema": {
        "properties": {
            "source": {"type": "string", "maxLength": 4096, "pattern": "^/",
                       "x-allowed-prefixes": ["/srv", "/var/www"],
                       "description": "what to back up"},
            "mode": {"type": "string", "maxLength": 16, "enum": ["full", "incr"],
                     "default": "incr"},
            "level": {"type": "integer", "minimum": 1, "maximum": 9},
            "tag": {"type": "string", "minLength": 2, "maxLength": 32, "pattern": "^(?:[a-z]+)$"},
        },
        "required": ["source"],
    },
    "sandbox": {"profile": "strict", "private_network": True, "read_write_paths": ["/srv/backup"],
                "protect_home": None, "private_tmp": None, "overrides": {}},
}  # fmt: skip


def test_defs_shows_types_constraints_and_the_sandbox(
    socket_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with fake_automd(socket_path, {"definition.get": lambda p: DEFINED}):
        assert main(["defs", "backup"]) == Exit.OK
    out = capsys.readouterr().out
    assert "null" not in out
    assert "Sandbox: profile strict; private network; writes /srv/backup\n" in out
    rows = {line.split()[0]: line for line in out.splitlines()[2:]}
    assert re.search(r"^source +path +required +- +under /srv or /var/www,", rows["source"])
    assert re.search(
        r"^mode +string +optional +incr +one of full\|incr, 0\.\.16 chars", rows["mode"]
    )
    assert re.search(r"^level +integer +optional +- +1\.\.9", rows["level"])
    assert re.search(r"^tag .* matches \^\(\?:\[a-z\]\+\)\$, 2\.\.32 chars", rows["tag"])


@contextmanager
def silent_socket(path: Path, *, close: bool) -> Iterator[None]:
    """A socket that takes connections and, like automd failing to start, never answers:
    `close` closes each at once (its process exited), else it stays open (waiting)."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(8)
    held: list[socket.socket] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            if close:
                conn.recv(65536)  # the request was sent: closing now is "no answer"
                conn.close()
            else:
                held.append(conn)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown(socket.SHUT_RDWR)
        server.close()
        for conn in held:
            conn.close()


@pytest.mark.parametrize(
    ("close", "status", "said"),
    [
        (True, Exit.UNAVAILABLE, "automd closed the connection without answering: it failed"),
        (False, Exit.TEMPFAIL, "no answer within 0.3s: automd is busy or cannot start"),
    ],
)
def test_a_daemon_that_cannot_start_points_at_its_unit_and_journal(
    socket_path: Path, capsys: pytest.CaptureFixture[str], close: bool, status: Exit, said: str
) -> None:
    with silent_socket(socket_path, close=close):
        assert main(["--timeout", "0.3", "version"]) == status
    err = capsys.readouterr().err
    assert said in err
    assert "systemctl status automd and journalctl -u automd say why" in err
    assert len(err.splitlines()) == 1


# --- issue 16.13: what users of systemctl and pueue reach for ---------------------------------


def test_help_verb_is_the_verbs_help_with_examples(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    direct = capsys.readouterr().out
    assert main(["help", "run"]) == Exit.OK
    assert capsys.readouterr().out == direct
    assert "examples:\n  automctl run hello name=Ada --wait\n" in direct
    assert main(["help", "nope"]) == Exit.USAGE


def test_every_verb_has_examples_in_its_help() -> None:
    for names, sub in parser_commands(build_parser())[1:]:
        if not names[0].startswith("_"):
            assert "examples:\n  " in sub.format_help(), names


def test_audit_takes_a_user_name(socket_path: Path) -> None:
    methods: dict[str, Method] = {"audit.list": lambda p: {"entries": []}}
    with fake_automd(socket_path, methods) as calls:
        assert main(["audit", "--uid", "root"]) == Exit.OK
    assert calls[0][1]["uid"] == 0
    assert main(["audit", "--uid", "no-such-user-here"]) == Exit.USAGE


ENTRIES: list[dict[str, Any]] = [
    {"at": "2026-11-22T10:00:01.250000Z", "attempt": 1, "message": "a", "priority": 6},
    {"at": "2026-11-22T10:00:02.250000Z", "attempt": 1, "message": "b", "priority": 6},
    {"at": "2026-11-22T10:00:09.250000Z", "attempt": 2, "message": "c", "priority": 6},
]


@pytest.mark.parametrize("output", ["cat", "short", "json", None])
def test_logs_output_formats_and_attempt_markers(
    socket_path: Path, capsys: pytest.CaptureFixture[str], output: str | None
) -> None:
    logs = {"entries": ENTRIES, "cursor": "c", "more": False, "finished": True}
    with fake_automd(socket_path, {"job.logs": lambda p: logs}):
        assert main(["logs", JOB, *(["-o", output] if output else [])]) == Exit.OK
    lines = capsys.readouterr().out.splitlines()
    if output == "json":
        assert [json.loads(line)["message"] for line in lines] == ["a", "b", "c"]
        return
    if output == "short":
        stamp = datetime.fromisoformat(ENTRIES[0]["at"]).astimezone().strftime("%b %d %H:%M:%S")
        assert lines[0] == f"{stamp} a"
        lines = [line if line.startswith("--") else line.split(" ", 3)[3] for line in lines]
    assert lines == ["a", "b", "-- attempt 2 --", "c"]  # cat is the default


def test_wait_timeout_names_the_jobs_still_running(
    socket_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    running = {"job": job_view(state="running"), "attempts": [], "events": []}
    with fake_automd(socket_path, {"job.get": lambda p: running}):
        assert main(["wait", JOB, "--timeout", "0.3"]) == Exit.TEMPFAIL
    err = capsys.readouterr().err
    assert err == f"automctl: still running after 0.3s: {JOB} (running)\n"


def test_retry_wait_exits_with_the_jobs_status(
    socket_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    methods: dict[str, Method] = {
        "job.retry": lambda p: {"job": job_view(state="queued")},
        "job.get": lambda p: {"job": finished(exit_code=3, attempts=2), "attempts": []},
    }
    with fake_automd(socket_path, methods):
        assert main(["retry", JOB, "--wait"]) == 3
    out, err = capsys.readouterr()
    assert out == f"Job {JOB} queued (attempt 2 next)\n"
    assert "Main process terminated with: exit status 3\n" in err


def test_list_watch_redraws_until_ctrl_c(
    socket_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    pauses: list[float] = []

    def pause(seconds: float) -> None:  # the third pause is the user's Ctrl-C
        pauses.append(seconds)
        if len(pauses) % 3 == 0:
            raise KeyboardInterrupt

    monkeypatch.setattr("automd.ctl.waiting.time.sleep", pause)
    listed = {"jobs": [job_view()], "next_cursor": None}
    with fake_automd(socket_path, {"job.list": lambda p: listed}) as calls:
        assert main(["list", "--watch", "5"]) == Exit.OK
    assert pauses == [5.0, 5.0, 5.0]
    assert len(calls) == 3
    out = capsys.readouterr().out
    assert out.count("ID ") == 3  # not a terminal: each listing after the last, no escapes
    assert "\x1b" not in out
    socket_path.unlink()  # the fake's socket file outlives it
    with fake_automd(socket_path, {"job.list": lambda p: listed}):
        assert main(["list", "--watch", "5", "--json"]) == Exit.OK
    lines = capsys.readouterr().out.splitlines()
    assert [json.loads(line) for line in lines] == [listed] * 3  # one listing a line


def test_an_answer_of_an_unknown_shape_is_one_line_never_a_traceback(socket_path: Path) -> None:
    """docs/automctl.md promises "never a traceback": a reply without the fields automctl
    reads ended in a KeyError traceback. Checked: fails on the code before the fix."""
    methods: dict[str, Method] = {"job.list": lambda p: {"surprise": True}}
    with fake_automd(socket_path, methods), automctl(socket_path, "list") as proc:
        out = output_of(proc)
    assert proc.returncode == Exit.SOFTWARE
    lines = out.decode().splitlines()
    assert "Traceback" not in out.decode()
    assert lines[-1] == (
        "automctl: unexpected failure (KeyError: 'jobs'); automctl -v shows the exchange, "
        "please report it"
    )
    assert len(lines) == 1


def test_list_shows_owners_and_asks_for_one_user(
    socket_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 16.13: an administrator's listing names whose each job is; --user NAME asks
    automd for that user's jobs only (by uid). Checked: fails on the code before."""
    root_job = finished(job_id="1" * 26, caller_uid=0)
    other = finished(job_id="2" * 26, caller_uid=os.getuid() + 4242)
    methods: dict[str, Method] = {
        "job.list": lambda p: {"jobs": [root_job, other], "next_cursor": None}
    }
    with fake_automd(socket_path, methods) as calls:
        assert main(["list"]) == Exit.OK
        assert main(["list", "--user", "root"]) == Exit.OK
    lines = capsys.readouterr().out.splitlines()
    assert "OWNER" in lines[0]
    assert " root " in lines[1]
    assert f" {os.getuid() + 4242} " in lines[2]  # no such user here: the uid
    assert [c[1].get("caller_uid") for c in calls if c[0] == "job.list"] == [None, 0]
