"""Boot the VM tier's image under qemu (TCG) once, run a command inside, read what it left.

The VM gets two 9p shares: `ci`, a fresh host directory per run (run.sh in, console.log,
status and the runner's files out), and the checkout, read-only, mounted at its own absolute
path, so the host's .venv (whose interpreter is /usr/bin/python3, Debian 12's 3.11 like the
image's) works inside unchanged. The root disk is opened with snapshot=on: every boot starts
from the cached image as built, and nothing a run writes survives it.
"""

from __future__ import annotations

import shlex
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from tests.vm.image import Image

CHECKOUT = Path(__file__).resolve().parents[2]
#: Memory and CPUs of the VM: two CPUs like the CI machines, so "every core" means two.
MEMORY = "1G"
CPUS = 2
#: Failure bound for one boot + run + poweroff (TCG: seconds become tens of seconds).
RUN_TIMEOUT = 900.0


@dataclass(frozen=True)
class Run:
    status: int | None  # run.sh's exit status; None: it never wrote one (boot failed...)
    seconds: float  # qemu start to qemu exit
    share: Path
    console: str  # the serial console (kernel, systemd and ci.service output)

    def output(self) -> str:
        """What run.sh printed (console.log in the share), or the serial console's tail."""
        log = self.share / "console.log"
        if log.exists():
            return log.read_text(errors="replace")
        return "\n".join(self.console.splitlines()[-60:])


def qemu_argv(image: Image, share: Path) -> list[str]:
    for path in (share, CHECKOUT):
        # qemu's -virtfs splits its options on ','.
        if "," in str(path):
            raise ValueError(f"cannot share a path containing ',' over 9p: {path}")
    cmdline = ("root=/dev/vda rw console=ttyS0 quiet panic=5 systemd.unified_cgroup_hierarchy=1 "
               "systemd.unit=ci.target systemd.show_status=error")  # fmt: skip
    return [
        "qemu-system-x86_64", "-accel", "tcg", "-m", MEMORY, "-smp", str(CPUS),
        "-nographic", "-nodefaults", "-no-reboot", "-serial", "stdio",
        "-kernel", str(image.kernel), "-initrd", str(image.initrd), "-append", cmdline,
        "-drive", f"file={image.root},if=virtio,format=raw,cache=unsafe,snapshot=on",
        "-virtfs", f"local,path={share},mount_tag=ci,security_model=none,id=ci",
        "-virtfs",
        f"local,path={CHECKOUT},mount_tag=src,security_model=none,id=src,readonly=on",
    ]  # fmt: skip


def run_script(command: str) -> str:
    """/ci/run.sh: mount the checkout at its own path, then run `command` there."""
    where = shlex.quote(str(CHECKOUT))
    return (
        "set -eu\n"
        f"mkdir -p {where}\n"
        f"mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144,ro src {where}\n"
        f"cd {where}\n"
        "export PYTHONDONTWRITEBYTECODE=1\n"
        f"{command}\n"
    )


def boot_and_run(image: Image, share: Path, command: str) -> Run:
    """Boot, run `command` (sh) from /ci/run.sh, wait for the VM to power itself off."""
    (share / "run.sh").write_text(run_script(command))
    started = time.monotonic()
    try:
        proc = subprocess.run(
            qemu_argv(image, share), stdin=subprocess.DEVNULL, capture_output=True,
            timeout=RUN_TIMEOUT, check=False,
        )  # fmt: skip
        output = proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as exc:  # qemu is killed: report what it printed
        output = (exc.stdout or b"") + (exc.stderr or b"")
        output += f"\n(qemu killed after {RUN_TIMEOUT:g} s)".encode()
    seconds = time.monotonic() - started
    console = output.decode(errors="replace")
    status_file = share / "status"
    status = int(status_file.read_text()) if status_file.exists() else None
    return Run(status, seconds, share, console)
