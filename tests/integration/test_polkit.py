"""automd.systemd.polkit against the container's real polkitd 122 with automd's policy and rules."""

from __future__ import annotations

import secrets
import statistics
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from automd.errors import PolkitUnavailable
from automd.systemd.bus import SystemdBus
from automd.systemd.polkit import (
    ACTION_ADMIN,
    ACTION_CANCEL,
    ACTION_READ,
    ACTION_RUN,
    PolkitAuthority,
    Subject,
    read_start_time,
)
from tests.integration.conftest import (
    ADMIN_USER,
    CHECKOUT,
    OTHER_USER,
    POLKIT_ACTIONS_DIR,
    TEST_USER,
)
from tests.integration.container import Container

DEPLOY_RULES = "/etc/polkit-1/rules.d/40-automd-deploy.rules"
DEPLOY_USER = "deploy"
ALL_ACTIONS = (ACTION_READ, ACTION_RUN, ACTION_CANCEL, ACTION_ADMIN)


def per_job_rule() -> str:
    """The commented example at the end of the shipped 50-automd.rules, uncommented."""
    text = (CHECKOUT / "polkit" / "50-automd.rules").read_text()
    example = text[text.index("// polkit.addRule") :]
    return "".join(line.removeprefix("//").removeprefix(" ") + "\n" for line in example.split("\n"))


def restart_polkit(container: Container) -> None:
    # polkit 122 also reloads rules on its own (inotify), but asynchronously: a restart makes
    # the next call see exactly the files on disk.
    container.restart_units("polkit.service")


@pytest.fixture(scope="module")
def polkit_installed(container: Container) -> Iterator[None]:
    """The session container carries automd's policy and shipped rules (conftest's
    install_polkit_policy, which never writes the host's /usr); this module adds user deploy
    for the per-job rule, and leaves polkit as it found it."""
    host_policy = Path(POLKIT_ACTIONS_DIR) / "org.automd.policy"
    host_had_policy = host_policy.exists()
    was_active = container.run(["systemctl", "is-active", "polkit.service"], check=False)
    container.run(["useradd", "-m", DEPLOY_USER])
    try:
        restart_polkit(container)
        yield
    finally:
        container.run(["rm", "-f", DEPLOY_RULES])
        container.run(["userdel", "-r", DEPLOY_USER], check=False)
        container.run(["systemctl", "unmask", "--runtime", "polkit.service"], check=False)
        # As found: running (with the shipped rules only), or stopped until bus-activated.
        if was_active.returncode == 0:
            container.restart_units("polkit.service")
        else:
            container.stop_units("polkit.service")
        assert host_policy.exists() == host_had_policy, "the host's /usr was written to"


class Processes:
    """Long-running processes started inside the container as given users, as polkit subjects."""

    def __init__(self, container: Container) -> None:
        self.container = container
        self.units: dict[Subject, str] = {}

    def start(self, user: str) -> Subject:
        unit = f"polkit-test-{user}-{secrets.token_hex(4)}.service"
        argv = ["systemd-run", "--collect", f"--unit={unit}", "sleep", "600"]
        if user != "root":
            argv.insert(1, f"--uid={user}")
        self.container.run(argv)
        show = ["systemctl", "show", "--property=MainPID", "--value", unit]
        pid = int(self.container.run(show).stdout)
        assert pid > 0, unit
        # The pid is in the container's PID namespace, which is the one polkit runs in.
        subject = Subject(pid=pid, uid=self.container.user(user).uid)
        self.units[subject] = unit
        return subject

    def stop(self, subject: Subject) -> None:
        self.container.run(["systemctl", "stop", self.units.pop(subject)])


@pytest.fixture(scope="module")
def processes(container: Container, polkit_installed: None) -> Iterator[Processes]:
    procs = Processes(container)
    yield procs
    if procs.units:
        container.run(["systemctl", "stop", *procs.units.values()], check=False)


