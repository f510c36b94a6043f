"""Owners as scripts meet them: each acts for its job's signer (a deployer, or a node admin). A real Rhai
engine, simulated VMMs, a real btrfs, and the shared image "ubuntu" that vm_engine makes."""

import pytest

import rhai

from .conftest import ADMIN, ALICE, BOB, job

ALICE_DEPLOYS = """
    volume_create(#{ name: "shop-data", quota_mb: 16 });
    volume_snapshot(#{ source: "shop-data", name: "shop-data-1" });
    vm_create(#{ name: "shop", image: "ubuntu", volumes: ["shop-data"] });
    vm_start("shop").owner
"""


def run(engine, caller, script):
    with job(caller):
        return engine.eval(script)


def test_deployers_on_one_node_see_their_own_and_the_shared_image(vm_engine):
    assert run(vm_engine, ALICE, ALICE_DEPLOYS) == "alice-key"
    run(vm_engine, BOB, 'vm_create(#{ name: "blog", image: "ubuntu" })')
    listing = "#{ vms: vm_list().map(|vm| vm.name), volumes: volume_list().map(|v| `${v.name}:${v.owner}`) }"
    assert run(vm_engine, ALICE, listing) == {
        "vms": ["shop"], "volumes": ["shop-data:alice-key", "shop-data-1:alice-key", "shop-root:alice-key", "ubuntu:"],
    }
    assert run(vm_engine, BOB, listing) == {"vms": ["blog"], "volumes": ["blog-root:bob-key", "ubuntu:"]}
    assert run(vm_engine, ADMIN, listing)["vms"] == ["blog", "shop"]


@pytest.mark.parametrize(
    ("script", "error"),
    [
        ('vm_info("shop")', "VmNotFound: no VM named 'shop'"),
        ('vm_stop("shop")', "VmNotFound: no VM named 'shop'"),
        ('vm_delete("shop")', "VmNotFound: no VM named 'shop'"),
        ('volume_info("shop-data")', "VolumeNotFound: no volume 'shop-data'"),
        ('volume_delete("shop-data-1")', "VolumeNotFound: no volume 'shop-data-1'"),
        ('volume_snapshot(#{ source: "shop-data", name: "mine" })', "VolumeNotFound: no volume 'shop-data'"),
        ('vm_create(#{ name: "blog", image: "ubuntu", volumes: ["shop-data"] })', "VolumeNotFound: no volume 'shop-data'"),
        ('vm_create(#{ name: "shop", image: "ubuntu" })', "VmExists: the VM name 'shop' is taken on this node"),
        ('volume_create(#{ name: "shop-data" })', "VolumeExists: the volume name 'shop-data' is taken on this node"),
        ('volume_delete("ubuntu")', "VolumeShared: volume 'ubuntu' is shared on this node"),
        ('vm_create(#{ name: "blog", image: "ubuntu", taps: ["zn-shop"] })', "SalError: vm_create: unknown key 'taps'"),
    ],
)
def test_a_deployer_cannot_touch_another_deployers_vms_and_volumes(vm_engine, script, error):
    run(vm_engine, ALICE, ALICE_DEPLOYS)
    with pytest.raises(rhai.EvalError, match=error):
        run(vm_engine, BOB, script)
    assert run(vm_engine, ALICE, '[vm_info("shop").state, volume_list().len()]') == ["Running", 4]  # all still there


def test_a_node_admins_script_acts_on_every_tenants(vm_engine):
    run(vm_engine, ALICE, ALICE_DEPLOYS)
    assert run(vm_engine, ADMIN, 'vm_stop("shop").state') == "Stopped"
    run(vm_engine, ADMIN, 'vm_delete("shop"); volume_delete("shop-data-1"); volume_delete("ubuntu")')
    assert run(vm_engine, ALICE, "volume_list().map(|v| v.name)") == ["shop-data"]


def test_a_volume_without_an_owner_record_shows_only_to_admins(vm_engine, storage):
    storage.create("legacy-data")  # from before volumes had owners: no record, so the admins' alone
    assert run(vm_engine, BOB, "volume_list().map(|v| `${v.name}:${v.shared_image}`)") == ["ubuntu:true"]
    for script in ('volume_info("legacy-data")', 'vm_create(#{ name: "blog", image: "legacy-data" })'):
        with pytest.raises(rhai.EvalError, match="VolumeNotFound: no volume 'legacy-data'"):
            run(vm_engine, BOB, script)
    assert run(vm_engine, ADMIN, 'volume_info("legacy-data").owner') is None
