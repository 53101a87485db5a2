"""automctl's job verbs against the socket-activated daemon, as a member of group automd."""

from __future__ import annotations

import json
import re
import select
import subprocess
from collections.abc import Callable

from tests.integration.conftest import CHECKOUT, TEST_USER, WAIT_SECONDS, Gate, wait_for
from tests.integration.container import Container

AUTOMCTL = str(CHECKOUT / ".venv" / "bin" / "automctl")


def automctl(c: Container, *args: str, user: str | None = TEST_USER) -> tuple[int, str, str]:
    result = c.run([AUTOMCTL, *args], user=user, check=False, timeout=120)
    return result.returncode, result.stdout.decode(), result.stderr.decode()


def test_run_wait_prints_a_summary_and_exits_0(container: Container) -> None:
    code, out, err = automctl(container, "run", "hello", "name=Ada Lovelace", "--wait")
    assert code == 0, err
    job_id = re.fullmatch(r"Job (\w{26}) queued\n", out)
    assert job_id, out
    assert "Finished with result: success (succeeded)" in err
    assert f"(output: automctl logs {job_id.group(1)})" in err  # works without journal access
    logs = container.journal(f"AUTOMD_JOB_ID={job_id.group(1)}", "_TRANSPORT=stdout")
    assert [e["MESSAGE"] for e in logs] == ["Hello, Ada Lovelace!"]


def test_a_failing_jobs_exit_status_passes_through(container: Container) -> None:
    code, _out, err = automctl(container, "run", "fail", "code=7", "--wait")
    assert code == 7, err
    assert "Finished with result: exit-code (failed) after 2 attempts\n" in err  # fail retries
    assert "Main process terminated with: exit status 7\n" in err


def test_systemds_own_exit_status_is_named(container: Container) -> None:
    code, _out, err = automctl(container, "run", "missing", "--wait")
    assert code == 203, err
    assert "Main process terminated with: exit status 203/EXEC\n" in err


def test_run_json_and_status(container: Container) -> None:
    code, out, err = automctl(container, "run", "hello", "--wait", "--json")
    assert code == 0, err
    job = json.loads(out)["job"]
    assert job["state"] == "succeeded"
    code, out, _ = automctl(container, "status", job["id"])
    assert code == 0
    assert re.search(r"^State:\s+succeeded$", out, re.M)
    assert re.search(r"^Result:\s+success, exit status 0$", out, re.M)
    assert "  attempt 1: finished, success" in out
    code, out, _ = automctl(container, "show", job["id"], "--json")
    assert json.loads(out)["job"]["id"] == job["id"]


def test_cancel_a_running_job(container: Container) -> None:
    code, out, _ = automctl(container, "run", "long", "steps=60", "-q")
    job_id = out.strip()
    code, out, _ = automctl(container, "cancel", job_id)
    assert code == 0
    assert out.strip() in (f"Job {job_id}: stopping", f"Job {job_id}: cancelled")
    # Issue 16.4: once ended it reads as a cancel, never as systemd's "success".
    code, out, err = automctl(container, "wait", job_id, "--success")
    assert code == 255, err  # a signal ended it, as systemd-run --wait says
    assert out == f"Job {job_id}: cancelled (stopped with SIGTERM)\n"
    code, out, _ = automctl(container, "status", job_id)
    assert "Result:      cancelled (stopped with SIGTERM), signal 15" in out


def test_error_exit_statuses(container: Container) -> None:
    code, _out, err = automctl(container, "run", "nope")
    assert (code, err) == (66, 'automctl: no definition "nope"; automctl defs lists them\n')
    code, _out, err = automctl(container, "run", "fail", "code=999")
    assert code == 64
    assert "code: must be between 0 and 255" in err
    code, _out, err = automctl(container, "run", "fail", "code=abc")
    assert (code, err.strip()) == (64, "automctl: code: 'abc' is not an integer")
    code, _out, err = automctl(container, "status", "0" * 26)
    assert (code, "no job 00000000000000000000000000" in err) == (66, True)


def test_audit_for_root_and_not_for_a_member(container: Container) -> None:
    _code, out, _err = automctl(container, "run", "hello", "-q")
    job_id = out.strip()
    code, out, err = automctl(container, "audit", "-n", "5", user=None)
    assert code == 0, err
    header, newest, *_ = out.splitlines()
    assert header.split() == ["TIME", "UID", "PROCESS", "METHOD", "OUTCOME", "JOB", "/", "DETAIL"]
    alice_uid = container.run(["id", "-u", TEST_USER]).stdout.decode().strip()
    assert newest.split()[2:] == [alice_uid, "automctl", "job.submit", "ok", job_id]
    # A user name is resolved to the uid the audit trail records.
    code, out, err = automctl(container, "audit", "--uid", TEST_USER, "-n", "1", user=None)
    assert code == 0, err
    assert out.splitlines()[1].split()[2] == alice_uid
    code, _out, err = automctl(container, "audit")
    assert code == 77
    assert err.startswith("automctl: permission denied")


