"""The automd.automd collection with ansible-playbook over real ssh to three hosts (fleet.py).

Runs the shipped example playbook (ansible/examples/backup.yml: serial 2, max_fail_percentage
0) as Debian 12's ansible-core runs it, each host's results read from a JSON callback of the
tests' own (ansible_plugins/results_json.py): jobs on each host, a re-run with the same run id
that creates none, a failing host that stops the play after its batch, and check mode that
creates nothing.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import CHECKOUT, TEST_USER, Gate
from tests.integration.fleet import HOSTS, Fleet

# Each test runs ansible-playbook once or twice over three hosts: 5-15 s a run here, more on a
# loaded machine; pytest's default 120 s per test is too tight for two runs under load.
pytestmark = pytest.mark.timeout(600)

PLAYBOOK = CHECKOUT / "ansible" / "examples" / "backup.yml"
COLLECTIONS = CHECKOUT / "ansible"


@pytest.fixture(scope="module")
def inventory(fleet: Fleet, tmp_path_factory: pytest.TempPathFactory) -> Path:
    for host in fleet.hosts.values():  # what backup.yml archives
        host.run(["install", "-d", "-m", "0755", "/srv/www"])
        host.write_file("/srv/www/index.html", "<h1>fleet</h1>\n")
    path = tmp_path_factory.mktemp("ansible") / "inventory"
    path.write_text(
        "\n".join([
            "[fleet]",
            *HOSTS,
            "[fleet:vars]",
            f"ansible_user={TEST_USER}",
            # The same ssh as automctl -H: ProxyCommand into each host, strict host keys.
            f"ansible_ssh_common_args=-F {fleet.ssh_config}",
            "ansible_python_interpreter=/usr/bin/python3",
            "",
        ])
    )  # fmt: skip
    return path


def playbook(fleet: Fleet, inventory: Path, *args: str, **extra: Any) -> tuple[int, dict[str, Any]]:
    """ansible-playbook backup.yml; its exit status and the JSON callback's report."""
    work = inventory.parent
    env = fleet.env(
        ANSIBLE_COLLECTIONS_PATH=str(COLLECTIONS),
        ANSIBLE_CALLBACK_PLUGINS=str(Path(__file__).parent / "ansible_plugins"),
        ANSIBLE_STDOUT_CALLBACK="results_json",
        ANSIBLE_LOCAL_TEMP=str(work / "tmp"),
        ANSIBLE_HOME=str(work / "home"),
        # One ssh per task, none kept running after the play (no ControlPersist master).
        ANSIBLE_PIPELINING="true",
        ANSIBLE_SSH_ARGS="-o ControlMaster=no",
        ANSIBLE_NOCOLOR="1",
    )
    started = time.monotonic()
    argv = ["ansible-playbook", "-i", str(inventory), str(PLAYBOOK), "-e", json.dumps(extra), *args]
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=240, env=env, check=False
        )
    except subprocess.TimeoutExpired as stuck:  # say where it stuck (-vvv would say more)
        raise AssertionError(f"{argv} stuck:\n{stuck.stdout!r}\n{stuck.stderr!r}") from None
    print(f"ansible-playbook {' '.join(args)} {extra}: {time.monotonic() - started:.1f} s")
    try:
        report = json.loads(done.stdout)
    except ValueError:
        raise AssertionError(f"no JSON report:\n{done.stdout}\n{done.stderr}") from None
    return done.returncode, report


def task_results(report: dict[str, Any], task: str) -> dict[str, dict[str, Any]]:
    return {
        entry["host"]: {**entry["result"], "_status": entry["status"]}
        for entry in report["results"]
        if entry["task"] == task
    }


