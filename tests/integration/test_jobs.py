"""Jobs end to end: the socket-activated daemon runs definitions as real transient units."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from tests.daemon.harness import Connection
from tests.integration.conftest import Gate, wait_for, wait_for_async
from tests.integration.container import Container

NOT_UTF8 = b"bytes \xff\xfe end"  # what jobs.d/chatty.toml and gated.toml print last
# A gated job's output after its one line, as the journal has it (not UTF-8: as replaced).
GATED_TAIL = ["to stderr", NOT_UTF8.decode(errors="replace")]


class Api:
    """JSON-RPC to the container's automd, from the host through /proc/<pid1>/root (as root)."""

    def __init__(self, container: Container) -> None:
        self.container = container
        self.socket = container.root / "run/automd.sock"

    async def reply(self, method: str, **params: Any) -> dict[str, Any]:
        conn = await Connection.open(self.socket)
        try:
            reply: dict[str, Any] = await conn.call(method, params)
        finally:
            await conn.close()
        return reply

    async def call(self, method: str, **params: Any) -> Any:
        reply = await self.reply(method, **params)
        assert "result" in reply, reply
        return reply["result"]

    async def error(self, method: str, **params: Any) -> dict[str, Any]:
        reply = await self.reply(method, **params)
        assert "error" in reply, reply
        error: dict[str, Any] = reply["error"]
        return error

    async def submit(self, definition: str, **params: Any) -> dict[str, Any]:
        result = await self.call("job.submit", definition=definition, params=params)
        job: dict[str, Any] = result["job"]
        return job

    async def wait(self, job_id: str, *states: str) -> dict[str, Any]:
        """Poll job.get (what CI callers do) until the job is in one of `states`."""

        async def current() -> dict[str, Any]:
            job: dict[str, Any] = (await self.call("job.get", id=job_id))["job"]
            return job

        return await wait_for_async(
            f"job {job_id} in {states}", current, lambda job: job["state"] in states
        )

    def output(self, job_id: str) -> list[str]:
        """The job's own stdout and stderr lines, not automd's lines about it (bytes that are
        not UTF-8 replaced). All of it once the job has ended: Container.journal syncs."""
        entries = self.container.journal(f"AUTOMD_JOB_ID={job_id}", "_TRANSPORT=stdout")
        return [m if isinstance(m := e["MESSAGE"], str) else bytes(m).decode(errors="replace")
                for e in entries]  # fmt: skip

    def show(self, unit: str, *props: str) -> dict[str, str]:
        return self.container.show(unit, *props)

    def wait_reconciled(self, pid: str) -> None:
        """Until automd's process `pid` has adopted the units still running: it says it is
        ready before that, and a unit ending meanwhile would be read back from the journal."""
        wait_for(
            f"automd (pid {pid}) reconciled",
            lambda: [e["MESSAGE"] for e in self.container.journal(f"_PID={pid}")],
            lambda lines: any(line.startswith("reconciled: ") for line in lines),
        )


@pytest.fixture
def api(container: Container) -> Api:
    return Api(container)


async def test_a_job_runs_as_a_configured_transient_unit(
    api: Api, new_gate: Callable[[], Gate]
) -> None:
    gate = new_gate()  # the unit runs until the test has read its properties
    job = await api.submit("gated", gate=gate.name)
    running = await api.wait(job["id"], "running")
    unit = running["unit"]
    assert unit == f"automd-gated-{job['id']}-1.service"
    props = api.show(
        unit, "ExecStart", "MemoryMax", "CPUQuotaPerSecUSec", "TasksMax", "RuntimeMaxUSec",
        "Slice", "LogExtraFields", "DynamicUser", "NoNewPrivileges", "ProtectSystem",
        "ProtectHome", "PrivateTmp", "PrivateDevices", "Type", "Environment", "ReadWritePaths",
    )  # fmt: skip
    assert props["ReadWritePaths"] == "/var/tmp"
    assert "argv[]=/bin/sh -c " in props["ExecStart"]
    assert f"gated {gate.name} 1 ;" in props["ExecStart"]
    assert props["MemoryMax"] == str(64 * 1024 * 1024)
    assert props["CPUQuotaPerSecUSec"] == "500ms"
    assert props["TasksMax"] == "16"
    assert props["RuntimeMaxUSec"] == "5min"
    assert props["Slice"] == "automd-jobs.slice"
    assert props["Type"] == "exec"
    assert f"AUTOMD_JOB_ID={job['id']}" in props["LogExtraFields"]
    assert "AUTOMD_DEFINITION=gated" in props["LogExtraFields"]
    assert f"AUTOMD_JOB_ID={job['id']}" in props["Environment"]
    assert (props["DynamicUser"], props["NoNewPrivileges"]) == ("yes", "yes")
    assert (props["ProtectSystem"], props["ProtectHome"]) == ("strict", "tmpfs")
    assert (props["PrivateTmp"], props["PrivateDevices"]) == ("yes", "yes")
    # Under CPU contention the API outranks its jobs and its fellow services (docs/systemd.md,
    # "CPU priority"; enforced on a cgroup v2 host, only read back here).
    assert api.show("automd-jobs.slice", "CPUWeight")["CPUWeight"] == "50"
    assert api.show("automd.service", "CPUWeight")["CPUWeight"] == "400"

    gate.open()
    done = await api.wait(job["id"], "succeeded", "failed")
    assert (done["state"], done["exit_code"], done["result"]) == ("succeeded", 0, "success")
    assert api.output(job["id"]) == ["line 1", *GATED_TAIL]
    detail = await api.call("job.get", id=job["id"])
    assert [e["state"] for e in detail["events"]] == ["queued", "starting", "running", "succeeded"]
    assert detail["attempts"][0]["invocation_id"]


