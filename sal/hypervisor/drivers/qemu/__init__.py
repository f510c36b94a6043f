"""QEMU: the driver (driver.py), its command line (command.py), its monitor over QMP (monitor.py, with the QEMU
project's qemu.qmp), and the choice of accelerator (accel.py)."""

from sal.hypervisor.drivers.qemu.driver import Qemu

__all__ = ["Qemu"]
