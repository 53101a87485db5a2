"""Three throwaway hosts reached with real ssh and no IP traffic, for automctl -H and Ansible.

Each host is a container of its own (container.py) with automd installed as for every
integration test, and automd-stdio-bridge on its PATH. ssh on the test machine reaches a host
through a ProxyCommand that starts `sshd -i` inside that container (nsenter), so the session
speaks over the ProxyCommand's pipes: no network, no listening sshd. The host keys and the
users' keys are made by the fixture in a temporary directory, and known_hosts names each
host's own key: host keys are checked strictly, as against a real fleet.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.integration.conftest import ADMIN_USER, CHECKOUT, OTHER_USER, TEST_USER, install_automd
from tests.integration.container import Container

HOSTS = ("host1", "host2", "host3")
#: sshd's own files inside each host (nspawn's throwaway /etc).
SSHD_DIR = "/etc/ssh/automd-test"
BRIDGE = "automd-stdio-bridge"
#: automctl on the test machine, the client side of the fleet.
AUTOMCTL = str(Path(sys.executable).parent / "automctl")
#: The restricted-key recipe of docs/fleet.md: this key reaches automd and nothing else.
RESTRICTED = f'command="{BRIDGE}",restrict'
#: Whose key is restricted: the admin's, as a CI runner's would be.
RESTRICTED_USERS = (ADMIN_USER,)


@dataclass
class Fleet:
    """The hosts by name, and how to reach them: `ssh -F ssh_config` (AUTOMD_SSH)."""

    hosts: dict[str, Container]
    keys: Path

    @property
    def ssh_config(self) -> Path:
        return self.keys / "ssh_config"

    @property
    def ssh(self) -> str:
        """$AUTOMD_SSH for automctl: ssh with this fleet's configuration."""
        return f"ssh -F {self.ssh_config}"

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOMD_")}
        return {**env, "AUTOMD_SSH": self.ssh, **extra}

    def automctl(
        self, *args: str, timeout: float = 120, **env: str
    ) -> subprocess.CompletedProcess[str]:
        """automctl on the test machine, with the fleet's ssh; not checked."""
        return subprocess.run(
            [AUTOMCTL, *args], capture_output=True, text=True, timeout=timeout,
            env=self.env(**env), check=False,
        )  # fmt: skip

    def popen(self, *args: str) -> subprocess.Popen[bytes]:
        """automctl started, its output in bytes (a job's output need not be UTF-8)."""
        return subprocess.Popen(
            [AUTOMCTL, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=self.env()
        )


def _keygen(path: Path, comment: str) -> str:
    """A new ed25519 key pair at path (no passphrase); its public line."""
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    return path.with_suffix(".pub").read_text().strip()


def _boot(keys: Path, name: str) -> Container:
    # /usr/local writable (a throwaway overlay) to put the bridge on sshd's default PATH.
    host = Container(CHECKOUT, log_path=keys / f"{name}-nspawn.log", writable=("/usr/local",))
    host.start()
    try:
        install_automd(host)
        host.run(
            ["ln", "-sf", str(CHECKOUT / ".venv" / "bin" / BRIDGE), f"/usr/local/bin/{BRIDGE}"]
        )
        # No per-user service managers: pam_systemd starts one for each ssh user, and in this
        # container stopping one at poweroff could hang past Container.stop's grace (seen:
        # user@1003.service stuck reaching exit.target). automd never needs them, nor do the
        # sessions (pam_systemd is optional in Debian's PAM stack).
        host.run(["systemctl", "mask", "--runtime", "user@.service"])
    except BaseException:
        host.stop()
        raise
    return host


def _install_sshd(host: Container, name: str, keys: Path, users: dict[str, str]) -> str:
    """sshd's configuration and host key inside; users' authorized keys. The known_hosts line."""
    host_key = keys / f"{name}_host_key"
    public = _keygen(host_key, name)
    host.write_file(f"{SSHD_DIR}/host_key", host_key.read_bytes(), mode=0o600)
    host.write_file(
        f"{SSHD_DIR}/sshd_config",
        "\n".join([
            f"HostKey {SSHD_DIR}/host_key",
            "AuthorizedKeysFile .ssh/authorized_keys",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PermitRootLogin no",
            "UsePAM yes",
            "LogLevel VERBOSE",
            "",
        ]),
    )  # fmt: skip
    host.run(["install", "-d", "-m", "0755", "/run/sshd"])  # sshd's privilege separation
    for user, key in users.items():
        account = host.user(user)
        line = f"{RESTRICTED} {key}" if user in RESTRICTED_USERS else key
        ssh_dir = f"{account.home}/.ssh"
        host.run(["install", "-d", "-m", "0700", "-o", user, "-g", str(account.gid), ssh_dir])
        host.write_file(f"{ssh_dir}/authorized_keys", line + "\n", mode=0o600)
        host.run(["chown", f"{user}:{account.gid}", f"{ssh_dir}/authorized_keys"])
    return f"{name} {public}"


def _ssh_config(fleet: Fleet) -> str:
    lines = []
    for name, host in fleet.hosts.items():
        sshd = f"/usr/sbin/sshd -i -f {SSHD_DIR}/sshd_config"
        # nohup: ssh ends its ProxyCommand with SIGHUP. nsenter killed so would leave its child
        # sshd a zombie in the host's pid namespace that the host's init reaps late, and the
        # host's poweroff waits for it; ignoring SIGHUP, nsenter reaps sshd once the stream ends.
        proxy = f"nohup nsenter -t {host.pid1} -a {sshd}"
        lines += [f"Host {name}", f"  ProxyCommand {proxy}", ""]
    lines += [
        "Host *",
        f"  IdentityFile {fleet.keys}/%r_key",
        "  IdentitiesOnly yes",
        f"  UserKnownHostsFile {fleet.keys}/known_hosts",
        "  GlobalKnownHostsFile /dev/null",
        "  StrictHostKeyChecking yes",
        "  BatchMode yes",
        "",
    ]
    return "\n".join(lines)


@contextlib.contextmanager
def booted_fleet(keys: Path) -> Iterator[Fleet]:
    users = {
        user: _keygen(keys / f"{user}_key", user) for user in (TEST_USER, OTHER_USER, ADMIN_USER)
    }
    hosts: dict[str, Container] = {}
    with contextlib.ExitStack() as stack:
        # One after the other, from this thread: nspawn runs with a parent-death signal, and
        # the parent that counts is the thread that started it (a pool's would end).
        for name in HOSTS:
            hosts[name] = _boot(keys, name)
            stack.callback(hosts[name].stop)
        known = [_install_sshd(host, name, keys, users) for name, host in hosts.items()]
        (keys / "known_hosts").write_text("\n".join(known) + "\n")
        fleet = Fleet(hosts=hosts, keys=keys)
        fleet.ssh_config.write_text(_ssh_config(fleet))
        yield fleet
