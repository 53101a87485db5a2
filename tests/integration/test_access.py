"""Access control end to end: real users, real polkitd, the socket-activated daemon."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.integration.conftest import ADMIN_USER, CHECKOUT, TEST_USER, wait_for
from tests.integration.container import Container

PYTHON = str(CHECKOUT / ".venv" / "bin" / "python")
# Prints the client's own pid with the reply, so audit entries can be checked against it.
CLIENT = """
import json, os, sys
from automd.ctl.client import RemoteError, RpcClient
client = RpcClient("/run/automd.sock")
try:
    reply = {"result": client.call(sys.argv[1], json.loads(sys.argv[2]))}
except RemoteError as error:
    reply = {"error": error.to_json()}
print(json.dumps({"pid": os.getpid(), **reply}))
"""
ALICE_RULE = "/etc/polkit-1/rules.d/40-automd-alice.rules"


def call(c: Container, user: str | None, method: str, /, **params: Any) -> dict[str, Any]:
    out = c.run([PYTHON, "-c", CLIENT, method, json.dumps(params)], user=user,
                env={"PYTHONPATH": str(CHECKOUT)}, timeout=60).stdout  # fmt: skip
    reply: dict[str, Any] = json.loads(out)
    return reply


def uid_of(c: Container, user: str) -> int:
    return int(c.run(["id", "-u", user]).stdout)


def audit(c: Container, **filters: Any) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = call(c, None, "audit.list", **filters)["result"]["entries"]
    return entries


def test_a_member_runs_jobs_and_it_is_audited_with_the_kernels_pid(container: Container) -> None:
    reply = call(container, TEST_USER, "job.submit", definition="hello", params={"name": "audit"})
    job_id = reply["result"]["job"]["id"]
    entry = next(e for e in audit(container, method="job.submit") if e["job_id"] == job_id)
    assert (entry["uid"], entry["pid"], entry["outcome"]) == (
        uid_of(container, TEST_USER), reply["pid"], "ok",
    )  # fmt: skip
    assert entry["process"] == "python"
    assert (entry["definition"], entry["params"]) == ("hello", {"name": "audit"})
    # The audit entry is sent before the reply: after a journal sync it is there.
    fields = container.journal("AUTOMD_AUDIT=1", f"AUTOMD_JOB_ID={job_id}")[-1]
    assert fields["AUTOMD_CALLER_PID"] == str(reply["pid"])
    assert fields["AUTOMD_CALLER_UID"] == str(uid_of(container, TEST_USER))
    assert fields["AUTOMD_METHOD"] == "job.submit"


def test_a_member_may_not_administer_and_the_denial_is_audited(container: Container) -> None:
    reply = call(container, TEST_USER, "audit.list")
    assert reply["error"]["code"] == 1007
    assert reply["error"]["data"]["action"] == "org.automd.admin"
    denied = audit(container, outcome="denied", uid=uid_of(container, TEST_USER))
    assert any(e["method"] == "audit.list" and e["pid"] == reply["pid"] for e in denied)
    assert call(container, TEST_USER, "system.reload")["error"]["code"] == 1007


def test_other_users_jobs_do_not_leak(container: Container) -> None:
    carols = call(container, ADMIN_USER, "job.submit", definition="hello")["result"]["job"]
    alices = call(container, TEST_USER, "job.submit", definition="hello")["result"]["job"]
    # alice: carol's job does not exist for her, and her list holds only her own jobs.
    assert call(container, TEST_USER, "job.get", id=carols["id"])["error"]["code"] == 1002
    assert call(container, TEST_USER, "job.cancel", id=carols["id"])["error"]["code"] == 1002
    listed = call(container, TEST_USER, "job.list", limit=500)["result"]["jobs"]
    ids = {job["id"] for job in listed}
    assert alices["id"] in ids
    assert carols["id"] not in ids
    # carol administers: she sees everyone's jobs.
    assert call(container, ADMIN_USER, "job.get", id=alices["id"])["result"]["job"]["id"]
    everyone = {
        j["id"] for j in call(container, ADMIN_USER, "job.list", limit=500)["result"]["jobs"]
    }
    assert {alices["id"], carols["id"]} <= everyone


def test_a_definitions_allow_list_applies(container: Container) -> None:
    reply = call(container, TEST_USER, "job.submit", definition="onlycarol")
    assert reply["error"]["code"] == 1007
    assert "allowed users or groups" in reply["error"]["data"]["reason"]
    assert "result" in call(container, ADMIN_USER, "job.submit", definition="onlycarol")


@pytest.fixture
def alice_rule(container: Container) -> Any:
    # The per-job rule from docs/polkit.md, for alice: only hello, and only for name=world.
    container.write_file(ALICE_RULE, """
