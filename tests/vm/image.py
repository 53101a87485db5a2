"""The VM tier's Debian 12 image: built once with mmdebstrap, cached outside the checkout.

`python -m tests.vm.image` builds it (or says which cached one it would use). What is in it:
Debian 12 minbase with the packages automd needs at run time (systemd, dbus, polkitd, python3
3.11, the same minor version as the host's /usr/bin/python3, so the host venv's compiled wheels
load inside), a kernel whose initrd holds just the virtio and ext4 modules (9p is loaded from the
root), and ci.target: mount the 9p share `ci` at /ci, run /ci/run.sh, write its exit status into
the share, power off. automd itself is not in the image: the checkout (with its .venv) is shared
read-only at its own absolute path for each run (tests/vm/machine.py), so the image only
changes with the recipe below (recipe_hash).

Cached as CACHE_DIR/vm-bookworm-<date>-<recipe hash>/ (root.img, vmlinux, initrd.img), the
readme tier's cache directory (AUTOMD_TEST_CACHE), whose lock it shares; a changed recipe makes
a new one, delete old ones by hand.
"""

from __future__ import annotations

import fcntl
import hashlib
import inspect
import lzma
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from tests.readme.pristine import CACHE_DIR, configured_mirror

SUITE = "bookworm"
#: Debian packages in the image. python3 must be 3.11 like the host's (the shared venv).
PACKAGES = (
    "systemd", "systemd-sysv", "dbus", "polkitd", "libsystemd0", "python3", "udev", "kmod",
    "procps", "passwd", "util-linux", "linux-image-amd64", "initramfs-tools", "zstd",
)  # fmt: skip
#: The initrd only needs to find the root disk; 9p is loaded from the root afterwards.
INITRD_MODULES = ("virtio_pci", "virtio_blk", "ext4")
#: Kernel module trees nothing in a TCG guest with virtio disks and 9p uses (image size).
PRUNED_MODULES = (
    "drivers/gpu", "drivers/media", "drivers/net/wireless", "drivers/net/ethernet",
    "drivers/infiniband", "drivers/staging", "drivers/bluetooth", "drivers/iio", "sound",
)  # fmt: skip
IMAGE_SIZE = "2G"

CI_TARGET = """\
[Unit]
Description=automd VM test run (tests/vm)
Requires=basic.target
Wants=ci.service
After=basic.target
AllowIsolate=yes
"""
CI_SERVICE = """\
[Unit]
Description=Run /ci/run.sh from the 9p share ci, then power off
After=basic.target
SuccessAction=poweroff-force
FailureAction=poweroff-force

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/ci-run
StandardOutput=journal+console
StandardError=journal+console
"""
CI_RUN = """\
#!/bin/sh
# Written by tests/vm/image.py. The host reads /ci/status; /ci/console.log has the output.
set -u
mkdir -p /ci
modprobe 9pnet_virtio
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 ci /ci || exit 1
sh /ci/run.sh > /ci/console.log 2>&1
status=$?
echo "$status" > /ci/status.partial && mv /ci/status.partial /ci/status
sync
exit 0
"""


@dataclass(frozen=True)
class Image:
    directory: Path
    build_seconds: float | None  # None: taken from the cache

    @property
    def root(self) -> Path:
        return self.directory / "root.img"

    @property
    def kernel(self) -> Path:
        return self.directory / "vmlinux"

    @property
    def initrd(self) -> Path:
        return self.directory / "initrd.img"


def recipe_hash() -> str:
    """Changes whenever what goes into the image changes (not with comments elsewhere)."""
    constants = repr((SUITE, PACKAGES, INITRD_MODULES, PRUNED_MODULES, IMAGE_SIZE))
    code = [inspect.getsource(build), inspect.getsource(install_ci_units)]
    parts = [constants, CI_TARGET, CI_SERVICE, CI_RUN, *code]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:8]


