"""The hypervisor SAL's drivers, one package each (each implements sal.hypervisor.base.HypervisorDriver);
sal.registry's table names them."""