def job_results(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each host's result of the automd.automd.job task, over all batches (serial plays), with
    the callback's word for it (ok, failed, ...) as `_status`."""
    return task_results(report, "Run the job and wait for it")


def jobs_on(fleet: Fleet, host: str, definition: str) -> list[dict[str, Any]]:
    done = fleet.automctl(
        "-H", f"{TEST_USER}@{host}", "--json", "list", "--definition", definition, "-n", "500"
    )
    assert done.returncode == 0, done.stderr
    jobs: list[dict[str, Any]] = json.loads(done.stdout)["jobs"]
    return jobs


def test_a_job_on_each_host_then_a_rerun_creates_none(fleet: Fleet, inventory: Path) -> None:
    run_id = secrets.token_hex(6)
    status, report = playbook(fleet, inventory, run_id=run_id)
    assert status == 0, json.dumps(report)[-3000:]
    first = job_results(report)
    assert sorted(first) == sorted(HOSTS)
    for name, result in first.items():
        assert result["_status"] == "ok"
        assert result["changed"] is True
        assert result["state"] == "succeeded"
        assert result["exit_code"] == 0
        assert result["attempts"] == 1
        assert result["idempotent_replay"] is False
        assert result["unit"].startswith(f"automd-backup-{result['job_id']}-")
        assert result["idempotency_key"] == f"ansible:{run_id}:backup"
        # The job ran on that host, as alice (automd saw the ssh user).
        assert result["job"]["caller_uid"] == fleet.hosts[name].user(TEST_USER).uid
        fleet.hosts[name].run(["tar", "-tzf", "/var/lib/automd-backups/backup.tar.gz"])
    # job_info read each job back.
    for name, info in task_results(report, "Read the job back").items():
        assert info["job"]["id"] == first[name]["job_id"]
        assert info["job"]["state"] == "succeeded"
    counts = {name: len(jobs_on(fleet, name, "backup")) for name in HOSTS}

    status, report = playbook(fleet, inventory, run_id=run_id)
    assert status == 0, json.dumps(report)[-3000:]
    again = job_results(report)
    for name, result in again.items():
        assert result["changed"] is False
        assert result["idempotent_replay"] is True
        assert result["job_id"] == first[name]["job_id"]
    assert report["stats"][HOSTS[0]]["changed"] == 0
    assert {name: len(jobs_on(fleet, name, "backup")) for name in HOSTS} == counts


def test_a_failing_host_stops_the_play_after_its_batch(fleet: Fleet, inventory: Path) -> None:
    run_id = secrets.token_hex(6)
    before = {name: len(jobs_on(fleet, name, "fail")) for name in HOSTS}
    # host2 (in the first batch of two) fails with status 3; host3 would succeed.
    params = {"code": "{{ 3 if inventory_hostname == 'host2' else 0 }}"}
    status, report = playbook(
        fleet, inventory, run_id=run_id, automd_definition="fail", automd_params=params
    )
    assert status == 2, json.dumps(report)[-3000:]  # ansible-playbook: a host failed
    results = job_results(report)
    assert sorted(results) == ["host1", "host2"]  # the second batch never ran
    assert results["host2"]["_status"] == "failed"
    assert results["host1"]["_status"] == "ok"
    assert results["host2"]["state"] == "failed"
    assert results["host2"]["exit_code"] == 3
    assert results["host2"]["log"][-1] == "failing with status 3"
    assert results["host1"]["state"] == "succeeded"
    after = {name: len(jobs_on(fleet, name, "fail")) for name in HOSTS}
    assert after == {"host1": before["host1"] + 1, "host2": before["host2"] + 1,
                     "host3": before["host3"]}  # fmt: skip


def test_check_mode_validates_and_creates_no_job(fleet: Fleet, inventory: Path) -> None:
    before = {name: len(jobs_on(fleet, name, "hello")) for name in HOSTS}
    status, report = playbook(
        fleet, inventory, "--check", run_id=secrets.token_hex(6), automd_definition="hello",
        automd_params={"name": "checked"},
    )  # fmt: skip
    assert status == 0, json.dumps(report)[-3000:]
    for result in job_results(report).values():
        assert result["changed"] is True  # would submit
        assert "job_id" not in result
    # A parameter the host's definition refuses fails in check mode too, and submits nothing.
    status, report = playbook(
        fleet, inventory, "--check", run_id=secrets.token_hex(6), automd_definition="hello",
        automd_params={"name": "no/slashes"},
    )  # fmt: skip
    assert status == 2
    failed = job_results(report)["host1"]
    assert "name: must match" in failed["msg"]
    assert {name: len(jobs_on(fleet, name, "hello")) for name in HOSTS} == before


def test_a_job_past_its_timeout_fails_the_task_and_is_cancelled(
    fleet: Fleet, inventory: Path
) -> None:
    gate = Gate(fleet.hosts["host1"])  # never opened before the timeout: the job waits
    try:
        status, report = playbook(
            fleet, inventory, run_id=secrets.token_hex(6), automd_hosts="host1",
            automd_definition="gated", automd_params={"gate": gate.name}, automd_timeout=2,
            automd_cancel_on_timeout=True,
        )  # fmt: skip
    finally:
        gate.open_all()
    assert status == 2, json.dumps(report)[-3000:]
    result = job_results(report)["host1"]
    assert result["_status"] == "failed"
    assert "after 2 s; cancelled" in result["msg"]
    job = result["job_id"]
    done = fleet.automctl("-H", f"{TEST_USER}@host1", "wait", job, "--timeout", "60")
    assert done.returncode == 0, done.stderr
    shown = fleet.automctl("-H", f"{TEST_USER}@host1", "--json", "status", job)
    assert json.loads(shown.stdout)["job"]["state"] == "cancelled"
