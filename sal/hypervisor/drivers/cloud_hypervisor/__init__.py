"""cloud-hypervisor: the driver (driver.py), its VMM processes (vmm.py), the API client (client.py) and the
VmConfig it sends (vm_config.py), upstream's API description (openapi.py, cloud-hypervisor.yaml), and the
simulator that serves that API where the VMM cannot run, answering as a real release does (simulator.py; the
releases it plays, v53.0 and upstream main, as measured: ../shared/specs/README.md)."""

from sal.hypervisor.drivers.cloud_hypervisor.client import HypervisorClient
from sal.hypervisor.drivers.cloud_hypervisor.driver import CloudHypervisor

__all__ = ["CloudHypervisor", "HypervisorClient"]
