"""Session fixture booting one systemd container with automd's units installed, for all tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.container import Container, ContainerError

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

_BOOT_REPORT = pytest.StashKey[str]()


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
    if any(checkout.is_relative_to(home) for home in (Path("/root"), Path("/home"))):
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
    c.run(["systemctl", "daemon-reload"])
    # Only the socket: the service is socket-activated on the first connection.
    c.run(["systemctl", "start", "automd.socket"])


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
