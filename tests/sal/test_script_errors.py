"""SAL errors as scripts meet them: each stops the script at its line with its type and message,
or is caught by try/catch; a SAL the node lacks says what setting is missing."""

import pytest

import rhai
from sal import registry

from .conftest import job


@pytest.mark.parametrize(
    ("script", "message"),
    [
        ('volume_create("plain string")', "volume_create takes a map"),
        ('volume_create(#{ name: "x", size: 3 })', "unknown key 'size'"),
        ("volume_create(#{ quota_mb: 3 })", "missing key 'name'"),
        ('volume_create(#{ name: "x", quota_mb: "big" })', "'quota_mb' must be int"),
        ('volume_create(#{ name: "../etc" })', "InvalidName: invalid volume name '../etc'"),
        ('volume_delete("ghost")', "VolumeNotFound: no volume 'ghost'"),
        ('vm_create("web1")', "vm_create takes a map"),
        ('vm_create(#{ name: "web1" })', "missing key 'image'"),
        ('vm_create(#{ name: "web1", image: "ubuntu", cpus: 2 })', "unknown key 'cpus'"),
        ('vm_create(#{ name: "web1", image: "ubuntu", vcpus: "two" })', "'vcpus' must be int"),
        ('vm_create(#{ name: "web1", image: "ubuntu", volumes: [1] })', "'volumes' must be an array of strings"),
        ('vm_create(#{ name: "Web 1", image: "ubuntu" })', "InvalidVmName: invalid VM name 'Web 1'"),
        ('vm_start("ghost")', "VmNotFound: no VM named 'ghost'"),
        ('vm_stop(#{ name: "ghost", force: true })', "unknown key 'force'"),
    ],
)
def test_errors_reach_the_script_with_their_line(vm_engine, script, message):
    with job(), pytest.raises(rhai.EvalError, match=message) as info:
        vm_engine.eval(f"let a = 1;\n{script}")
    assert info.value.line == 2


@pytest.mark.parametrize(
    ("script", "caught"),
    [
        ('volume_create(#{ name: "v" }); volume_create(#{ name: "v" })',
         "VolumeExists: the volume name 'v' is taken on this node (volume names are node-wide)"),
        ('vm_info("ghost")', "VmNotFound: no VM named 'ghost'"),
    ],
)
def test_a_script_can_catch_a_sal_error(vm_engine, script, caught):
    with job():
        assert vm_engine.eval(f'let r = "none"; try {{ {script}; }} catch (e) {{ r = `${{e}}`; }} r') == caught


@pytest.mark.parametrize(
    ("script", "missing"),
    [
        ("volume_list()", "storage is not configured on this node"),
        ("vm_list()", "VMs are not available on this node"),
        ("net_info()", "the network is not configured on this node"),
    ],
)
def test_without_a_sal_its_functions_say_what_is_missing(script, missing):
    engine = rhai.Engine()
    registry.register_all(engine, registry.NodeSals())
    with pytest.raises(rhai.EvalError, match=missing):
        engine.eval(script)
