"""The README's two commands stay extractable, CI runs the test one, and make brings the
Debian packages (packaging/ensure-apt-packages) without touching a prepared machine.

The commands themselves run on a pristine Debian 12 in tests/readme (make readme-test).
"""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

from tests.readme.pristine import CHECKOUT, configured_mirror, readme_commands

ENSURE = CHECKOUT / "packaging" / "ensure-apt-packages"


def test_the_readme_block_is_make_demo_then_make_test() -> None:
    lines = readme_commands().splitlines()
    assert [shlex.split(line, comments=True) for line in lines] == [
        ["make", "demo"],
        ["make", "test"],
    ]


def test_ci_runs_the_readme_test_command_and_installs_nothing_itself() -> None:
    script = (CHECKOUT / ".ci" / "run").read_text()
    commands = [line.strip() for line in script.splitlines()
                if line.strip() and not line.lstrip().startswith("#")]  # fmt: skip
    # Then the README's commands on a pristine Debian 12, then the VM tier (docs/testing-vm.md).
    assert commands[commands.index("make test") :] == [
        "make test", "make readme-test", "make vm-test",
    ]  # fmt: skip
    assert not any("apt-get" in command for command in commands), commands


def test_the_mirror_is_read_from_deb822_and_one_line_sources(tmp_path: Path) -> None:
    listd = tmp_path / "sources.list.d"
    listd.mkdir()
    (listd / "debian.sources").write_text(
        "Types: deb\n# a comment\nURIs: http://security.example/debian-security\n"
        "Suites: bookworm-security\nComponents: main\n\n"
        "Types: deb deb-src\nURIs: http://mirror.example/debian\n"
        "Suites: bookworm bookworm-updates\nComponents: main\n"
    )
    assert configured_mirror((tmp_path / "sources.list", listd)) == "http://mirror.example/debian"
    one_line = tmp_path / "one.list"
    one_line.write_text(
        "deb-src http://src.example/debian bookworm main\n"
        "deb [arch=amd64 signed-by=/k.gpg] http://one.example/debian bookworm main\n"
    )
    assert configured_mirror((one_line,)) == "http://one.example/debian"


def _ensure(tmp_path: Path, packages: str) -> subprocess.CompletedProcess[str]:
    """ensure-apt-packages as a non-root user would run it, with apt-get made to fail loudly."""
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "id").write_text("#!/bin/sh\necho 1000\n")
    (fake / "apt-get").write_text("#!/bin/sh\necho apt-get ran >&2\nexit 99\n")
    for tool in fake.iterdir():
        tool.chmod(0o755)
    listing = tmp_path / "packages.txt"
    listing.write_text(f"# a comment\n\n{packages}\n")
    env = dict(os.environ, PATH=f"{fake}:{os.environ['PATH']}")
    return subprocess.run(
        [str(ENSURE), str(listing)], env=env, capture_output=True, text=True, check=False
    )


def test_nothing_missing_touches_nothing(tmp_path: Path) -> None:
    done = _ensure(tmp_path, "dpkg\ncoreutils")  # installed on every Debian
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


def test_missing_packages_without_root_are_named_with_the_command(tmp_path: Path) -> None:
    done = _ensure(tmp_path, "dpkg\nautomd-no-such-package  \nautomd-nor-this")
    assert done.returncode == 1
    assert "apt-get ran" not in done.stderr
    assert "missing here: automd-no-such-package automd-nor-this" in done.stderr
    assert "apt-get install automd-no-such-package automd-nor-this" in done.stderr
