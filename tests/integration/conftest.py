"""Session fixture booting one systemd container with automd's units installed, for all tests."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pytest

from tests.integration.container import Container, ContainerError

if TYPE_CHECKING:
    from tests.integration.fleet import Fleet
    from tests.integration.schedule_kit import Schedules

HERE = Path(__file__).parent
CHECKOUT = Path(__file__).parents[2]
SOCKET_PATH = "/run/automd.sock"
JOBS_DIR = "/etc/automd/jobs.d"
ADMIN_USER = "carol"  # in groups automd (socket access) and automd-admin
ADMIN_GROUP = "automd-admin"
POLKIT_ACTIONS_DIR = "/usr/share/polkit-1/actions"
OUR_POLKIT_ACTIONS_DIR = "/run/automd-test-polkit/actions"
POLKIT_RULES = "/etc/polkit-1/rules.d/50-automd.rules"
TEST_USER = "alice"  # member of group automd: may connect to the socket
OTHER_USER = "bob"  # not a member: must be refused
# Units every test shares. One left failed (issue 13: automd.socket's start-limit-hit) used to
# fail every later test; now the test that leaves one so fails, and the next starts repaired.
SHARED_UNITS = ("automd.socket", "automd.service", "automd-metrics.socket", "polkit.service")
# Where Gate's files go; tests/integration/jobs.d/gated.toml names the same directory.
GATES_DIR = "/run/automd-test-gates"

#: How long a test waits for a state it expects before it fails. Only a bound for failing, never
#: a duration a test asserts: on a loaded machine a restart or a job may take most of it.
WAIT_SECONDS = 60.0
_POLL_SECONDS = 0.1
T = TypeVar("T")

_BOOT_REPORT = pytest.StashKey[str]()
_REPAIRS = pytest.StashKey[list[str]]()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Conftest hooks see every collected item, not only this directory's; mark just ours.
    for item in items:
        if item.path.is_relative_to(HERE):
            item.add_marker(pytest.mark.integration)


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, exitstatus: int, config: pytest.Config
) -> None:
    report = config.stash.get(_BOOT_REPORT, None)
    if report is not None:
        terminalreporter.write_line(report)
    for repair in config.stash.get(_REPAIRS, []):
        terminalreporter.write_line(repair)


@pytest.fixture(scope="session")
def container(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Container]:
    """One booted container for the session, automd installed; always torn down."""
    log_path = tmp_path_factory.mktemp("container") / "nspawn.log"
    # A failed boot raises ContainerError and fails the tests: never a skip.
    with Container(CHECKOUT, log_path=log_path) as c:
        request.config.stash[_BOOT_REPORT] = (
            f"automd test container {c.name}: booted to {c.boot_state!r} "
            f"in {c.boot_seconds:.2f} s (log: {log_path})"
        )
        install_automd(c)
        yield c


@pytest.fixture(scope="session")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    """Three more hosts running automd, reached by ssh (fleet.py); always torn down."""
    from tests.integration.fleet import booted_fleet  # noqa: PLC0415 (fleet.py imports us)

    with booted_fleet(tmp_path_factory.mktemp("fleet")) as booted:
        yield booted


@pytest.fixture(autouse=True)
def shared_units_intact(container: Container, request: pytest.FixtureRequest) -> Iterator[None]:
    """Each test starts with automd.socket listening and no shared unit failed or masked.

    Found broken before a test (by something outside any test), the units are repaired and
    the repair reported at the end of the run; left broken by a test, they are repaired and
    that test fails, naming what it left. Either way the tests after it run as usual.
    """
    if found := shared_unit_problems(container):
        repair_shared_units(container, request, f"before {request.node.nodeid}", found)
    yield
    if left := shared_unit_problems(container):
        diagnostics = repair_shared_units(container, request, f"after {request.node.nodeid}", left)
        pytest.fail(f"left shared units broken (repaired for the next test): {'; '.join(left)}"
                    f"\n{diagnostics}", pytrace=False)  # fmt: skip


def shared_unit_problems(c: Container) -> list[str]:
    """What is wrong with SHARED_UNITS: automd.socket must listen, none may be failed or masked.

    A unit on its way somewhere (a restart under way) is waited for until it gets there.
    """

    def states() -> list[dict[str, str]]:
        props = "--property=LoadState,ActiveState,SubState,Result"
        out = c.run(["systemctl", "show", props, *SHARED_UNITS]).stdout.decode()
        # One block per unit, in the order asked for, separated by an empty line.
        return [dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
                for block in out.strip().split("\n\n")]  # fmt: skip

    settled = wait_for(
        "shared units settled",
        states,
        lambda units: all(u["ActiveState"] in ("active", "inactive", "failed") for u in units),
    )
    problems = [
        f"{name} {u['LoadState']} {u['ActiveState']} ({u['SubState']}, result {u['Result']})"
        for name, u in zip(SHARED_UNITS, settled, strict=True)
        if u["ActiveState"] == "failed" or u["LoadState"] == "masked"
    ]
    if settled[0]["ActiveState"] != "active":
        problems.append(f"automd.socket not listening ({settled[0]['ActiveState']})")
    return problems


def repair_shared_units(
    c: Container, request: pytest.FixtureRequest, when: str, problems: list[str]
) -> str:
    """Unmask, reset-failed and start automd.socket; record it for the summary. The journal
    of the failed units, for the report."""
    journal = c.run(
        ["journalctl", "--no-pager", "-n", "30", *(f"--unit={u}" for u in SHARED_UNITS)]
    )
    c.run(["systemctl", "unmask", "--runtime", *SHARED_UNITS])
    c.run(["systemctl", "reset-failed", *SHARED_UNITS], check=False)
    c.run(["systemctl", "start", "automd.socket"])
    request.config.stash.setdefault(_REPAIRS, []).append(
        f"automd test container: repaired shared units {when}: {'; '.join(problems)}"
    )
    return journal.stdout.decode(errors="replace")


def wait_for(
    what: str,
    probe: Callable[[], T],
    done: Callable[[T], bool] = bool,
    *,
    within: float = WAIT_SECONDS,
) -> T:
    """probe() until done(value); that value. Waits on a state, never for a time: `within`
    only bounds a failure, which names `what` and the last value seen."""
    deadline = time.monotonic() + within
    while not done(value := probe()):
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within:g} s: {what}; last seen: {value!r}")
        time.sleep(_POLL_SECONDS)
    return value


async def wait_for_async(
    what: str,
    probe: Callable[[], Awaitable[T]],
    done: Callable[[T], bool] = bool,
    *,
    within: float = WAIT_SECONDS,
) -> T:
    """wait_for() for a coroutine probe, sleeping without blocking the event loop."""
    deadline = time.monotonic() + within
    while not done(value := await probe()):
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within:g} s: {what}; last seen: {value!r}")
        await asyncio.sleep(_POLL_SECONDS)
    return value


class Gate:
    """Files a test creates to let a waiting job go on: the job ends when the test says so.

    A job of jobs.d/gated.toml prints "line N" and then waits for step N's file; a unit of a
    test's own waits with shell(). Each gate has its own name; open_all() opens every step.
    """

    def __init__(self, container: Container) -> None:
        self.name = secrets.token_hex(8)
        self._dir = container.root / GATES_DIR.lstrip("/")
        self._dir.mkdir(mode=0o755, exist_ok=True)

    def open(self, step: int = 1) -> None:
        (self._dir / f"{self.name}.{step}").touch()

    def open_all(self) -> None:
        (self._dir / f"{self.name}.all").touch()

    def shell(self, step: int = 1) -> str:
        """sh code that returns once open(step) or open_all() has been called."""
        path = f"{GATES_DIR}/{self.name}"
        return f"until [ -e {path}.{step} ] || [ -e {path}.all ]; do sleep 0.05; done"


@pytest.fixture
def new_gate(container: Container) -> Iterator[Callable[[], Gate]]:
    """Makes Gates; every one is opened at the end, so no job waits on after a failed test."""
    made: list[Gate] = []

    def new() -> Gate:
        made.append(Gate(container))
        return made[-1]

    yield new
    for gate in made:
        gate.open_all()


@pytest.fixture
async def schedules(container: Container, new_gate: Any) -> AsyncIterator[Schedules]:
    """Definitions with schedules for one test (tests/integration/schedule_kit.py); removed,
    their timers stopped, afterwards. After new_gate, so gated jobs are let go after this."""
    from tests.integration.schedule_kit import Schedules  # noqa: PLC0415 (it imports this)
    from tests.integration.test_jobs import Api  # noqa: PLC0415

    made = Schedules(container, Api(container))
    yield made
    for name in list(made.written):
        await made.remove(name)


def checkout_in_a_home(checkout: Path) -> bool:
    """Whether the checkout is under /root or /home, which automd.service's ProtectHome=yes
    hides: the test drop-in then relaxes it to ProtectHome=tmpfs (install_automd)."""
    return any(checkout.is_relative_to(home) for home in (Path("/root"), Path("/home")))


def install_automd(c: Container) -> None:
    """Install automd's group, units and test users inside; leave only the socket started."""
    checkout = c.checkout
    venv_automd = checkout / ".venv" / "bin" / "automd"
    if any(ch.isspace() or ch in "\"'\\%" for ch in str(venv_automd)):
        # Would need unit-file quoting/escaping in ExecStart=; not worth it for a test path.
        raise ContainerError(f"checkout path unsuitable for ExecStart=: {venv_automd}")

    c.run(["systemd-sysusers", str(checkout / "packaging" / "sysusers.d" / "automd.conf")])
    c.run(
        [
            "install",
            "-m",
            "0644",
            "-t",
            "/etc/systemd/system",
            str(checkout / "units" / "automd.socket"),
            str(checkout / "units" / "automd-metrics.socket"),
            str(checkout / "units" / "automd.service"),
            str(checkout / "units" / "automd-jobs.slice"),
        ]
    )
    # The shipped example definitions plus the tests' own (tests/integration/jobs.d).
    definitions = [*sorted((checkout / "etc/automd/jobs.d").glob("*.toml")),
                   *sorted((HERE / "jobs.d").glob("*.toml"))]  # fmt: skip
    c.run(["install", "-d", "-m", "0755", JOBS_DIR])
    c.run(["install", "-m", "0644", "-t", JOBS_DIR, *map(str, definitions)])

    # Only ExecStart= differs from the shipped unit, plus what makes the checkout visible to the
    # sandboxed service: CI may clone under /tmp or /root, which PrivateTmp=/ProtectHome= hide.
    # BindReadOnlyPaths= exposes just the checkout; under a home directory, systemd documents
    # ProtectHome=tmpfs (empty homes instead of inaccessible ones) as what such a bind needs.
    dropin = [
        "# Written by tests/integration/conftest.py: run the daemon from the checkout's venv.",
        "[Service]",
        "ExecStart=",
        f"ExecStart={venv_automd}",
        f"BindReadOnlyPaths={checkout}",
    ]
    if checkout_in_a_home(checkout):
        dropin.append("ProtectHome=tmpfs")
    c.write_file("/etc/systemd/system/automd.service.d/10-test.conf", "\n".join(dropin) + "\n")

    # The checkout's parents inside the container are nspawn's throwaway directories (e.g. a
    # 0700 /root tmpfs); let the test users traverse them to reach the venv's automctl.
    for parent in checkout.parents:
        if parent != Path("/"):
            c.run(["chmod", "o+x", str(parent)])
    c.run(["useradd", "-m", "-G", "automd", TEST_USER])
    c.run(["useradd", "-m", OTHER_USER])
    # Group automd-admin comes from the shipped sysusers.d entry, like group automd.
    c.run(["useradd", "-m", "-G", f"automd,{ADMIN_GROUP}", ADMIN_USER])
    install_polkit_policy(c)
    install_schedule_generator(c, dropin[-2:] if checkout_in_a_home(checkout) else dropin[-1:])
    c.run(["systemctl", "daemon-reload"])
    # Only the socket: the service is socket-activated on the first connection.
    c.run(["systemctl", "start", "automd.socket"])


