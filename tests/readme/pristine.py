"""Run the README's two commands in a pristine Debian 12 root: `make readme-test`.

The root comes from debootstrap (bookworm, the mirror this machine's apt is configured with),
cached under CACHE_DIR between runs, and copied afresh for each run, so its /usr is a fresh
Debian's, not this machine's: whatever the commands need and do not install is found missing.
A `git clone` of the checkout (with the working tree's uncommitted files laid over it) goes
in as /root/automd, and the README's block runs there as root, verbatim.

How it runs: as the payload of an outer `systemd-nspawn --directory=<the copy>` that does not
boot (`--as-pid2` puts a stub init in front of bash). The commands boot systemd containers of
their own (tests/integration/container.py: `systemd-nspawn --directory=/ --volatile=yes`), and
nspawn inside nspawn works on these machines; those inner containers take the pristine root's
/usr, which is the point. Measured alternative: chroot with /proc, /sys and /dev bind-mounted
also works, but only once the root is itself a mount point (nspawn's MS_SLAVE remount of / fails
with EINVAL otherwise), and leaves process cleanup, the mounts and /run to us; the outer
container gets its own PID and mount namespaces, a fresh /dev, /proc and /run, and takes every
process it started down with it.
"""

from __future__ import annotations

import fcntl
import os
import re
import secrets
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[2]
README = CHECKOUT / "README.md"
#: The fenced block after this comment in README.md holds the two commands.
MARKER = "<!-- the two commands -->"
#: Outside the checkout, kept between runs: the debootstrapped root (bookworm-YYYYMMDD, the
#: newest one is used; delete the directory to make a new one). AUTOMD_TEST_CACHE moves it.
CACHE_DIR = Path(os.environ.get("AUTOMD_TEST_CACHE", "/var/cache/automd-tests"))
SUITE = "bookworm"
#: Where the checkout goes in the root: a user's clone in root's home.
CLONE = "/root/automd"
#: What the README asks of the machine besides Debian 12 and root ("with make installed").
PREREQUISITES = ("make",)
_APT_SOURCES = (Path("/etc/apt/sources.list"), Path("/etc/apt/sources.list.d"))
_NSPAWN_PROPAGATE_DIR = Path("/run/systemd/nspawn/propagate")


def readme_commands(readme: Path = README) -> str:
    """The fenced block after MARKER in the README, verbatim (without the fences)."""
    text = readme.read_text()
    match = re.search(re.escape(MARKER) + r"\s*\n```(?:sh|console)?\n(.*?)^```", text, re.M | re.S)
    if match is None:
        raise ValueError(f"{readme}: no fenced block after {MARKER!r}")
    return match.group(1)


def configured_mirror(sources: tuple[Path, ...] = _APT_SOURCES, suite: str = SUITE) -> str:
    """The first Debian mirror this machine's apt uses for `suite` (one-line or deb822 files)."""
    files: list[Path] = []
    for path in sources:
        if path.is_dir():
            files += sorted(p for p in path.iterdir() if p.suffix in (".list", ".sources"))
        elif path.exists():
            files.append(path)
    for path in files:
        text = path.read_text()
        if path.suffix == ".sources":
            for stanza in re.split(r"\n\s*\n", text):
                fields: dict[str, str] = {}
                for line in stanza.splitlines():
                    key, sep, value = line.partition(":")
                    if sep and not line.startswith(("#", " ", "\t")):
                        fields[key.strip()] = value.strip()
                if (
                    "deb" in fields.get("Types", "").split()
                    and suite in fields.get("Suites", "").split()
                    and fields.get("Enabled", "yes") != "no"
                ):
                    return fields["URIs"].split()[0]
        else:
            for line in text.splitlines():
                words = re.sub(r"\[[^]]*\]", "", line).split()  # drop [ options ]
                if len(words) >= 3 and words[0] == "deb" and words[2] == suite:
                    return words[1]
    raise RuntimeError(f"no apt source for {suite} in {', '.join(map(str, sources))}")