polkit.addRule(function(action, subject) {
    if (action.id == "org.automd.run" && subject.user == "alice") {
        if (action.lookup("definition") == "hello" && action.lookup("param.name") == "world")
            return polkit.Result.YES;
        return polkit.Result.NO;
    }
});
""")  # fmt: skip
    container.restart_units("polkit.service")
    yield
    container.run(["rm", "-f", ALICE_RULE])
    container.restart_units("polkit.service")


def test_a_per_job_polkit_rule_decides_by_definition_and_params(
    container: Container, alice_rule: None
) -> None:
    allowed = call(container, TEST_USER, "job.submit", definition="hello", params={"name": "world"})
    assert "result" in allowed
    wrong_param = call(container, TEST_USER, "job.submit", definition="hello", params={"name": "x"})
    assert wrong_param["error"]["code"] == 1007
    other_job = call(container, TEST_USER, "job.submit", definition="long")
    assert other_job["error"]["data"]["reason"] == "polkit denied org.automd.run"
    # The rule is about running: alice may still read.
    assert "result" in call(container, TEST_USER, "definition.list")


def test_without_polkit_the_group_defaults_apply_and_it_is_logged(container: Container) -> None:
    container.run(["systemctl", "mask", "--runtime", "polkit.service"])
    container.stop_units("polkit.service")
    try:
        assert "result" in call(container, TEST_USER, "job.submit", definition="hello")
        assert call(container, TEST_USER, "audit.list")["error"]["code"] == 1007
        assert "result" in call(container, ADMIN_USER, "audit.list")  # automd-admin
        log = container.run(["journalctl", "--no-pager", "-o", "cat", "-u", "automd.service"])
        assert b"polkit unreachable" in log.stdout
    finally:
        container.run(["systemctl", "unmask", "--runtime", "polkit.service"])
        container.restart_units("polkit.service")


def test_root_may_do_everything(container: Container) -> None:
    assert "result" in call(container, None, "audit.list")
    assert "result" in call(container, None, "job.submit", definition="onlycarol")


def journal_audit(c: Container, pid: int) -> list[dict[str, str]]:
    # Sent before the reply to the call: after a journal sync, all there.
    return c.journal("AUTOMD_AUDIT=1", f"AUTOMD_CALLER_PID={pid}")


def wait_for_state(c: Container, job_id: str, state: str) -> None:
    wait_for(
        f"job {job_id} {state}",
        lambda: call(c, None, "job.get", id=job_id)["result"]["job"]["state"],
        lambda current: current == state,
    )


def test_every_mutating_call_and_denial_is_in_audit_list_and_the_journal(
    container: Container,
) -> None:
    alice, carol = uid_of(container, TEST_USER), uid_of(container, ADMIN_USER)
    submitted = call(container, TEST_USER, "job.submit", definition="long", params={"steps": 60},
                     idempotency_key="audit-all")  # fmt: skip
    job_id = submitted["result"]["job"]["id"]
    calls = [  # (reply, uid, method, outcome)
        (submitted, alice, "job.submit", "ok"),
        (call(container, TEST_USER, "job.cancel", id=job_id), alice, "job.cancel", "ok"),
    ]
    wait_for_state(container, job_id, "cancelled")  # before retrying it
    calls += [
        (call(container, TEST_USER, "job.retry", id=job_id), alice, "job.retry", "ok"),
        (call(container, TEST_USER, "job.cancel", id=job_id), alice, "job.cancel", "ok"),
        (call(container, ADMIN_USER, "system.reload"), carol, "system.reload", "ok"),
        (call(container, TEST_USER, "system.reload"), alice, "system.reload", "denied"),
        (call(container, TEST_USER, "job.cancel", id="0" * 26), alice, "job.cancel", "error"),
    ]
    trail = audit(container, limit=200)
    for reply, uid, method, outcome in calls:
        pid = reply["pid"]
        entries = [e for e in trail if e["pid"] == pid]
        assert [(e["uid"], e["method"], e["outcome"]) for e in entries] == [(uid, method, outcome)]
        logged = journal_audit(container, pid)
        assert [
            (f["AUTOMD_CALLER_UID"], f["AUTOMD_METHOD"], f["AUTOMD_OUTCOME"]) for f in logged
        ] == [(str(uid), method, outcome)], (method, outcome)
    submit_entry = next(e for e in trail if e["pid"] == submitted["pid"])
    assert (submit_entry["idempotency_key"], submit_entry["job_id"]) == ("audit-all", job_id)
    assert submit_entry["params"] == {"steps": 60}


@pytest.fixture
def quiet_automd(container: Container) -> Any:
    """automd logging errors only."""
    container.write_file("/etc/automd/automd.toml", '[log]\nlevel = "error"\n')
    container.restart_units("automd.service")
    yield container
    container.run(["rm", "-f", "/etc/automd/automd.toml"])
    container.restart_units("automd.service")


def test_audit_entries_reach_the_journal_whatever_the_log_level(quiet_automd: Container) -> None:
    c = quiet_automd
    submitted = call(c, TEST_USER, "job.submit", definition="hello", params={"name": "quiet"})
    denied = call(c, TEST_USER, "system.reload")
    assert denied["error"]["code"] == 1007
    for reply, method, outcome in [(submitted, "job.submit", "ok"),
                                   (denied, "system.reload", "denied")]:  # fmt: skip
        logged = journal_audit(c, reply["pid"])
        assert [(f["AUTOMD_METHOD"], f["AUTOMD_OUTCOME"], f["PRIORITY"]) for f in logged] == [
            (method, outcome, "6" if outcome == "ok" else "4")
        ]
        assert logged[0]["SYSLOG_IDENTIFIER"] == "automd"
        assert logged[0]["MESSAGE"].startswith(f"audit: uid {uid_of(c, TEST_USER)} ")
    # The diagnostics are filtered: the job's own start line (info) is not in the journal.
    job_id = submitted["result"]["job"]["id"]
    wait_for_state(c, job_id, "succeeded")
    # automd logs a job's end just after recording it, so a client may see the state first;
    # another submit (a later write in the store's one queue) is answered only after that
    # line would have been logged.
    assert "result" in call(c, TEST_USER, "job.submit", definition="hello")
    entries = c.journal("_SYSTEMD_UNIT=automd.service", f"AUTOMD_JOB_ID={job_id}")
    assert [e.get("AUTOMD_AUDIT") for e in entries] == ["1"]