@pytest.fixture(scope="module")
def subjects(processes: Processes) -> dict[str, Subject]:
    users = ("root", TEST_USER, OTHER_USER, ADMIN_USER, DEPLOY_USER)
    return {user: processes.start(user) for user in users}


def proc_root(container: Container) -> str:
    return f"{container.root}/proc"


@pytest.fixture
async def authority(container: Container, polkit_installed: None) -> AsyncIterator[PolkitAuthority]:
    # Root on the host is root in the container, so the host may use its bus socket; the
    # subjects' /proc entries are read from the container's procfs.
    bus = SystemdBus(bus_address=f"unix:path={container.root}/run/dbus/system_bus_socket")
    try:
        yield PolkitAuthority(bus, proc_root=proc_root(container))
    finally:
        await bus.close()


EXPECTED = {
    "root": dict.fromkeys(ALL_ACTIONS, True),
    TEST_USER: {ACTION_READ: True, ACTION_RUN: True, ACTION_CANCEL: True, ACTION_ADMIN: False},
    OTHER_USER: dict.fromkeys(ALL_ACTIONS, False),
    ADMIN_USER: dict.fromkeys(ALL_ACTIONS, True),
}


@pytest.mark.parametrize("user", sorted(EXPECTED))
async def test_shipped_rules_grant_by_group(
    authority: PolkitAuthority, subjects: dict[str, Subject], user: str
) -> None:
    subject = subjects[user]
    details = {"definition": "backup", "param.target": "/srv"}
    decided = {action: await authority.check(action, subject, details) for action in ALL_ACTIONS}
    assert decided == EXPECTED[user]


async def test_polkit_decides_on_the_uid_automd_sends(
    authority: PolkitAuthority, subjects: dict[str, Subject]
) -> None:
    # Why check() must only ever be given the SO_PEERCRED uid: polkit believes a root caller.
    bobs_process_as_alice = Subject(pid=subjects[OTHER_USER].pid, uid=subjects[TEST_USER].uid)
    assert await authority.check(ACTION_RUN, bobs_process_as_alice, {})


async def test_per_job_rule_from_the_shipped_example(
    container: Container, authority: PolkitAuthority, subjects: dict[str, Subject]
) -> None:
    deploy = subjects[DEPLOY_USER]
    container.write_file(DEPLOY_RULES, per_job_rule())
    restart_polkit(container)
    try:
        staging = {"definition": "deploy-app", "param.env": "staging"}
        assert await authority.check(ACTION_RUN, deploy, staging)
        assert not await authority.check(ACTION_RUN, deploy, staging | {"param.env": "prod"})
        assert not await authority.check(ACTION_RUN, deploy, staging | {"definition": "backup"})
        assert not await authority.check(ACTION_RUN, deploy, {"param.env": "staging"})
        # A capped request is refused by the rule even though the visible values match.
        oversized = staging | {"param.notes": "x" * 5000}
        assert not await authority.check(ACTION_RUN, deploy, oversized)
        # Other actions fall through to the policy's defaults: no.
        assert not await authority.check(ACTION_READ, deploy, staging)
        # The group grants of 50-automd.rules still apply to everyone else.
        assert await authority.check(ACTION_RUN, subjects[TEST_USER], staging | {"param.env": "x"})
    finally:
        container.run(["rm", "-f", DEPLOY_RULES])
        restart_polkit(container)
    assert not await authority.check(ACTION_RUN, deploy, staging)


async def test_many_or_huge_details_are_capped_and_still_decided(
    authority: PolkitAuthority, subjects: dict[str, Subject]
) -> None:
    details = {f"param.p{i}": "v" * 100_000 for i in range(500)}
    assert await authority.check(ACTION_RUN, subjects[TEST_USER], details)
    assert not await authority.check(ACTION_RUN, subjects[OTHER_USER], details)


