"""automd.systemd.units against the container's real systemd 252, over its system bus."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import signal
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from automd.errors import UnitStartRejected
from automd.sandbox import DEFAULT_SANDBOX
from automd.systemd.bus import SystemdBus
from automd.systemd.manager import Manager
from automd.systemd.units import Systemd, UnitOutcome, UnitSpec
from tests.integration.conftest import (
    CHECKOUT,
    WAIT_SECONDS,
    Gate,
    shown_sandbox,
    syscall_filter_is_set,
    wait_for,
)
from tests.integration.container import Container
from tests.unit_events import Recorder

PAYLOAD = "$HOME ${X} $$ `id` ; rm -rf / %n %% \\ 'q' \"dq\""


def bus_for(container: Container) -> SystemdBus:
    # Root on the host is root in the container (no user namespace), so the host can use the
    # container's system bus socket directly.
    return SystemdBus(bus_address=f"unix:path={container.root}/run/dbus/system_bus_socket")


def journal_dir(container: Container) -> str:
    return f"{container.root}/run/log/journal"


def job_spec(label: str, argv: tuple[str, ...], **overrides: Any) -> UnitSpec:
    name = f"automd-test-{label}-{secrets.token_hex(4)}.service"
    values: dict[str, Any] = {
        "name": name,
        "description": f"automd test {label}",
        "argv": argv,
        "environment": {"AUTOMD_TEST": label},
        "log_extra_fields": {"AUTOMD_TEST_UNIT": name.removesuffix(".service")},
    }
    values.update(overrides)
    return UnitSpec(**values)


def main_process_cmdline(container: Container, unit: str) -> list[bytes]:
    """argv of the unit's main process once exec'd (Type=exec reports "activating" before
    the fork, and the child is called "(sh)" until its execve)."""

    def cmdline() -> list[bytes]:
        pid = container.show(unit, "MainPID")["MainPID"]
        if pid == "0":
            return []
        return container.run(["cat", f"/proc/{pid}/cmdline"]).stdout.split(b"\0")[:-1]

    return wait_for(f"{unit}'s main process exec'd", cmdline,
                    lambda argv: bool(argv) and not argv[0].startswith(b"("))  # fmt: skip


def is_loaded(container: Container, unit: str) -> bool:
    return container.show(unit, "LoadState")["LoadState"] == "loaded"


@pytest.fixture(scope="module")
def jobs_slice(container: Container) -> None:
    """The shipped automd-jobs.slice, installed as a package would."""
    container.run(
        [
            "install",
            "-m",
            "0644",
            "-t",
            "/etc/systemd/system",
            str(CHECKOUT / "units" / "automd-jobs.slice"),
        ]
    )
    container.run(["systemctl", "daemon-reload"])


@contextlib.asynccontextmanager
async def following(
    container: Container, recorder: Recorder, bus: SystemdBus | None = None
) -> AsyncIterator[Systemd]:
    """A Systemd on its own bus connection (one automd process), its events recorded."""
    bus = bus or bus_for(container)
    sd = Systemd(Manager(bus), journal_path=journal_dir(container))
    try:
        async with recorder.reading(sd.events):
            yield sd
    finally:
        await sd.close()
        await bus.close()


@pytest.fixture
async def recorder() -> Recorder:
    return Recorder(WAIT_SECONDS)


@pytest.fixture
async def systemd(
    container: Container, jobs_slice: None, recorder: Recorder
) -> AsyncIterator[Systemd]:
    async with following(container, recorder) as sd:
        yield sd


async def run_to_end(systemd: Systemd, recorder: Recorder, spec: UnitSpec) -> UnitOutcome:
    await systemd.start_unit(spec)
    return await recorder.outcome(spec.name)


async def test_exit_zero_is_success(systemd: Systemd, recorder: Recorder) -> None:
    spec = job_spec("true", ("/bin/true",))
    outcome = await run_to_end(systemd, recorder, spec)
    assert outcome == UnitOutcome(
        spec.name, recorder.started[spec.name][0], "success", 0, None, "dbus"
    )
    assert len(outcome.invocation_id or "") == 32


async def test_exit_three_is_exit_code_and_stays_until_reset(
    systemd: Systemd, recorder: Recorder, container: Container
) -> None:
    spec = job_spec("exit3", ("/bin/sh", "-c", "exit 3"))
    outcome = await run_to_end(systemd, recorder, spec)
    assert (outcome.result, outcome.exit_code, outcome.signal) == ("exit-code", 3, None)
    # Default CollectMode: the failed unit stays inspectable until ResetFailedUnit.
    assert container.show(spec.name, "ActiveState")["ActiveState"] == "failed"
    await systemd.reset_failed(spec.name)
    assert not is_loaded(container, spec.name)
    await systemd.reset_failed(spec.name)  # gone: a no-op


async def test_missing_binary_is_exit_code_203(systemd: Systemd, recorder: Recorder) -> None:
    # With Type=exec systemd forks, fails to execve, and reports status 203 (EXIT_EXEC).
    spec = job_spec("missing", ("/nonexistent/job",))
    outcome = await run_to_end(systemd, recorder, spec)
    assert (outcome.result, outcome.exit_code, outcome.signal) == ("exit-code", 203, None)
    await systemd.reset_failed(spec.name)


async def test_runtime_max_exceeded_is_timeout(systemd: Systemd, recorder: Recorder) -> None:
    spec = job_spec("timeout", ("/bin/sleep", "30"), runtime_max_usec=500_000)
    outcome = await run_to_end(systemd, recorder, spec)
    assert (outcome.result, outcome.exit_code, outcome.signal) == ("timeout", None, 15)
    await systemd.reset_failed(spec.name)


async def test_stop_unit_is_success_by_sigterm(
    systemd: Systemd, recorder: Recorder, container: Container
) -> None:
    spec = job_spec("stop", ("/bin/sleep", "30"))
    await systemd.start_unit(spec)
    await recorder.wait_started(spec.name)
    await systemd.stop_unit(spec.name)
    outcome = await recorder.outcome(spec.name)
    # systemd reports a clean SIGTERM as success; the job service records the cancel itself.
    assert (outcome.result, outcome.exit_code, outcome.signal) == ("success", None, 15)
    assert not is_loaded(container, spec.name)
    await systemd.stop_unit(spec.name)  # gone: a no-op


@contextlib.contextmanager
def waiting_slice(container: Container) -> Iterator[str]:
    """A slice whose start waits until the block ends: a unit in it has a start job that
    waits too, so a stop can overtake that start before the unit runs, every time."""
    label = secrets.token_hex(4)
    gate, slice_name = f"/run/automd-test-gate-{label}", f"automd-test-waiting-{label}.slice"
    container.write_file(
        f"/etc/systemd/system/automd-test-gate-{label}.service",
        "[Service]\nType=oneshot\n"
        f"ExecStart=/bin/sh -c 'until [ -e {gate} ]; do sleep 0.1; done'\n",
    )
    container.write_file(
        f"/etc/systemd/system/{slice_name}",
        f"[Unit]\nWants=automd-test-gate-{label}.service\nAfter=automd-test-gate-{label}.service\n",
    )
    container.run(["systemctl", "daemon-reload"])
    try:
        yield slice_name
    finally:
        container.run(["touch", gate])


async def test_a_start_a_stop_overtook_ends_as_never_ran(
    systemd: Systemd, recorder: Recorder, container: Container
) -> None:
    """A cancel while a job is starting: the stop replaces the start job before the unit ran,
    PID 1 logs nothing and unloads the unit. automd once dropped such a unit without an
    outcome, and the job stayed "starting" until a self-check repaired it a minute later
    (CI, test_restart_race). Checked: this failed on the code before the fix."""
    with waiting_slice(container) as slice_name:
        spec = job_spec("overtaken", ("/bin/true",), slice=slice_name)
        await systemd.start_unit(spec)  # accepted: its start job waits for the slice
        await systemd.stop_unit(spec.name)
        outcome = await recorder.outcome(spec.name)
    assert (outcome.result, outcome.exit_code, outcome.signal) == ("start-canceled", None, None)
    assert spec.name not in recorder.started
    assert spec.name not in systemd._units  # nothing left tracked


async def test_kill_unit_sigkill_is_signal(systemd: Systemd, recorder: Recorder) -> None:
    spec = job_spec("kill", ("/bin/sleep", "30"))
    await systemd.start_unit(spec)
    await recorder.wait_started(spec.name)
    await systemd.kill_unit(spec.name, signal.SIGKILL)
    outcome = await recorder.outcome(spec.name)
    assert (outcome.result, outcome.exit_code, outcome.signal) == ("signal", None, 9)
    await systemd.reset_failed(spec.name)


async def test_argv_reaches_the_process_unexpanded(
    systemd: Systemd, recorder: Recorder, container: Container
) -> None:
    spec = job_spec("argv", ("/usr/bin/printf", "%s\\n", PAYLOAD), environment={"X": "expanded"})
    outcome = await run_to_end(systemd, recorder, spec)
    assert outcome.result == "success"
    field = spec.log_extra_fields["AUTOMD_TEST_UNIT"]
    container.run(["journalctl", "--sync"])
    out = container.run(["journalctl", f"AUTOMD_TEST_UNIT={field}", "--output=cat", "--no-pager"])
    assert out.stdout.decode().splitlines() == [PAYLOAD]


async def test_properties_read_back(
    systemd: Systemd, recorder: Recorder, container: Container
) -> None:
    spec = job_spec(
        "props",
        # "; :" keeps sh itself the main process (no exec of a last command).
        ("/bin/sh", "-c", "sleep 30; :", "sh", PAYLOAD),
        environment={"AUTOMD_JOB_ID": "42", "FOO": "bar baz"},
        working_directory="/tmp",
        memory_max=268435456,
        cpu_quota_per_sec_usec=500000,
        tasks_max=64,
        runtime_max_usec=60_000_000,
    )
    await systemd.start_unit(spec)
    await recorder.wait_started(spec.name)
    try:
        props = container.show(
            spec.name,
            "ExecStart",
            "ExecStartEx",
            "Type",
            "Slice",
            "LogExtraFields",
            "SyslogIdentifier",
            "DynamicUser",
            "Environment",
            "WorkingDirectory",
            "MemoryMax",
            "CPUQuotaPerSecUSec",
            "TasksMax",
            "RuntimeMaxUSec",
            "CollectMode",
            *DEFAULT_SANDBOX,
        )
        cmdline = main_process_cmdline(container, spec.name)
    finally:
        await systemd.stop_unit(spec.name)
    assert cmdline == [b"/bin/sh", b"-c", b"sleep 30; :", b"sh", PAYLOAD.encode()]
    assert "path=/bin/sh" in props["ExecStart"]
    assert "flags=no-env-expand" in props["ExecStartEx"]
    assert props["Type"] == "exec"
    assert props["Slice"] == "automd-jobs.slice"
    assert props["LogExtraFields"] == f"AUTOMD_TEST_UNIT={spec.name.removesuffix('.service')}"
    assert props["SyslogIdentifier"] == spec.name.removesuffix(".service")
    assert props["DynamicUser"] == "yes"
    assert props["Environment"] == 'AUTOMD_JOB_ID=42 "FOO=bar baz"'
    assert props["WorkingDirectory"] == "/tmp"
    assert props["MemoryMax"] == "268435456"
    assert props["CPUQuotaPerSecUSec"] == "500ms"
    assert props["TasksMax"] == "64"
    assert props["RuntimeMaxUSec"] == "1min"
    assert props["CollectMode"] == "inactive"
    for name, expected in shown_sandbox(DEFAULT_SANDBOX).items():
        assert props[name] == expected, name
    assert syscall_filter_is_set(props["SystemCallFilter"])
    slice_props = container.show("automd-jobs.slice", "LoadState", "ActiveState", "TasksMax")
    assert slice_props == {"LoadState": "loaded", "ActiveState": "active", "TasksMax": "4096"}
    await recorder.outcome(spec.name)


async def test_sandboxed_shell_script_runs(
    systemd: Systemd, recorder: Recorder, container: Container
) -> None:
    script = (
        "set -eu; echo scratch > /tmp/f; cat /tmp/f; ls /etc >/dev/null; date >/dev/null; "
        'test "$(id -u)" -ne 0; test "$(cat /proc/self/status | grep NoNewPrivs)" != ""; '
        "! touch /etc/automd-sandbox-escape 2>/dev/null; "
        "! touch /root/x 2>/dev/null; echo done"
    )
    spec = job_spec("shell", ("/bin/sh", "-c", script))
    outcome = await run_to_end(systemd, recorder, spec)
    assert (outcome.result, outcome.exit_code) == ("success", 0)


async def test_explicit_user(systemd: Systemd, recorder: Recorder, container: Container) -> None:
    spec = job_spec("user", ("/bin/sh", "-c", 'test "$(id -un)" = nobody'), user="nobody")
    outcome = await run_to_end(systemd, recorder, spec)
    assert (outcome.result, outcome.exit_code) == ("success", 0)


async def test_rejected_starts_name_the_dbus_error(
    systemd: Systemd, recorder: Recorder, container: Container
) -> None:
    bad = job_spec("bad", ("/bin/true",), sandbox={"ProtectSystem": "bogus"})
    with pytest.raises(UnitStartRejected) as excinfo:
        await systemd.start_unit(bad)
    assert excinfo.value.dbus_error == "org.freedesktop.DBus.Error.InvalidArgs"

    failed = job_spec("exists", ("/bin/false",))
    assert (await run_to_end(systemd, recorder, failed)).result == "exit-code"
    with pytest.raises(UnitStartRejected) as excinfo:
        await systemd.start_unit(failed)  # the failed unit is still loaded
    assert excinfo.value.dbus_error == "org.freedesktop.systemd1.UnitExists"
    await systemd.reset_failed(failed.name)


async def test_fifty_concurrent_units_finish_exactly_once(
    systemd: Systemd, recorder: Recorder, capsys: pytest.CaptureFixture[str]
) -> None:
    specs = [
        job_spec(f"many{i}", ("/bin/sh", "-c", f"exit {i % 3}"), log_extra_fields={})
        for i in range(50)
    ]
    started = time.monotonic()
    await asyncio.gather(*(systemd.start_unit(spec) for spec in specs))
    outcomes = await asyncio.gather(*(recorder.outcome(spec.name) for spec in specs))
    elapsed = time.monotonic() - started
    for i, (spec, outcome) in enumerate(zip(specs, outcomes, strict=True)):
        assert outcome.exit_code == i % 3
        assert outcome.result == ("success" if i % 3 == 0 else "exit-code")
        assert len(recorder.started[spec.name]) == 1
    # A duplicate would come from messages systemd sent about the fifty: they all come before
    # those about a unit started after the fifty ended, on the same connection.
    await run_to_end(systemd, recorder, job_spec("after-many", ("/bin/true",)))
    assert all(len(recorder.finished[spec.name]) == 1 for spec in specs)
    assert all(len(recorder.started[spec.name]) == 1 for spec in specs)
    await asyncio.gather(*(systemd.reset_failed(spec.name) for spec in specs))
    with capsys.disabled():
        print(
            f"\n50 concurrent units started and finished in {elapsed:.2f} s "
            f"({50 / elapsed:.0f} units/s)"
        )


@pytest.mark.parametrize("reload", [False, True], ids=["plain", "after-daemon-reload"])
async def test_adopt_after_restart(
    container: Container, jobs_slice: None, new_gate: Callable[[], Gate], reload: bool
) -> None:
    """A restarted automd follows the units of running jobs and reports ended ones; also
    after a daemon-reload, which leaves systemd 252's job units "bad-setting" (adopt())."""
    before = Recorder(WAIT_SECONDS)
    gate = new_gate()  # "running" runs until adopted, however long that takes
    running = job_spec("adopt-run", ("/bin/sh", "-c", f"{gate.shell()}; exit 4"))
    ended = job_spec("adopt-ended", ("/bin/sh", "-c", "exit 5"))
    # automd goes away at the end of the block: its tracking state and bus connection with it.
    async with following(container, before) as previous:
        await previous.start_unit(running)
        await previous.start_unit(ended)
        await before.wait_started(running.name)
        await before.outcome(ended.name)
    if reload:  # as a package upgrade does before it restarts automd
        container.run(["systemctl", "daemon-reload"])
        load_state = container.show(running.name, "LoadState")["LoadState"]
        assert load_state in ("loaded", "bad-setting")

    after = Recorder(WAIT_SECONDS)
    async with following(container, after) as current:
        names = await current.adopt()
        assert {running.name, ended.name} <= set(names)
        # The already-failed unit is reported from its properties right away.
        await after.settled()
        assert ended.name in after.finished
        assert (after.finished[ended.name][0].result, after.finished[ended.name][0].exit_code) == (
            "exit-code",
            5,
        )
        assert after.started[running.name] == before.started[running.name]
        assert running.name not in after.finished
        gate.open()
        outcome = await after.outcome(running.name)
        assert (outcome.result, outcome.exit_code, outcome.source) == ("exit-code", 4, "dbus")
        # A second adopt() does not report the same ends again.
        await current.adopt()
        await after.settled()
        assert len(after.finished[ended.name]) == 1
        assert len(after.finished[running.name]) == 1
        await current.reset_failed(running.name)
        await current.reset_failed(ended.name)


