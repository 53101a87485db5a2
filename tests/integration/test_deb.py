"""The Debian package (`make deb`) in a real systemd: installed with dpkg -i, it serves jobs;
an upgrade leaves a running job running and the jobs database in place; remove and purge
clean up what they should.

The container shares the host's /usr, where dpkg installs, so these tests boot their own:
/usr with a throwaway writable overlay (Container(writable=...)), and a copy of the host's
dpkg database in the container's empty /var, which lets dpkg check the package's dependencies
against what the host has. Nothing reaches the host. The package is built once per session
(packaging/build-deb.sh, lintian included); each test installs it into a fresh container,
which costs a few seconds.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import CHECKOUT, HERE, TEST_USER, Gate, wait_for
from tests.integration.container import Container

# Building the package (a venv from PyPI, lintian) happens in the first test's setup.
pytestmark = pytest.mark.timeout(900)

DEB_INSIDE = "/var/tmp/automd.deb"
EXAMPLES = "/usr/share/doc/automd/examples/jobs.d"
JOBS_DIR = "/etc/automd/jobs.d"
DPKG_DATABASE = Path("/var/lib/dpkg")


@pytest.fixture(scope="session")
def deb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """automd_<version>_<arch>.deb, built by `make deb`'s script once per session."""
    out = tmp_path_factory.mktemp("deb")
    started = time.monotonic()
    built = subprocess.run(
        [str(CHECKOUT / "packaging" / "build-deb.sh"), str(out)],
        capture_output=True,
        text=True,
        timeout=840,
        check=False,
    )
    assert built.returncode == 0, f"make deb failed:\n{built.stdout}\n{built.stderr}"
    path = Path(built.stdout.strip().splitlines()[-1])
    print(f"built {path.name} ({path.stat().st_size / 1e6:.1f} MB) in "
          f"{time.monotonic() - started:.0f} s")  # fmt: skip
    return path


@pytest.fixture(autouse=True)
def shared_units_intact() -> None:
    """These tests use containers of their own, not the shared one conftest.py checks."""


@pytest.fixture
def host(deb: Path, tmp_path: Path) -> Iterator[Container]:
    """A fresh container, the package installed in it with dpkg -i, hello.toml enabled."""
    with Container(CHECKOUT, writable=["/usr"], log_path=tmp_path / "nspawn.log") as c:
        shutil.copytree(DPKG_DATABASE, c.root / DPKG_DATABASE.relative_to("/"), symlinks=True)
        # The build machines' /usr has a Docker-style policy-rc.d that forbids starting
        # services from maintainer scripts; a real host has none. Removed in the overlay only.
        c.run(["rm", "-f", "/usr/sbin/policy-rc.d"])
        shutil.copyfile(deb, c.root / DEB_INSIDE.lstrip("/"))
        started = time.monotonic()
        c.run(["dpkg", "-i", DEB_INSIDE], timeout=300)
        print(f"dpkg -i: {time.monotonic() - started:.2f} s")
        # Definitions are the admin's choice: the package ships examples, enables none.
        c.run(["install", "-m", "0644", f"{EXAMPLES}/hello.toml", JOBS_DIR])
        c.run(["useradd", "-m", "-G", "automd", TEST_USER])
        yield c


def automctl(c: Container, *args: str) -> dict[str, object]:
    """The installed /usr/bin/automctl as a member of group automd, with --json: its answer."""
    result = c.run(["automctl", "--json", *args], user=TEST_USER, timeout=120)
    answer: dict[str, object] = json.loads(result.stdout)
    return answer


def job_state(c: Container, job_id: str) -> dict[str, object]:
    job = automctl(c, "status", job_id)["job"]
    assert isinstance(job, dict)
    return job


def daemon_log(c: Container) -> str:
    """automd's own journal, for an assertion's message."""
    return c.run(["journalctl", "--no-pager", "-u", "automd.service", "-n", "60"]).stdout.decode()


def state(c: Container, unit: str) -> tuple[str, str]:
    result = c.run(["systemctl", "is-enabled", unit], check=False).stdout.decode().strip()
    return result, c.show(unit, "ActiveState")["ActiveState"]


