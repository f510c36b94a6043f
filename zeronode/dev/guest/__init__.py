"""A tiny Linux guest for demos, tests and benchmarks: Debian's cloud kernel and busybox, up in seconds under TCG.

    guest = build(cache_dir)        # downloads and builds once, then reuses the cache
    guest.kernel, guest.initramfs, guest.cmdline
    install_image(volume_path, guest, disk_mb=64)   # an image volume the VM manager boots
    write_bundle(path, guest)                       # an image bundle image_pull takes; its sha256

Made from Debian's packages, never from the host's /boot: `apt-get download`
fetches linux-image-cloud-amd64's kernel package and busybox-static, and
`dpkg-deb -x` unpacks them into the cache. The initramfs holds busybox, the
kernel modules a virtio guest needs (virtio block and net, the ACPI power button
and evdev for it), and `init` beside this file, which prints what the guest sees
on its serial console as "ZN-" lines (boot, hostname, disks, network, ready)
and powers off on the ACPI power button. It has no root filesystem: the disks
are there to be seen, not booted from.

Debian's `cpio` writes the archive; Python's gzip compresses it.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from zeronode.errors import ZeronodeError

KERNEL_PACKAGE = "linux-image-cloud-amd64"
BUSYBOX_PACKAGE = "busybox-static"
# Loaded in this order (each after what it depends on); paths under lib/modules/VERSION/kernel/.
MODULES = (
    "drivers/virtio/virtio_ring", "drivers/virtio/virtio", "drivers/virtio/virtio_pci_legacy_dev",
    "drivers/virtio/virtio_pci_modern_dev", "drivers/virtio/virtio_pci", "drivers/block/virtio_blk",
    "net/core/failover", "drivers/net/net_failover", "drivers/net/virtio_net",
    "drivers/char/hw_random/virtio-rng", "drivers/acpi/button", "drivers/input/evdev",
    "drivers/cdrom/cdrom", "fs/isofs/isofs",  # a cloud-init seed (sal.hypervisor.cloud_init) is an ISO 9660 image
)
APPLETS = ("sh", "mount", "umount", "insmod", "cat", "cut", "echo", "hostname", "sleep", "head", "tr", "sed", "mkdir",
           "printf", "chmod", "acpid", "poweroff", "ip", "awk", "ping")
CMDLINE = "console=ttyS0 panic=-1"


class GuestBuildError(ZeronodeError):
    """The tiny guest could not be built (no apt, no network to Debian's mirrors, a package changed)."""


@dataclass(frozen=True)
class Guest:
    kernel: Path
    initramfs: Path
    cmdline: str = CMDLINE
    kernel_version: str = ""


def default_cache() -> Path:
    """~/.cache/zeronode/guest (or under $XDG_CACHE_HOME): built once per user, kept across runs."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "zeronode" / "guest"


def build(cache_dir: Path) -> Guest:
    """The tiny guest, built into `cache_dir` unless it is there already (keyed by kernel package and init)."""
    init = resources.files(__package__).joinpath("init").read_bytes()
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    key = hashlib.sha256(init + "\n".join(MODULES + APPLETS).encode()).hexdigest()[:12]
    built = [path for path in cache_dir.glob(f"*-{key}") if (path / "ready").exists()]
    if built:
        return _guest(built[0])
    with tempfile.TemporaryDirectory(dir=cache_dir, prefix=".build-") as work:
        work = Path(work)
        kernel_package = _kernel_package()
        for package in (kernel_package, BUSYBOX_PACKAGE):
            _download(package, work)
            (debs := list(work.glob(f"{package}_*.deb"))) or _fail(f"apt-get download {package} left no .deb")
            _run(["dpkg-deb", "-x", str(debs[0]), str(work / "root")])
        version = kernel_package.removeprefix("linux-image-")
        target = cache_dir / f"{version}-{key}"
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir()
        shutil.copyfile(work / "root" / "boot" / f"vmlinuz-{version}", target / "vmlinuz")
        _initramfs(work / "root", version, init, target / "initramfs.gz")
        (target / "version").write_text(version)
        (target / "ready").touch()
    return _guest(target)


def install_image(volume: Path, guest: Guest, *, disk_mb: int = 64) -> None:
    """Make `volume` an image the VM manager boots: the guest's kernel, initramfs and cmdline, and a sparse
    disk.raw (the root disk each VM clones; this guest does not mount it)."""
    shutil.copyfile(guest.kernel, volume / "vmlinux")
    shutil.copyfile(guest.initramfs, volume / "initramfs")
    (volume / "cmdline").write_text(guest.cmdline + "\n")
    with open(volume / "disk.raw", "wb") as disk:
        disk.truncate(disk_mb * 1024 * 1024)


def write_bundle(path: Path, guest: Guest, *, disk_mb: int = 8, label: str = "") -> str:
    """The guest as an image bundle (sal.images: a gzip tar of disk.raw, vmlinux, initramfs, cmdline) at
    `path`, what image_pull takes; its sha256. The disk starts with "ZN:label" when a label is given (the guest
    prints it back), and is zeros after: it compresses to almost nothing."""
    with tempfile.TemporaryDirectory() as work:
        disk, cmdline = Path(work) / "disk.raw", Path(work) / "cmdline"
        with open(disk, "wb") as file:
            file.write(f"ZN:{label}".encode() if label else b"")
            file.truncate(disk_mb * 1024 * 1024)
        cmdline.write_text(guest.cmdline + "\n")
        with tarfile.open(path, "w:gz") as tar:
            for name, member in (("disk.raw", disk), ("vmlinux", guest.kernel), ("initramfs", guest.initramfs),
                                 ("cmdline", cmdline)):
                tar.add(member, arcname=name)
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _guest(directory: Path) -> Guest:
    return Guest(directory / "vmlinuz", directory / "initramfs.gz",
                 kernel_version=(directory / "version").read_text().strip())


def _kernel_package() -> str:
    """The versioned kernel package the metapackage depends on now (linux-image-6.1.0-NN-cloud-amd64)."""
    depends = _run(["apt-cache", "depends", KERNEL_PACKAGE], update_if_unknown=True)
    found = re.search(r"Depends: (linux-image-[\w.+-]+)", depends)
    return found.group(1) if found else _fail(f"apt-cache does not say which kernel {KERNEL_PACKAGE} is")


def _download(package: str, directory: Path) -> None:
    _run(["apt-get", "download", "-q", package], cwd=directory, update_if_unknown=True)


def _initramfs(root: Path, version: str, init: bytes, output: Path) -> None:
    tree = root.parent / "initramfs"
    for directory in ("bin", "proc", "sys", "dev", "etc", "lib/modules"):
        (tree / directory).mkdir(parents=True, exist_ok=True)
    shutil.copyfile(root / "bin" / "busybox", tree / "bin" / "busybox")
    os.chmod(tree / "bin" / "busybox", 0o755)
    for applet in APPLETS:
        (tree / "bin" / applet).symlink_to("busybox")
    (tree / "init").write_bytes(init)
    os.chmod(tree / "init", 0o755)
    modules = root / "lib" / "modules" / version / "kernel"
    for module in MODULES:
        source = modules / f"{module}.ko"
        source.exists() or _fail(f"the kernel package has no {module}.ko")
        shutil.copyfile(source, tree / "lib" / "modules" / source.name)
    (tree / "lib" / "modules" / "load").write_text("\n".join(Path(module).name for module in MODULES) + "\n")
    names = sorted(str(path.relative_to(tree)) for path in tree.rglob("*"))
    archive = _run(["cpio", "-o", "-H", "newc", "-R", "0:0", "--quiet"], cwd=tree, input="\n".join(names) + "\n",
                   binary=True)
    with gzip.open(output, "wb", compresslevel=6) as file:
        file.write(archive)


def _run(command: list[str], *, cwd: Path | None = None, input: str | None = None, binary: bool = False,
         update_if_unknown: bool = False):
    """Run a tool; once, when apt does not know a package yet and we are root, refresh its lists and retry."""
    for attempt in (1, 2):
        try:
            result = subprocess.run(command, cwd=cwd, input=input.encode() if input is not None else None,
                                    capture_output=True, timeout=600, check=False)
        except FileNotFoundError:
            _fail(f"{command[0]} is not installed (scripts/install-system-packages installs what the guest needs)")
        if result.returncode == 0:
            return result.stdout if binary else result.stdout.decode()
        error = result.stderr.decode(errors="replace").strip()
        unknown = "Unable to locate" in error or "No packages found" in error or "Can't select" in error
        if attempt == 1 and update_if_unknown and unknown and os.geteuid() == 0:
            subprocess.run(["apt-get", "update", "-qq"], capture_output=True, timeout=600, check=False)
            continue
        _fail(f"{' '.join(command[:3])} failed: {error.splitlines()[-1] if error else result.returncode}")
    raise AssertionError("unreachable")


def _fail(message: str):
    raise GuestBuildError(message)