async def test_outcome_from_journal_after_gc(
    systemd: Systemd, recorder: Recorder, container: Container
) -> None:
    cases: list[tuple[UnitSpec, tuple[str, int | None, int | None]]] = [
        (job_spec("gc-exit3", ("/bin/sh", "-c", "exit 3")), ("exit-code", 3, None)),
        # PID 1 logs no exit entry for a clean exit: with no stop job, that is exit 0.
        (job_spec("gc-true", ("/bin/true",)), ("success", 0, None)),
        # Nor for the SIGTERM that ends a timeout: the result is all the journal knows.
        (
            job_spec("gc-timeout", ("/bin/sleep", "30"), runtime_max_usec=300_000),
            ("timeout", None, None),
        ),
    ]
    for spec, _ in cases:
        await systemd.start_unit(spec)
    # A stop job's SIGTERM is a clean end too; the journal's "Stopping" entry tells it apart.
    stopped = job_spec("gc-stopped", ("/bin/sleep", "30"))
    await systemd.start_unit(stopped)
    await recorder.wait_started(stopped.name)
    await systemd.stop_unit(stopped.name)
    cases.append((stopped, ("success", None, 15)))
    for spec, _ in cases:
        await recorder.outcome(spec.name)
        await systemd.reset_failed(spec.name)
        assert not is_loaded(container, spec.name)
    container.run(["journalctl", "--sync"])
    for spec, expected in cases:
        invocation_id = recorder.started[spec.name][0]
        outcome = await systemd.outcome_from_journal(spec.name, invocation_id)
        assert outcome is not None, spec.name
        assert (outcome.result, outcome.exit_code, outcome.signal) == expected
        assert (outcome.invocation_id, outcome.source) == (invocation_id, "journal")
    assert await systemd.outcome_from_journal("automd-test-never.service", "0" * 32) is None