def cached_root(log: Path) -> tuple[Path, float | None]:
    """The cached debootstrapped root, made first if there is none; and debootstrap's time
    in seconds when it ran now. Built under a temporary name, renamed once complete."""
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    # One builder at a time: a second run waits here and then reuses what the first made.
    with (CACHE_DIR / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        existing = sorted(CACHE_DIR.glob(f"{SUITE}-[0-9]*[0-9]"))
        if existing:
            return existing[-1], None
        if shutil.which("debootstrap") is None:
            raise RuntimeError("debootstrap is missing (packaging/apt-packages.txt: make venv)")
        target = CACHE_DIR / f"{SUITE}-{datetime.now(UTC):%Y%m%d}"
        partial = target.with_name(target.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        mirror = configured_mirror()
        started = time.monotonic()
        with log.open("ab") as out:
            subprocess.run(
                ["debootstrap", f"--include={','.join(PREREQUISITES)}", SUITE, str(partial),
                 mirror],
                stdout=out, stderr=subprocess.STDOUT, check=True,
            )  # fmt: skip
        seconds = time.monotonic() - started
        partial.rename(target)
        return target, seconds


def fresh_copy(cached: Path, parent: Path) -> Path:
    """A throwaway copy of the cached root (cp -a keeps owners, modes, devices, links)."""
    root = parent / "root"
    subprocess.run(["cp", "-a", "--reflink=auto", str(cached), str(root)], check=True)
    return root


def clone_checkout(root: Path) -> Path:
    """`git clone` of the checkout at CLONE in root, with the working tree's tracked changes
    and untracked, not ignored, files copied over it: what is tested is what is here."""
    clone = root / CLONE.lstrip("/")
    subprocess.run(["git", "clone", "--quiet", str(CHECKOUT), str(clone)], check=True)
    listed = subprocess.run(
        ["git", "-C", str(CHECKOUT), "ls-files", "-z", "--cached", "--others",
         "--exclude-standard"],
        check=True, capture_output=True,
    ).stdout.decode()  # fmt: skip
    for name in filter(None, listed.split("\0")):
        source, dest = CHECKOUT / name, clone / name
        if source.is_file() and not source.is_symlink():
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest)
        elif not source.exists() and not source.is_symlink():
            dest.unlink(missing_ok=True)  # deleted here, not committed yet
    return clone


def run_in_root(root: Path, script: str, log: Path, *, timeout: float) -> int:
    """Run script with bash -e as root in the root's CLONE, in a non-booted outer container;
    its output goes to log. The exit status of the script."""
    (root / "root" / "the-two-commands.sh").write_text(script)
    name = f"automd-readme-{os.getpid()}-{secrets.token_hex(3)}"
    argv = [
        # If this process dies, nspawn gets SIGTERM and takes the container down.
        "setpriv", "--pdeathsig=TERM",
        "systemd-nspawn", "--quiet", f"--directory={root}", f"--machine={name}",
        # No machined and no host systemd to register with or to create a scope in.
        "--register=no", "--keep-unit",
        # A stub init as PID 1 reaps and forwards signals; bash is PID 2.
        "--as-pid2",
        # This machine's network as is: the Debian mirror and PyPI.
        "--resolv-conf=copy-host",
        *_host_trust(),
        f"--chdir={CLONE}", "--setenv=HOME=/root", "--setenv=LANG=C.UTF-8",
        "bash", "-e", "/root/the-two-commands.sh",
    ]  # fmt: skip
    try:
        with log.open("ab") as out:
            proc = subprocess.run(
                argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                timeout=timeout, start_new_session=True, check=False,
            )  # fmt: skip
    finally:
        # nspawn leaves this directory behind when its payload started containers itself.
        shutil.rmtree(_NSPAWN_PROPAGATE_DIR / name, ignore_errors=True)
    return proc.returncode


def _host_trust() -> list[str]:
    """This machine's TLS trust for pip, when it has its own (PIP_CERT or SSL_CERT_FILE).

    Where HTTPS goes through an intercepting proxy, the machine trusts its CA and points
    tools at that bundle; a fresh Debian's ca-certificates does not know it, and pip, the one
    client here that speaks HTTPS (apt uses the http mirror), would fail. Like resolv.conf,
    it is the site's network, not something the README's commands should bring.
    """
    bundle = os.environ.get("PIP_CERT") or os.environ.get("SSL_CERT_FILE")
    if not bundle or not Path(bundle).is_file():
        return []
    inside = "/run/host-trust/ca-certificates.crt"
    return [f"--bind-ro={Path(bundle).resolve()}:{inside}", f"--setenv=PIP_CERT={inside}"]


def tail(path: Path, lines: int = 60) -> str:
    data = path.read_bytes().decode(errors="replace").splitlines()
    return "\n".join(data[-lines:])


@dataclass(frozen=True)
class Outcome:
    status: int  # the block's exit status
    cached: Path  # the debootstrapped root used
    bootstrap_seconds: float | None  # debootstrap's time, when it ran now
    copy_seconds: float  # the fresh copy and the clone
    run_seconds: float  # the two commands


def run_readme_commands(log: Path, *, timeout: float = 3600) -> Outcome:
    """The README's block in a fresh copy of the cached root (made first if missing)."""
    cached, bootstrap = cached_root(log)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="automd-readme-", dir="/var/tmp") as tmp:
        root = fresh_copy(cached, Path(tmp))
        clone_checkout(root)
        copied = time.monotonic()
        status = run_in_root(root, readme_commands(), log, timeout=timeout)
        ran = time.monotonic()
    return Outcome(status, cached, bootstrap, copied - started, ran - copied)
