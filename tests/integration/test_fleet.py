"""automctl -H over real ssh to three hosts (fleet.py): identity, exit statuses, every verb."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import time

from tests.integration.conftest import ADMIN_USER, OTHER_USER, TEST_USER, Gate
from tests.integration.fleet import HOSTS, Fleet

JOB_LINE = re.compile(r"Job ([0-9a-z]{26}) ")


def job_id(stdout: str) -> str:
    match = JOB_LINE.search(stdout)
    assert match, stdout
    return match[1]


def test_run_wait_on_each_host_names_the_ssh_user_in_the_audit_trail(fleet: Fleet) -> None:
    for name in HOSTS:
        started = time.monotonic()
        done = fleet.automctl("-H", f"{TEST_USER}@{name}", "run", "hello", "name=fleet", "--wait")
        took = time.monotonic() - started
        assert done.returncode == 0, done.stderr
        assert "Finished with result: success" in done.stderr
        job = job_id(done.stdout)
        host = fleet.hosts[name]
        entries = host.journal("AUTOMD_AUDIT=1", f"AUTOMD_JOB_ID={job}")
        submit = [e for e in entries if e["AUTOMD_METHOD"] == "job.submit"]
        assert len(submit) == 1, entries
        # The remote automd saw alice (SO_PEERCRED on the bridge's connection), not root.
        assert submit[0]["AUTOMD_CALLER_UID"] == str(host.user(TEST_USER).uid)
        assert submit[0]["AUTOMD_CALLER_COMM"].startswith("automd-stdio")
        # Ran on that host, and only there.
        output = host.journal(f"AUTOMD_JOB_ID={job}", "--output-fields=MESSAGE")
        assert any(e.get("MESSAGE") == "Hello, fleet!" for e in output)
        print(f"automctl -H {name} run hello --wait: {took:.2f} s")


def test_job_exit_status_passes_through(fleet: Fleet) -> None:
    done = fleet.automctl("-H", f"{TEST_USER}@host2", "run", "fail", "code=3", "--wait")
    assert done.returncode == 3, done.stderr
    assert "exit status 3" in done.stderr


def test_a_user_the_host_refuses_gets_exit_77(fleet: Fleet) -> None:
    # bob may log in everywhere but is in no group automd: the socket refuses the bridge.
    done = fleet.automctl("-H", f"{OTHER_USER}@host1", "run", "hello", "--wait")
    assert done.returncode == 77, (done.stdout, done.stderr)
    assert "permission denied" in done.stderr
    # alice loses access on host3 only; host1 still lets her in.
    fleet.hosts["host3"].run(["gpasswd", "-d", TEST_USER, "automd"])
    try:
        refused = fleet.automctl("-H", f"{TEST_USER}@host3", "list")
        assert refused.returncode == 77, (refused.stdout, refused.stderr)
        assert fleet.automctl("-H", f"{TEST_USER}@host1", "list").returncode == 0
    finally:
        fleet.hosts["host3"].run(["gpasswd", "-a", TEST_USER, "automd"])


def test_an_unreachable_host_gets_exit_68(fleet: Fleet) -> None:
    # A loopback port nobody listens on: ssh's connection is refused (ssh exits 255).
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    done = fleet.automctl("-H", f"{TEST_USER}@127.0.0.1:{port}", "version")
    assert done.returncode == 68, (done.stdout, done.stderr)
    assert "ssh failed" in done.stderr
    assert "Connection refused" in done.stderr
    # AUTOMD_HOST is -H's default; a destination that could be an ssh option is refused.
    env_host = fleet.automctl("version", AUTOMD_HOST=f"{TEST_USER}@127.0.0.1:{port}")
    assert env_host.returncode == 68
    assert fleet.automctl("-H", "-oProxyCommand=x", "version").returncode == 64


def test_a_host_with_another_key_is_refused_with_exit_68(fleet: Fleet) -> None:
    # known_hosts says host1 has host2's key: ssh refuses it, as against a spoofed host.
    known = (fleet.keys / "known_hosts").read_text().splitlines()
    host2_key = next(line for line in known if line.startswith("host2 ")).split(" ", 1)[1]
    wrong = fleet.keys / "wrong_known_hosts"
    wrong.write_text(f"host1 {host2_key}\n")
    ssh = f"{fleet.ssh} -o UserKnownHostsFile={wrong}"
    done = fleet.automctl("-H", f"{TEST_USER}@host1", "version", AUTOMD_SSH=ssh)
    assert done.returncode == 68, (done.stdout, done.stderr)
    assert "Host key verification failed" in done.stderr


def test_logs_follow_streams_while_the_job_runs(fleet: Fleet) -> None:
    host = f"{TEST_USER}@host1"
    gate = Gate(fleet.hosts["host1"])
    submitted = fleet.automctl("-H", host, "run", "gated", f"gate={gate.name}", "lines=2", "-q")
    assert submitted.returncode == 0, submitted.stderr
    job = submitted.stdout.strip()
    with fleet.popen("-H", host, "logs", "-f", job) as follower:
        try:
            assert follower.stdout is not None
            assert follower.stdout.readline() == b"line 1\n"  # streamed before the job ends
            gate.open(1)
            assert follower.stdout.readline() == b"line 2\n"
            gate.open(2)
            out = follower.stdout.read()  # to its end: automctl ends when the job does
            follower.wait(timeout=60)
        finally:
            gate.open_all()
            if follower.poll() is None:
                follower.kill()
    assert follower.returncode == 0
    assert out == b"to stderr\nbytes \xff\xfe end\n"  # the job's exact bytes, over ssh


def test_every_verb_works_remotely(fleet: Fleet) -> None:
    admin = f"{ADMIN_USER}@host2"  # a restricted key: only the bridge (docs/fleet.md)
    for verb in (["version"], ["health"], ["defs"], ["defs", "hello"], ["list"]):
        done = fleet.automctl("-H", admin, *verb)
        assert done.returncode == 0, (verb, done.stderr)
    ran = fleet.automctl("-H", admin, "--json", "run", "hello", "--wait")
    assert ran.returncode == 0, ran.stderr
    job = json.loads(ran.stdout)["job"]["id"]
    for verb in (["status", job], ["logs", job], ["wait", job, "--success"],
                 ["retry", job, "--wait"], ["run", "hello", "--follow"]):  # fmt: skip
        done = fleet.automctl("-H", admin, *verb)
        assert done.returncode == 0, (verb, done.stderr)
    gate = Gate(fleet.hosts["host2"])
    held = fleet.automctl("-H", admin, "run", "gated", f"gate={gate.name}", "-q")
    try:
        cancelled = fleet.automctl("-H", admin, "cancel", held.stdout.strip())
        assert cancelled.returncode == 0, cancelled.stderr
    finally:
        gate.open_all()
    audit = fleet.automctl("-H", admin, "--json", "audit", "--method", "job.cancel")
    assert audit.returncode == 0, audit.stderr
    assert held.stdout.strip() in audit.stdout
    # All the calls of one command go over one ssh session (sshd logs each session's login).
    since = time.time()
    traced = fleet.automctl("-H", admin, "-v", "run", "hello", "--wait")
    assert traced.stderr.count("automctl: -> ") >= 3  # definition.get, job.submit, job.get...
    logins = [e for e in fleet.hosts["host2"].journal("SYSLOG_IDENTIFIER=sshd", since=since - 1)
              if e["MESSAGE"].startswith(f"Accepted publickey for {ADMIN_USER}")
              and int(e["__REALTIME_TIMESTAMP"]) >= since * 1e6]  # fmt: skip
    assert len(logins) == 1, logins


def test_the_restricted_key_runs_only_the_bridge(fleet: Fleet) -> None:
    done = subprocess.run(
        ["ssh", "-F", str(fleet.ssh_config), f"{ADMIN_USER}@host1", "id"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    # The forced command ran instead of `id`: it reached automd and ended with its input.
    assert done.returncode == 0, done.stderr
    assert "uid=" not in done.stdout
