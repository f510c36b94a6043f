"""The vm_* functions as deployment scripts call them: a real Rhai engine, simulated VMMs, a real btrfs."""

import pytest

import rhai

from .conftest import job


def test_a_script_runs_a_vm_through_its_life(vm_engine):
    with job():
        result = vm_engine.eval(
            """
            volume_create(#{ name: "web1-data", quota_mb: 16 });
            let created = vm_create(#{ name: "web1", image: "ubuntu", vcpus: 2, memory_mb: 256, volumes: ["web1-data"] });
            let running = vm_start("web1");
            let stopped = vm_stop(#{ name: "web1", timeout: 2 });
            let again = vm_start("web1");
            let listed = vm_list().map(|vm| vm.name);
            vm_delete("web1");
            #{ states: [created.state, running.state, stopped.state, again.state], listed: listed,
               after: vm_list().len(), memory: created.memory_mb, disks: created.disks.len(),
               data_kept: "web1-data" in volume_list().map(|v| v.name), owner: created.owner }
            """
        )
    assert result == {
        "states": ["Stopped", "Running", "Stopped", "Running"], "listed": ["web1"], "after": 0,
        "memory": 256, "disks": 2, "data_kept": True, "owner": "alice-key",
    }


def test_outside_a_job_the_vm_functions_refuse(vm_engine):
    with pytest.raises(rhai.EvalError, match="this function can only be called from a job"):
        vm_engine.eval("vm_list()")