def cached_image(log: Path) -> Image:
    """The cached image for this recipe, built first if there is none (one builder at a time;
    built under a temporary name, renamed once complete)."""
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    with (CACHE_DIR / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        existing = sorted(CACHE_DIR.glob(f"vm-{SUITE}-[0-9]*-{recipe_hash()}"))
        if existing:
            return Image(existing[-1], None)
        target = CACHE_DIR / f"vm-{SUITE}-{datetime.now(UTC):%Y%m%d}-{recipe_hash()}"
        partial = target.with_name(target.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir()
        started = time.monotonic()
        with log.open("ab") as out:
            build(partial, out.fileno())
        seconds = time.monotonic() - started
        partial.rename(target)
        return Image(target, seconds)


def build(directory: Path, out: int) -> None:
    """root.img, vmlinux and initrd.img into directory; tool output to the file descriptor."""
    for tool in ("mmdebstrap", "mkfs.ext4", "qemu-system-x86_64"):
        if shutil.which(tool) is None:
            raise RuntimeError(f"{tool} is missing (packaging/apt-packages-vm.txt: make vm-test)")
    rootfs = directory / "rootfs"
    # MODULES=list from a conf.d file and the list from modules.d (neither is a conffile, so
    # dpkg has nothing to ask about), in place before initramfs-tools builds the initrd.
    modules = "\\n".join(INITRD_MODULES)
    essential_hook = (
        'mkdir -p "$1/etc/initramfs-tools/conf.d" "$1/usr/share/initramfs-tools/modules.d" && '
        'echo MODULES=list > "$1/etc/initramfs-tools/conf.d/automd-vm" && '
        f'printf "{modules}\\n" > "$1/usr/share/initramfs-tools/modules.d/automd-vm"'
    )
    subprocess.run(
        ["mmdebstrap", "--variant=minbase", "--mode=root",
         "--aptopt=APT::Install-Recommends \"false\"",
         f"--include={','.join(PACKAGES)}", f"--essential-hook={essential_hook}",
         "--dpkgopt=path-exclude=/usr/share/doc/*", "--dpkgopt=path-exclude=/usr/share/man/*",
         "--dpkgopt=path-exclude=/usr/share/locale/*",
         SUITE, str(rootfs), configured_mirror()],
        stdout=out, stderr=subprocess.STDOUT, check=True,
    )  # fmt: skip
    (kernel,) = (rootfs / "boot").glob("vmlinuz-*")
    (initrd,) = (rootfs / "boot").glob("initrd.img-*")
    release = kernel.name.removeprefix("vmlinuz-")
    (directory / "vmlinux").write_bytes(uncompressed_kernel(kernel.read_bytes()))
    shutil.copyfile(initrd, directory / "initrd.img")
    tree = rootfs / "usr/lib/modules" / release / "kernel"
    for sub in PRUNED_MODULES:
        shutil.rmtree(tree / sub, ignore_errors=True)
    subprocess.run(["chroot", str(rootfs), "depmod", "-a", release], stdout=out, stderr=out,
                   check=True)  # fmt: skip
    for name in (kernel, initrd):
        name.unlink()
    install_ci_units(rootfs)
    subprocess.run(
        ["mkfs.ext4", "-q", "-F", "-L", "root", "-d", str(rootfs), str(directory / "root.img"),
         IMAGE_SIZE],
        stdout=out, stderr=subprocess.STDOUT, check=True,
    )  # fmt: skip
    shutil.rmtree(rootfs)


def install_ci_units(rootfs: Path) -> None:
    units = rootfs / "etc/systemd/system"
    (units / "ci.target").write_text(CI_TARGET)
    (units / "ci.service").write_text(CI_SERVICE)
    script = rootfs / "usr/local/sbin/ci-run"
    script.write_text(CI_RUN)
    script.chmod(0o755)
    (rootfs / "etc/hostname").write_text("automd-vm\n")
    # No network in the VM: nothing waits for it, and no clock sync is attempted.
    for unit in ("systemd-timesyncd.service", "systemd-networkd-wait-online.service"):
        mask = units / unit
        mask.unlink(missing_ok=True)
        mask.symlink_to("/dev/null")


def uncompressed_kernel(vmlinuz: bytes) -> bytes:
    """The ELF kernel inside a bzImage (Debian's is xz-compressed): booting it directly skips
    the decompressor, seconds under TCG."""
    start = vmlinuz.find(b"\xfd7zXZ\x00")
    if start < 0:
        raise RuntimeError("no xz stream in the kernel image")
    kernel = lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(vmlinuz[start:])
    if not kernel.startswith(b"\x7fELF"):
        raise RuntimeError("the kernel's xz stream is not an ELF image")
    return kernel


def main() -> None:
    log = Path(os.environ.get("AUTOMD_VM_BUILD_LOG", "/var/tmp/automd-vm-build.log"))
    image = cached_image(log)
    made = "cached" if image.build_seconds is None else f"built in {image.build_seconds:.0f} s"
    print(f"{image.directory} ({made}; log {log})")


if __name__ == "__main__":
    main()