async def test_non_zero_exit_is_retried_then_fails(api: Api) -> None:
    job = await api.submit("fail", code=3)
    done = await api.wait(job["id"], "failed", "succeeded")
    assert (done["state"], done["exit_code"], done["result"]) == ("failed", 3, "exit-code")
    detail = await api.call("job.get", id=job["id"])
    assert [a["exit_code"] for a in detail["attempts"]] == [3, 3]  # max_attempts = 2
    assert "retrying in" in detail["attempts"][0]["retry_reason"]
    assert "waiting_retry" in [e["state"] for e in detail["events"]]


async def test_missing_binary(api: Api) -> None:
    job = await api.submit("missing")
    done = await api.wait(job["id"], "failed", "succeeded")
    assert (done["result"], done["exit_code"]) == ("exit-code", 203)  # systemd's EXIT_EXEC


async def test_runtime_limit_is_a_timeout(api: Api) -> None:
    job = await api.submit("slow")
    done = await api.wait(job["id"], "timed_out", "failed", "succeeded")
    assert (done["state"], done["result"]) == ("timed_out", "timeout")


async def test_kill_by_signal(api: Api) -> None:
    job = await api.submit("killself")
    done = await api.wait(job["id"], "failed", "succeeded")
    assert (done["state"], done["result"], done["signal"]) == ("failed", "signal", 9)


async def test_cancel_while_running_stops_the_unit(api: Api) -> None:
    job = await api.submit("hold", seconds=60)
    running = await api.wait(job["id"], "running")
    cancelled = (await api.call("job.cancel", id=job["id"]))["job"]
    assert cancelled["cancel_requested"] is True
    done = await api.wait(job["id"], "cancelled", "succeeded", "failed")
    assert (done["state"], done["signal"]) == ("cancelled", 15)
    assert done["outcome"] == "cancelled (stopped with SIGTERM)"
    listed = await api.call("job.list", state=["cancelled"], limit=500)
    assert {j["id"]: j["outcome"] for j in listed["jobs"]}[job["id"]] == done["outcome"]
    assert api.show(running["unit"], "ActiveState")["ActiveState"] in ("inactive", "failed")
    error = await api.error("job.cancel", id=job["id"])
    assert error["code"] == 1003


async def test_cancel_while_queued_never_starts_it(api: Api) -> None:
    first = await api.submit("limited", seconds=60)
    second = await api.submit("limited", seconds=60)
    third = await api.submit("limited", seconds=60)  # concurrency 2: stays queued
    await api.wait(first["id"], "running")
    await api.wait(second["id"], "running")
    assert (await api.call("job.get", id=third["id"]))["job"]["state"] == "queued"
    cancelled = (await api.call("job.cancel", id=third["id"]))["job"]
    assert (cancelled["state"], cancelled["attempts"], cancelled["unit"]) == ("cancelled", 0, None)
    for job in (first, second):
        await api.call("job.cancel", id=job["id"])
        await api.wait(job["id"], "cancelled")


PAYLOADS = ["; rm -rf /", "$(id)", "${HOME}", "$HOME", "$$", "`id`", "a b  c", "'\"", "%n %%",
            "*", "\\"]  # fmt: skip


async def test_injection_attempts_arrive_verbatim_as_one_argument(api: Api) -> None:
    jobs = [await api.submit("hold", seconds=0, text=payload) for payload in PAYLOADS]
    for job, payload in zip(jobs, PAYLOADS, strict=True):
        done = await api.wait(job["id"], "succeeded", "failed")
        assert done["state"] == "succeeded", done
        # "2:" — still exactly two arguments after the script; the payload unexpanded.
        assert api.output(job["id"]) == [f"start 2:{payload}", "done"]