async def test_units_that_end_while_disconnected_are_resynchronised(
    container: Container, jobs_slice: None
) -> None:
    recorder = Recorder(WAIT_SECONDS)
    killed = job_spec("gap-kill", ("/bin/sleep", "30"))
    stopped = job_spec("gap-stop", ("/bin/sleep", "30"))
    bus = bus_for(container)
    async with following(container, recorder, bus) as systemd:
        await systemd.start_unit(killed)
        await systemd.start_unit(stopped)
        await recorder.wait_started(killed.name)
        await recorder.wait_started(stopped.name)
        connection = bus._bus
        assert connection is not None
        # Drop the connection; the loop cannot reconnect until these blocking calls return,
        # so both units end while automd hears nothing: one stays failed, one is GC'd.
        connection.disconnect()
        container.run(["systemctl", "kill", "--signal=KILL", killed.name])
        container.run(["systemctl", "stop", stopped.name])
        killed_outcome = await recorder.outcome(killed.name)
        stopped_outcome = await recorder.outcome(stopped.name)
        assert bus.reconnects >= 1
        assert (killed_outcome.result, killed_outcome.signal, killed_outcome.source) == (
            "signal",
            9,
            "dbus",
        )
        # Gone from systemd: read back from PID 1's journal, which has no exit entry for a
        # clean SIGTERM.
        assert (stopped_outcome.result, stopped_outcome.source) == ("success", "journal")
        # And signals flow again on the new connection.
        after = job_spec("gap-after", ("/bin/sh", "-c", "exit 6"))
        assert (await run_to_end(systemd, recorder, after)).exit_code == 6
        await systemd.reset_failed(killed.name)
        await systemd.reset_failed(after.name)


async def test_systemd_reexec_is_followed(
    systemd: Systemd, recorder: Recorder, container: Container, new_gate: Callable[[], Gate]
) -> None:
    gate = new_gate()  # the unit ends after the re-exec, however long that takes
    spec = job_spec("reexec", ("/bin/sh", "-c", f"{gate.shell()}; exit 7"))
    await systemd.start_unit(spec)
    await recorder.wait_started(spec.name)
    # systemd drops off the bus and re-registers with a new unique name (NameOwnerChanged).
    container.run(["systemctl", "daemon-reexec"])
    gate.open()
    outcome = await recorder.outcome(spec.name)
    assert (outcome.result, outcome.exit_code) == ("exit-code", 7)
    await systemd.reset_failed(spec.name)
