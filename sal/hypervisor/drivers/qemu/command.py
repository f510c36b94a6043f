"""A VmSpec in QEMU's terms: the command line of `qemu-system-x86_64` for one VM.

The single place QEMU's options live. A small machine with nothing by default
(-nodefaults: no NIC, no VGA, no floppy) and what the spec asks for:

    -machine pc,accel=kvm|tcg  the i440fx PC: its PCI bus takes disks hot-plugged by ACPI with no
                               extra root ports; `-cpu host` under KVM, QEMU's default CPU under TCG
    -kernel/-initrd/-append    direct kernel boot, or -bios FIRMWARE
    virtio-blk-pci             each disk, its device id the disk's id ("root", "data-NAME")
    virtio-net-pci on a tap    each tap (script=no: zeronode made the tap, QEMU only opens it)
    -chardev file + -serial    the serial console to the VM's serial.log (appending: the VM keeper can cut it
                               while the guest writes), or -serial null
    -sandbox on,...            QEMU's seccomp filter: no obsolete syscalls, no privilege changes, no new
                               processes, no resource-control calls (QEMU runs as root)
    -qmp unix:qmp.sock         the monitor, also the marker that tells this VM's process from any other
"""

from __future__ import annotations

from pathlib import Path

from sal.hypervisor.spec import DiskSpec, TapSpec, VmSpec

QMP_SOCKET = "qmp.sock"


def option(value: str | Path) -> str:
    """A value inside QEMU's comma-separated options: a comma in it is written twice."""
    return str(value).replace(",", ",,")


def disk_options(disk: DiskSpec, index: int) -> list[str]:
    device = disk.id or f"disk{index}"
    readonly = ",readonly=on" if disk.readonly else ""
    return ["-drive", f"file={option(disk.path)},format=raw,if=none,id={device}{readonly}",
            "-device", f"virtio-blk-pci,drive={device},id={device}"]


def tap_options(tap: TapSpec, index: int) -> list[str]:
    device = tap.id or f"net{index}"
    mac = f",mac={tap.mac}" if tap.mac else ""
    return ["-netdev", f"tap,id={device},ifname={tap.tap},script=no,downscript=no",
            "-device", f"virtio-net-pci,netdev={device},id={device}{mac}"]


def qemu_command(binary: str, vm_dir: Path, name: str, spec: VmSpec, accel: str) -> list[str]:
    command = [
        binary, "-name", f"guest={name}", "-machine", f"pc,accel={accel}",
        *(["-cpu", "host"] if accel == "kvm" else []),
        "-m", f"{spec.memory_mib}M", "-smp", str(spec.vcpus),
        "-nodefaults", "-no-user-config", "-display", "none",
        "-sandbox", "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny",
        "-device", "virtio-rng-pci",
        "-qmp", f"unix:{option(vm_dir / QMP_SOCKET)},server=on,wait=off",
    ]
    if spec.kernel:
        command += ["-kernel", spec.kernel]
        command += ["-initrd", spec.initramfs] if spec.initramfs else []
        command += ["-append", spec.cmdline] if spec.cmdline else []
    else:
        command += ["-bios", str(spec.firmware)]
    for index, disk in enumerate(spec.disks):
        command += disk_options(disk, index)
    for index, tap in enumerate(spec.taps):
        command += tap_options(tap, index)
    if spec.serial_file:
        command += ["-chardev", f"file,id=serial0,path={option(spec.serial_file)},append=on", "-serial", "chardev:serial0"]
    else:
        command += ["-serial", "null"]
    return command