@pytest.mark.parametrize(
    ("definition", "params", "field", "reason"),
    [
        ("hold", {"text": "a\nb"}, "params.text", "control characters"),
        ("hold", {"text": "a\u0000b"}, "params.text", "NUL"),
        ("hold", {"text": "-rf"}, "params.text", "must not start with '-'"),
        ("backup", {"source": "/srv/../etc"}, "params.source", "must lie under /srv"),
        ("backup", {"source": "/srv/x", "dest": "/var/lib/automd-backups/../../../etc/x"},
         "params.dest",
         "must lie under /var/lib/automd-backups"),
        ("hold", {"seconds": "1; reboot"}, "params.seconds", "must be an integer"),
        ("hold", {"bogus": 1}, "params.bogus", "unknown parameter"),
    ],
)  # fmt: skip
async def test_injection_attempts_that_are_rejected(
    api: Api, definition: str, params: dict[str, Any], field: str, reason: str
) -> None:
    error = await api.error("job.submit", definition=definition, params=params)
    assert error["code"] == -32602
    assert error["data"]["field"] == field
    assert reason in error["data"]["reason"]


async def test_200_concurrent_submissions_of_50_keys_create_50_jobs(api: Api) -> None:
    async def submit(i: int) -> dict[str, Any]:
        result: dict[str, Any] = await api.call(
            "job.submit", definition="hold", params={"seconds": 0, "text": f"k{i % 50}"},
            idempotency_key=f"burst-{i % 50}",
        )  # fmt: skip
        return result

    results = await asyncio.gather(*(submit(i) for i in range(200)))
    ids = {r["job"]["id"] for r in results}
    assert len(ids) == 50
    assert sum(not r["replayed"] for r in results) == 50
    for job_id in ids:
        await api.wait(job_id, "succeeded")
        assert len([line for line in api.output(job_id) if line.startswith("start")]) == 1


# PID 1's journal messages "Starting ..." and "Deactivated successfully." (systemd-facts.md §2).
_STARTING = "7d4958e842da4a758f6c1cdc7b36dcc5"
_DEACTIVATED = "7ad2d189f7e94e70a38c781354912448"


async def test_concurrency_limit_holds_under_a_burst(api: Api) -> None:
    jobs = [await api.submit("limited", seconds=1) for _ in range(8)]
    units = [(await api.wait(j["id"], "succeeded"))["unit"] for j in jobs]
    # How many of the units systemd ran at once, from what PID 1 logged, in its order: a unit
    # counts from its start job to its end. automd starts a queued job only once it has heard
    # of another's end, which PID 1 logs before it tells anyone: no sample can miss a moment.
    # (Matches on one field are alternatives; matches on different fields must all hold.)
    entries = api.container.journal(
        "_PID=1", f"MESSAGE_ID={_STARTING}", f"MESSAGE_ID={_DEACTIVATED}",
        *(f"UNIT={unit}" for unit in units),
    )  # fmt: skip
    running, most = 0, 0
    for entry in entries:
        running += 1 if entry["MESSAGE_ID"] == _STARTING else -1
        most = max(most, running)
    shown = [(e["UNIT"], e["MESSAGE"]) for e in entries]
    assert (len(entries), running) == (16, 0), shown
    assert 1 <= most <= 2, shown


async def test_kill_9_of_automd_loses_no_job_and_runs_none_twice(
    api: Api, new_gate: Callable[[], Gate]
) -> None:
    """A job that ends while automd is dead is read back from the journal; one that runs on
    through the restart is adopted and followed live. Neither is run twice.

    Gates decide which is which, not a clock: automd is frozen (SIGSTOP) while the first job
    ends, so it cannot hear of it, and SIGKILLed only once that unit is gone; the second ends
    only after the new automd runs.
    """
    gates = {"ends while automd is dead": new_gate(), "ends after the restart": new_gate()}
    jobs = {case: await api.submit("gated", gate=gate.name) for case, gate in gates.items()}
    units = {case: (await api.wait(job["id"], "running"))["unit"] for case, job in jobs.items()}
    before = api.show("automd.service", "MainPID", "NRestarts")
    old_pid = before["MainPID"]
    api.container.run(["kill", "-STOP", old_pid])
    try:
        gates["ends while automd is dead"].open()
        wait_for(
            "the first job's unit ended and garbage-collected",
            lambda: api.show(units["ends while automd is dead"], "LoadState")["LoadState"],
            lambda state: state == "not-found",
        )
    finally:
        # SIGKILL ends a stopped process too; Restart=on-failure brings automd back.
        api.container.run(["kill", "-KILL", old_pid], check=False)
    after = wait_for(
        "automd restarted",
        lambda: api.show("automd.service", "MainPID", "NRestarts", "SubState"),
        lambda s: s["MainPID"] not in ("0", old_pid) and s["SubState"] == "running",
    )
    assert int(after["NRestarts"]) > int(before["NRestarts"])
    api.wait_reconciled(after["MainPID"])
    gates["ends after the restart"].open()

    expected = {
        "ends while automd is dead": ("journal", 0),
        "ends after the restart": ("dbus", 0),
    }
    for case, job in jobs.items():
        done = await api.wait(job["id"], "succeeded", "failed", "unknown")
        assert (done["state"], done["attempts"]) == ("succeeded", 1), (case, done)
        attempt = (await api.call("job.get", id=job["id"]))["attempts"][0]
        # Read back from the journal too: a clean end without a stop job is exit 0.
        assert (attempt["outcome_source"], done["exit_code"]) == expected[case], case
        assert api.output(job["id"]) == ["line 1", *GATED_TAIL], case  # ran once


