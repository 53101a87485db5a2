"""`make demo`: boot a throwaway systemd, install automd, and run example jobs end to end.

Works on a machine without systemd as PID 1 (like CI); needs root for systemd-nspawn.
"""

from __future__ import annotations

import re
import shlex
import sys
from collections.abc import Callable
from pathlib import Path

from tests.integration.conftest import CHECKOUT, TEST_USER, install_automd
from tests.integration.container import Container

AUTOMCTL = str(CHECKOUT / ".venv" / "bin" / "automctl")


def run_demo(c: Container, say: Callable[[str], None]) -> str:
    """Show automd at work inside `c`; returns the id of the job it ran."""

    def show(cmd: list[str], *, user: str | None = None) -> str:
        prompt = f"{user or 'root'}@container$"
        # Quoted as a user would type it: shlex.split() of the line gives cmd back.
        say(f"\n{prompt} {shlex.join(cmd)}")
        result = c.run(cmd, user=user, check=False, timeout=120)
        text = (result.stdout + result.stderr).decode(errors="replace").rstrip()
        say(text)
        say(f"(exit status {result.returncode})")
        return text

    show(["systemctl", "status", "--no-pager", "automd.socket"])
    show([AUTOMCTL, "version"], user=TEST_USER)
    out = show([AUTOMCTL, "run", "hello", "name=automd demo", "--wait"], user=TEST_USER)
    match = re.search(r"Job (\w{26})", out)
    if match is None:
        raise RuntimeError(f"no job id in: {out}")
    job_id = match.group(1)
    show([AUTOMCTL, "status", job_id], user=TEST_USER)
    c.sync_journal()  # the ended job's output is all stored, whatever journald's lag
    show(["journalctl", "--no-pager", "-o", "short", f"AUTOMD_JOB_ID={job_id}"])
    show([AUTOMCTL, "run", "fail", "code=3", "--wait"], user=TEST_USER)
    show(["systemctl", "status", "--no-pager", "automd.service"])
    return job_id


def main() -> int:
    with Container(CHECKOUT, log_path=Path("/tmp/automd-demo-nspawn.log")) as c:
        print(f"booted a throwaway systemd ({c.name}) in {c.boot_seconds:.2f}s")
        install_automd(c)
        run_demo(c, print)
    print("\ncontainer stopped; nothing was left behind on this machine")
    return 0


if __name__ == "__main__":
    sys.exit(main())