async def test_an_exited_process_is_denied(
    authority: PolkitAuthority, processes: Processes
) -> None:
    subject = processes.start(TEST_USER)
    assert await authority.check(ACTION_READ, subject, {})
    processes.stop(subject)
    assert not await authority.check(ACTION_READ, subject, {})


async def test_a_replaced_process_is_denied_by_polkit(
    container: Container, subjects: dict[str, Subject], tmp_path: Path
) -> None:
    # A /proc whose entry for alice's pid shows another start time: exactly what automd would
    # have read had the pid been recycled since; polkit compares with the live process.
    alice = subjects[TEST_USER]
    real = read_start_time(alice.pid, proc_root=proc_root(container))
    stat = (Path(proc_root(container)) / str(alice.pid) / "stat").read_text()
    head, _, rest = stat.rpartition(")")
    fields = rest.split()
    fields[19] = str(real + 1)
    (tmp_path / str(alice.pid)).mkdir()
    (tmp_path / str(alice.pid) / "stat").write_text(f"{head}) {' '.join(fields)}\n")
    bus = SystemdBus(bus_address=f"unix:path={container.root}/run/dbus/system_bus_socket")
    try:
        stale = PolkitAuthority(bus, proc_root=str(tmp_path))
        assert not await stale.check(ACTION_READ, alice, {})
    finally:
        await bus.close()


async def test_pkcheck_agrees_with_the_docs(
    container: Container, subjects: dict[str, Subject]
) -> None:
    argv = ["pkcheck", "--action-id", ACTION_RUN, "--detail", "definition", "deploy-app"]
    alice = container.run([*argv, "--process", str(subjects[TEST_USER].pid)], check=False)
    assert (alice.returncode, alice.stdout, alice.stderr) == (0, b"definition=deploy\\55app\n", b"")
    bob = container.run([*argv, "--process", str(subjects[OTHER_USER].pid)], check=False)
    assert (bob.returncode, bob.stderr) == (1, b"Not authorized.\n")


async def test_polkit_unreachable_raises_and_recovers(
    container: Container, authority: PolkitAuthority, subjects: dict[str, Subject]
) -> None:
    # polkit is bus-activated: stopping it is not enough, activation must fail too.
    container.run(["systemctl", "mask", "--runtime", "polkit.service"])
    try:
        container.stop_units("polkit.service")
        assert not await authority.available()
        with pytest.raises(PolkitUnavailable) as caught:
            await authority.check(ACTION_READ, subjects[TEST_USER], {})
        assert "masked" in caught.value.data["reason"]
    finally:
        container.run(["systemctl", "unmask", "--runtime", "polkit.service"])
    # The same connection works again: polkit comes back by bus activation.
    assert await authority.available()
    assert await authority.check(ACTION_READ, subjects[TEST_USER], {})


async def test_check_latency(
    authority: PolkitAuthority,
    subjects: dict[str, Subject],
    record_property: Callable[[str, object], None],
) -> None:
    subject = subjects[TEST_USER]
    details = {"definition": "deploy-app", "param.env": "staging"}
    assert await authority.check(ACTION_RUN, subject, details)  # warm: activation, connection
    samples = []
    for _ in range(200):
        started = time.perf_counter()
        assert await authority.check(ACTION_RUN, subject, details)
        samples.append((time.perf_counter() - started) * 1000)
    cuts = statistics.quantiles(samples, n=100)
    p50, p99 = cuts[49], cuts[98]
    record_property("check_p50_ms", round(p50, 2))
    record_property("check_p99_ms", round(p99, 2))
    print(f"CheckAuthorization: p50 {p50:.2f} ms, p99 {p99:.2f} ms over {len(samples)} calls")
    # Only a sanity bound, and on the median: it says what a check costs, while the tail
    # says how busy the machine is (another process's time slice lands on a few of the 200
    # calls), so p99 is recorded, not judged.
    assert p50 < 250