def test_list_defs_retry_and_wait(container: Container) -> None:
    _code, out, _err = automctl(container, "run", "fail", "code=4", "-q")
    job_id = out.strip()
    code, out, _err = automctl(container, "wait", job_id, "--success")
    assert code == 4  # the failed job's own status, like run --wait
    assert out.strip() == f"Job {job_id}: failed"
    # Issue 16.13: logs -o short puts the time first; a line marks the second attempt.
    container.sync_journal()
    code, out, err = automctl(container, "logs", job_id, "-o", "short")
    assert code == 0, err
    stamp = r"[A-Z][a-z]{2} \d\d \d\d:\d\d:\d\d"
    assert re.fullmatch(
        rf"{stamp} failing with status 4\n-- attempt 2 --\n{stamp} failing with status 4\n", out
    ), out
    assert automctl(container, "logs", job_id)[1] == (
        "failing with status 4\n-- attempt 2 --\nfailing with status 4\n"
    )

    code, out, _err = automctl(container, "list", "--definition", "fail", "-n", "5")
    assert code == 0
    header, *rows = out.splitlines()
    assert header.split() == ["ID", "DEFINITION", "STATE", "CREATED", "RESULT"]
    row = next(r for r in rows if r.startswith(job_id))
    assert row.split()[1:3] == ["fail", "failed"]
    assert "ago" in row
    assert row.rstrip().endswith("exit-code (4)")
    listed = json.loads(automctl(container, "list", "--json", "--state", "failed")[1])
    assert job_id in {job["id"] for job in listed["jobs"]}

    code, out, _err = automctl(container, "retry", job_id)
    assert (code, out.strip()) == (0, f"Job {job_id} queued (attempt 3 next)")
    code, _out, err = automctl(container, "retry", "0" * 26)
    assert (code, "no job 00000000000000000000000000" in err) == (66, True)

    code, out, _err = automctl(container, "defs")
    assert code == 0
    assert re.search(r"^hello\s+\d+\s+name\s+Print a greeting$", out, re.M), out  # REV: 0.8.0
    code, out, _err = automctl(container, "defs", "backup")
    # Issue 16.8: type, required or optional (never null), default, constraints, sandbox.
    assert re.search(
        r"^source\s+path\s+required\s+-\s+under /srv, "
        r"0\.\.4096 chars\s+Directory to archive$", out, re.M,
    ), out  # fmt: skip
    assert re.search(r"^verbose\s+boolean\s+optional\s+false\s+-$", out, re.M), out
    assert re.search(r"^Sandbox: profile \w+", out, re.M), out
    assert "null" not in out
    assert json.loads(automctl(container, "defs", "hello", "--json")[1])["name"] == "hello"


def _line_while_running(proc: subprocess.Popen[bytes]) -> bytes:
    """The next line of proc's stdout, which must come while the gated job still waits."""
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], WAIT_SECONDS)
    assert ready, "no line while the job runs"
    return proc.stdout.readline()


def _state(c: Container, job_id: str) -> str:
    out = automctl(c, "status", job_id, "--json")[1]
    return str(json.loads(out)["job"]["state"])


def _run_gated(c: Container, gate: Gate, script: str) -> subprocess.Popen[bytes]:
    """`automctl run gated --wait` as TEST_USER, inside a sh `script` ({} is the command)."""
    command = f"{AUTOMCTL} run gated gate={gate.name} --wait"
    return c.popen(["sh", "-c", script.format(command)], user=TEST_USER)


def _queued(proc: subprocess.Popen[bytes]) -> str:
    line = _line_while_running(proc).decode()
    queued = re.fullmatch(r"Job (\w{26}) queued\n", line)
    assert queued, line
    return queued.group(1)


def test_under_a_pipe_the_job_id_comes_while_the_job_runs(
    container: Container, new_gate: Callable[[], Gate]
) -> None:
    # `automctl run ... --wait 2>&1 | cat` in a CI log: stdout is a pipe, stderr on it too.
    gate = new_gate()
    with _run_gated(container, gate, "exec {} 2>&1 | cat") as proc:
        job_id = _queued(proc)
        assert _state(container, job_id) not in ("succeeded", "failed")
        gate.open_all()
        rest, _ = proc.communicate(timeout=WAIT_SECONDS)
    assert rest.decode().startswith("Finished with result: success (succeeded)")


def test_ctrl_c_while_waiting_leaves_the_job_running_and_says_so(
    container: Container, new_gate: Callable[[], Gate]
) -> None:
    # The shell prints its pid (the container's view), then becomes automctl.
    with _run_gated(container, new_gate(), "echo $$; exec {}") as proc:
        pid = _line_while_running(proc).decode().strip()
        job_id = _queued(proc)
        wait_for("the job runs", lambda: _state(container, job_id), lambda s: s == "running")
        container.run(["kill", "-INT", pid])
        _out, err = proc.communicate(timeout=WAIT_SECONDS)
    assert proc.returncode == 130
    assert err.decode() == (
        f"automctl: job {job_id} is still running; automctl cancel {job_id} stops it\n"
    )
    assert _state(container, job_id) == "running"
    code, out, _ = automctl(container, "cancel", job_id)
    assert (code, out) == (0, f"Job {job_id}: stopping\n")


def test_run_follow_json_is_ndjson_to_the_end(container: Container) -> None:
    code, out, err = automctl(container, "run", "hello", "name=nd", "--follow", "--json")
    assert code == 0, err
    *entries, summary = [json.loads(line) for line in out.splitlines()]
    assert [e["message"] for e in entries] == ["Hello, nd!"]
    assert summary["job"]["state"] == "succeeded"


def test_a_finished_jobs_status_says_its_unit_is_gone(container: Container) -> None:
    job_id = automctl(container, "run", "hello", "--wait", "-q")[1].strip()
    out = automctl(container, "status", job_id)[1]
    assert re.search(r"^Unit:\s+\S+\.service \(gone", out, re.M), out
    assert re.search(rf"^Logs:\s+automctl logs {job_id}$", out, re.M), out