def install_schedule_generator(c: Container, visible: list[str]) -> None:
    """The schedule generator, as the package installs it but under /etc (the container's /usr
    is the host's): a link to the checkout venv's script. The schedules' firing services get
    what automd.service's test drop-in gives it to see the checkout (`visible`): a drop-in
    for every unit named automd-schedule-*.service (systemd's prefix drop-ins)."""
    generator = c.checkout / ".venv" / "bin" / "automd-schedule-generator"
    c.run(["install", "-d", "-m", "0755", "/etc/systemd/system-generators"])
    c.run(["ln", "-sf", str(generator), "/etc/systemd/system-generators/"])
    c.write_file(
        "/etc/systemd/system/automd-schedule-.service.d/10-test.conf",
        "\n".join(["# Written by tests/integration/conftest.py: the checkout's automctl.",
                   "[Service]", *visible]) + "\n",
    )  # fmt: skip


def install_polkit_policy(c: Container) -> None:
    """automd's polkit policy and shipped rules, as a package would install them.

    polkit reads actions only from /usr/share/polkit-1/actions, which here is the host's /usr,
    read-only. A read-only overlay of our policy on top of it is mounted in the container's own
    mount namespace (the host's / is private, so nothing propagates to the host); the rules go
    into the container's /etc, nspawn's throwaway overlay.
    """
    checkout = c.checkout
    c.write_file(
        f"{OUR_POLKIT_ACTIONS_DIR}/org.automd.policy",
        (checkout / "polkit" / "org.automd.policy").read_bytes(),
    )
    lower = f"lowerdir={OUR_POLKIT_ACTIONS_DIR}:{POLKIT_ACTIONS_DIR}"
    c.run(["mount", "-t", "overlay", "automd-test-polkit", "-o", lower, POLKIT_ACTIONS_DIR])
    c.write_file(POLKIT_RULES, (checkout / "polkit" / "50-automd.rules").read_bytes())
    # polkit is bus-activated: if it already runs, make it read the new actions now.
    c.run(["systemctl", "try-restart", "polkit.service"])


def syscall_filter_is_set(shown: str) -> bool:
    """`systemctl show -p SystemCallFilter` of @system-service: an allow list of the calls
    ordinary services make, without the privileged ones."""
    calls = set(shown.split())
    return {"execve", "read", "write"} <= calls and not {"reboot", "init_module"} & calls


def shown_sandbox(sandbox: Mapping[str, bool | str]) -> dict[str, str]:
    """How `systemctl show` prints each sandbox property automd sets (yes/no for booleans,
    a umask with its leading zero, address families sorted, the rest as in a unit file)."""
    shown = {}
    for name, value in sandbox.items():
        if name == "SystemCallFilter":
            continue  # printed as the expanded list of calls: see syscall_filter_is_set()
        if isinstance(value, bool):
            shown[name] = "yes" if value else "no"
        elif name == "UMask":
            shown[name] = value.zfill(4)
        elif name == "RestrictAddressFamilies":  # printed sorted by name
            shown[name] = " ".join(sorted(value.split()))
        else:
            shown[name] = value
    return shown