async def test_definitions_are_listed_with_a_schema(api: Api) -> None:
    listed = await api.call("definition.list")
    names = {d["name"] for d in listed["definitions"]}
    assert {"hello", "backup", "fail", "long", "hold"} <= names
    assert listed["errors"] == []
    backup = await api.call("definition.get", name="backup")
    assert backup["params_schema"]["required"] == ["source"]
    assert (await api.error("definition.get", name="nope"))["code"] == 1001
    assert (await api.error("job.submit", definition="nope"))["code"] == 1001
    assert (await api.error("job.get", id="0" * 26))["code"] == 1002


async def test_a_bad_definition_file_is_reported_and_the_rest_keep_working(
    api: Api, container: Container
) -> None:
    container.write_file("/etc/automd/jobs.d/broken.toml", 'executable = "relative"\n')
    try:
        reloaded = await api.call("system.reload")
        assert reloaded["errors"] == [
            {"file": "/etc/automd/jobs.d/broken.toml", "key": "executable",
             "reason": "must be an absolute path without placeholders"}
        ]  # fmt: skip
        job = await api.submit("hello")
        assert (await api.wait(job["id"], "succeeded"))["exit_code"] == 0
    finally:
        container.run(["rm", "-f", "/etc/automd/jobs.d/broken.toml"])
        await api.call("system.reload")


async def test_journalctl_finds_a_jobs_output_by_id(api: Api) -> None:
    # Documented for humans: plain `journalctl AUTOMD_JOB_ID=<id>` shows the job's output and
    # automd's own lines about the job (a custom field match, from LogExtraFields).
    job = await api.submit("hello", name="journalctl")
    await api.wait(job["id"], "succeeded")
    # automd logs the end just after recording it: a client may see the state first.
    wait_for(
        "automd's line about the job's end",
        lambda: [e["MESSAGE"] for e in api.container.journal(f"AUTOMD_JOB_ID={job['id']}")],
        lambda messages: f"job {job['id']} succeeded (success)" in messages,
    )
    shown = api.container.run(
        ["journalctl", "--no-pager", "-o", "cat", f"AUTOMD_JOB_ID={job['id']}"]
    ).stdout.decode()
    assert "Hello, journalctl!" in shown
    assert f"job {job['id']} succeeded (success)" in shown


async def test_the_shipped_backup_example_runs_as_shipped(api: Api, container: Container) -> None:
    """Issue 16.1: the README's flagship example on a stock host. Checked: fails on the code
    before (the job's dynamic user could not write /var/backups: tar exited 2, three times)."""
    container.run(["mkdir", "-p", "/srv/www"])
    container.run(["sh", "-c", "echo hello > /srv/www/index.html"])
    job = await api.submit("backup", source="/srv/www")
    done = await api.wait(job["id"], "succeeded", "failed", "timed_out")
    assert done["state"] == "succeeded", await api.call("job.get", id=job["id"])
    listing = container.run(["tar", "-tzf", "/var/lib/automd-backups/backup.tar.gz"]).stdout
    assert b"./index.html" in listing.split()


async def test_a_sandbox_that_cannot_be_set_up_fails_once_and_says_why(api: Api) -> None:
    """Issue 16.1: 226/NAMESPACE is systemd's failure, not the job's: named, not retried.
    Checked: fails on the code before (three attempts, "exited with status 226")."""
    job = await api.submit("setupfail")
    done = await api.wait(job["id"], "failed", "succeeded")
    assert (done["state"], done["exit_code"], done["attempts"]) == ("failed", 226, 1)
    detail = await api.call("job.get", id=job["id"])
    (final,) = [e for e in detail["events"] if e["state"] == "failed"]
    assert "226/NAMESPACE" in final["detail"]