def test_installed_package_serves_jobs(host: Container) -> None:
    assert state(host, "automd.socket") == ("enabled", "active")
    # Started only by the socket, on the first connection.
    assert state(host, "automd.service") == ("indirect", "inactive")
    assert state(host, "automd-metrics.socket") == ("disabled", "inactive")
    units = host.show("automd.service", "FragmentPath", "ExecStart")
    assert units["FragmentPath"] == "/lib/systemd/system/automd.service"
    assert "path=/usr/bin/automd " in units["ExecStart"]

    job = automctl(host, "run", "hello", "name=Debian", "--wait")["job"]
    assert isinstance(job, dict)
    assert job["state"] == "succeeded"
    output = host.journal(f"AUTOMD_JOB_ID={job['id']}", "_TRANSPORT=stdout")
    assert [entry["MESSAGE"] for entry in output] == ["Hello, Debian!"]
    assert host.show("automd.service", "ActiveState")["ActiveState"] == "active"

    # What else the package puts where the system looks for it.
    for path in (
        "/usr/share/man/man1/automctl.1.gz",
        "/usr/share/man/man8/automd.8.gz",
        "/usr/share/man/man1/automd-stdio-bridge.1.gz",
        "/usr/share/bash-completion/completions/automctl",
        "/usr/share/zsh/vendor-completions/_automctl",
        "/usr/share/polkit-1/actions/org.automd.policy",
        "/usr/share/polkit-1/rules.d/50-automd.rules",
        "/usr/share/doc/automd/README.md",
        "/usr/share/cockpit/automd/manifest.json",  # the Cockpit page (docs/cockpit.md)
        "/usr/share/cockpit/automd/index.html",
    ):
        host.run(["test", "-s", path])
    conffiles = host.run(["dpkg-query", "-W", "-f=${Conffiles}", "automd"]).stdout.decode()
    assert "/etc/automd/automd.toml" in conffiles

    # What `automctl -H` runs over ssh (docs/fleet.md): one request in, automd's answer out.
    body = b'{"jsonrpc":"2.0","method":"system.version","id":1}'
    head = b"POST /rpc HTTP/1.1\r\nHost: automd\r\nContent-Type: application/json\r\n"
    request = head + b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    bridged = host.run(["automd-stdio-bridge"], user=TEST_USER, input=request)
    assert bridged.stdout.startswith(b"HTTP/1.1 200 ")
    assert b'"api_version":' in bridged.stdout


def test_upgrade_keeps_a_running_job_and_the_database(host: Container) -> None:
    host.run(["install", "-m", "0644", str(HERE / "jobs.d" / "gated.toml"), JOBS_DIR])
    host.run(["systemctl", "reload-or-restart", "automd.service"])
    earlier = automctl(host, "run", "hello", "--wait")["job"]
    assert isinstance(earlier, dict)
    gate = Gate(host)
    job = automctl(host, "run", "gated", f"gate={gate.name}")["job"]
    assert isinstance(job, dict)
    job_id = str(job["id"])
    wait_for("the gated job running", lambda: job_state(host, job_id)["state"], "running".__eq__)
    unit = wait_for(
        "the job's unit",
        lambda: (
            host.run(["systemctl", "list-units", "--plain", "--no-legend", "automd-gated-*"])
            .stdout.decode()
            .split()
        ),
    )[0]
    before = {
        "job": host.show(unit, "InvocationID")["InvocationID"],
        "socket": host.show("automd.socket", "InvocationID")["InvocationID"],
        "daemon": host.show("automd.service", "MainPID")["MainPID"],
    }

    started = time.monotonic()
    host.run(["dpkg", "-i", DEB_INSIDE], timeout=300)
    print(f"dpkg -i (upgrade): {time.monotonic() - started:.2f} s")

    # The socket was left alone; automd was restarted onto the new files; the job ran on.
    assert host.show("automd.socket", "InvocationID")["InvocationID"] == before["socket"]
    assert host.show(unit, "InvocationID", "ActiveState") == {
        "InvocationID": before["job"],
        "ActiveState": "active",
    }
    daemon = host.show("automd.service", "MainPID", "ActiveState")
    assert daemon["ActiveState"] == "active"
    assert daemon["MainPID"] != before["daemon"]

    gate.open()
    finished = wait_for(
        "the gated job recorded as finished",
        lambda: job_state(host, job_id),
        lambda job: job["state"] != "running",
    )
    assert finished["state"] == "succeeded", daemon_log(host)
    assert job_state(host, str(earlier["id"]))["state"] == "succeeded"


def test_remove_stops_and_removes_purge_deletes_the_state(host: Container) -> None:
    automctl(host, "run", "hello", "--wait")
    host.run(["test", "-s", "/var/lib/automd/automd.db"])

    host.run(["dpkg", "-r", "automd"])
    for unit in ("automd.socket", "automd.service", "automd-metrics.socket"):
        assert host.show(unit, "LoadState", "ActiveState") == {
            "LoadState": "not-found",
            "ActiveState": "inactive",
        }, unit
    for gone in ("/run/automd.sock", "/usr/bin/automd", "/usr/lib/automd"):
        host.run(["test", "!", "-e", gone])
    # Removal keeps the state and the configuration.
    host.run(["test", "-s", "/var/lib/automd/automd.db"])
    host.run(["test", "-s", "/etc/automd/automd.toml"])

    host.run(["dpkg", "-P", "automd"])
    for gone in (
        "/var/lib/automd",
        "/etc/automd/automd.toml",
        "/etc/systemd/system/sockets.target.wants/automd.socket",
    ):
        host.run(["test", "!", "-e", gone])
