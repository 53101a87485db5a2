"""The README's two commands, verbatim, on a pristine Debian 12 (`make readme-test`, root).

Not collected by `make test` (pyproject's testpaths leave tests/readme out): it runs
`make test` itself, inside the pristine root, and takes several minutes. CI runs it after
`make test` (.ci/run). The README says so too (Testing).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from tests.readme.pristine import run_readme_commands, tail

pytestmark = [pytest.mark.readme, pytest.mark.timeout(3600)]


def test_the_two_commands_pass_on_a_pristine_debian_12(capsys: pytest.CaptureFixture[str]) -> None:
    # Never a skip: without root this test cannot prove anything, so it fails.
    assert os.geteuid() == 0, "make readme-test needs root (debootstrap, systemd-nspawn)"
    # Outside pytest's rotating temporary directories: a failed run's log stays to be read.
    fd, name = tempfile.mkstemp(prefix="automd-readme-test-", suffix=".log", dir="/var/tmp")
    os.close(fd)
    log = Path(name)
    outcome = run_readme_commands(log)
    with capsys.disabled():
        made = (
            f"debootstrap {outcome.bootstrap_seconds:.0f} s"
            if outcome.bootstrap_seconds
            else "cached"
        )
        print(
            f"\nREADME commands on {outcome.cached} ({made}): exit status {outcome.status}; "
            f"copy and clone {outcome.copy_seconds:.0f} s, commands {outcome.run_seconds:.0f} s; "
            f"log {log} (removed if it passed)"
        )
    assert outcome.status == 0, f"the README's commands failed; last lines of {log}:\n{tail(log)}"
    log.unlink()
