"""automctl -H's transport without a host: the destination, the ssh command line, how an
ssh exit status becomes automctl's, and the stdio bridge against a stand-in automd."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from automd.ctl.client import RpcClient
from automd.ctl.errors import ConnectPermissionDenied, DaemonUnreachable, HostUnreachable
from automd.ctl.exits import Exit, exit_for
from automd.ctl.main import main
from automd.ctl.transport import (
    Destination,
    SshTransport,
    UnixTransport,
    ssh_command,
    transport_for,
)
from tests.unit.fake_automd import fake_automd

BRIDGE = str(Path(sys.executable).parent / "automd-stdio-bridge")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("web1", Destination("web1")),
        ("alice@web1.example.org", Destination("web1.example.org", "alice")),
        ("alice@10.0.0.5:2222", Destination("10.0.0.5", "alice", 2222)),
        ("[::1]:22", Destination("::1", None, 22)),
        ("ci-runner@[fe80::1]", Destination("fe80::1", "ci-runner")),
    ],
)
def test_destinations_parse_and_print_back(text: str, expected: Destination) -> None:
    assert Destination.parse(text) == expected
    assert str(expected) == text


@pytest.mark.parametrize(
    "text", ["", "-oProxyCommand=x", "a b", "alice@", "@host", "host:0", "host:65536", "h;id"]
)
def test_destinations_that_could_be_options_or_shell_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="is not"):
        Destination.parse(text)


def test_the_ssh_command_line() -> None:
    dest = Destination("web1", "alice", 2222)
    assert ssh_command(dest, {}) == [
        "ssh", "-xT", "-p", "2222", "-l", "alice", "--", "web1", "automd-stdio-bridge"
    ]  # fmt: skip
    configured = ssh_command(Destination("web1"), {"AUTOMD_SSH": "/opt/ssh -F '/a b/config'"})
    assert configured == ["/opt/ssh", "-F", "/a b/config", "-xT", "--", "web1",
                          "automd-stdio-bridge"]  # fmt: skip


def test_host_beats_socket_env_and_excludes_socket_option(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTOMD_SOCKET", "/tmp/x.sock")
    monkeypatch.delenv("AUTOMD_HOST", raising=False)
    assert isinstance(transport_for(None, None), UnixTransport)
    assert transport_for(None, None).label == "/tmp/x.sock"
    monkeypatch.setenv("AUTOMD_HOST", "bob@web2")
    assert transport_for(None, None).label == "bob@web2"
    assert transport_for("web3", None).label == "web3"
    with pytest.raises(ValueError, match="exclude"):
        transport_for("web3", "/run/automd.sock")


def _failing_ssh(status: int, said: str) -> SshTransport:
    """A transport whose "ssh" only says something and exits with `status`."""
    script = f"echo {said!r} >&2; exit {status}"
    return SshTransport(Destination("web1"), ["sh", "-c", script, "ssh"])


@pytest.mark.parametrize(
    ("status", "said", "error", "exit"),
    [
        (255, "ssh: connect to host web1 port 22: Connection refused", HostUnreachable,
         Exit.NOHOST),
        (127, "sh: 1: automd-stdio-bridge: not found", DaemonUnreachable, Exit.UNAVAILABLE),
        (77, "automd-stdio-bridge: /run/automd.sock: permission denied",
         ConnectPermissionDenied, Exit.NOPERM),
        (69, "automd-stdio-bridge: /run/automd.sock: No such file or directory",
         DaemonUnreachable, Exit.UNAVAILABLE),
    ],
)  # fmt: skip
def test_an_ssh_session_that_ends_unanswered_says_why(
    status: int, said: str, error: type[Exception], exit: Exit
) -> None:
    client = RpcClient(_failing_ssh(status, said), timeout=30)
    try:
        with pytest.raises(error) as raised:
            client.call("system.version")
    finally:
        client.close()
    assert said in str(raised.value)
    assert str(raised.value).startswith("web1: ")
    assert exit_for(raised.value) == exit  # type: ignore[arg-type]


def test_an_ssh_that_cannot_be_run_is_exit_68() -> None:
    client = RpcClient(SshTransport(Destination("web1"), ["/nonexistent/ssh"]), timeout=5)
    with pytest.raises(HostUnreachable, match="cannot run /nonexistent/ssh") as raised:
        client.call("system.version")
    assert exit_for(raised.value) == Exit.NOHOST


@pytest.fixture
def automd_socket(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "automd.sock"
    methods = {"system.version": lambda p: {"automd": "0.1.0"}, "job.list": lambda p: {"n": 1}}
    with fake_automd(path, methods):
        yield path


def test_calls_over_the_bridge(automd_socket: Path) -> None:
    # "ssh" here runs the bridge locally: the transport and the bridge, end to end. The
    # stand-in closes each connection after its answer (HTTP/1.0), so each call starts a
    # session (against automd one serves them all: tests/integration/test_fleet.py).
    local = ["env", f"AUTOMD_SOCKET={automd_socket}", BRIDGE]
    transport = SshTransport(Destination("web1"), local)
    client = RpcClient(transport, timeout=30)
    try:
        assert client.call("system.version") == {"automd": "0.1.0"}
        assert client.call("job.list") == {"n": 1}
        assert 1 <= len(transport._sessions) <= 2  # the first is reaped once it has ended
    finally:
        client.close()
    assert transport._sessions == []  # every session waited for


def test_the_bridge_without_automd_exits_69(tmp_path: Path) -> None:
    done = subprocess.run(
        [BRIDGE], env={"AUTOMD_SOCKET": str(tmp_path / "none.sock")}, input=b"",
        capture_output=True, timeout=30, check=False,
    )  # fmt: skip
    assert done.returncode == 69
    assert b"none.sock" in done.stderr
    assert b"is automd.socket running?" in done.stderr


def test_the_bridge_takes_no_arguments_but_help() -> None:
    shown = subprocess.run([BRIDGE, "--help"], capture_output=True, timeout=30, check=False)
    assert shown.returncode == 0
    assert b'command="automd-stdio-bridge",restrict' in shown.stdout
    wrong = subprocess.run([BRIDGE, "--socket=x"], capture_output=True, timeout=30, check=False)
    assert wrong.returncode == 2


def test_with_a_host_a_user_name_is_refused_before_ssh_runs(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # A name resolves on this machine; the host's user of that name may have another uid.
    monkeypatch.setenv("AUTOMD_SSH", "/nonexistent/ssh")  # would be exit 68 if it ran
    assert main(["-H", "web1", "list", "--user", "root"]) == Exit.USAGE
    assert "give a uid with -H" in capsys.readouterr().err
    assert main(["-H", "web1", "list", "--user", "0"]) == Exit.NOHOST


def test_socket_and_host_exclude_each_other(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-H", "web1", "--socket", "/run/automd.sock", "version"]) == Exit.USAGE
    assert "exclude each other" in capsys.readouterr().err
