"""The storage functions as deployment scripts call them: a real Rhai engine on a real btrfs."""

import pytest
import rhai

from sal import registry
from sal.storage import BtrfsStorage


@pytest.fixture
def engine(pool_dir):
    engine = rhai.Engine()
    registry.register_all(engine, registry.NodeSals(storage=BtrfsStorage(pool_dir)))
    return engine


def test_a_script_creates_snapshots_lists_and_deletes_volumes(engine, pool_dir):
    result = engine.eval(
        """
        let data = volume_create(#{ name: "web1-data", quota_mb: 64 });
        let snap = volume_snapshot(#{ source: "web1-data", name: "web1-data-1" });
        let clone = volume_snapshot(#{ source: "web1-data-1", name: "web1-clone", read_only: false });
        let names = volume_list().map(|v| v.name);
        volume_delete("web1-clone");
        volume_delete(#{ name: "web1-data-1" });
        #{ names: names, left: volume_list().map(|v| v.name), snap_ro: snap.read_only,
           from: snap.parent_uuid == data.uuid, info: volume_info("web1-data").name }
        """
    )
    assert result == {
        "names": ["web1-clone", "web1-data", "web1-data-1"],
        "left": ["web1-data"],
        "snap_ro": True,
        "from": True,
        "info": "web1-data",
    }
    assert (pool_dir / "web1-data").is_dir()


@pytest.mark.parametrize(
    ("script", "message"),
    [
        ('volume_create("plain string")', "volume_create takes a map"),
        ('volume_create(#{ name: "x", size: 3 })', "unknown key 'size'"),
        ("volume_create(#{ quota_mb: 3 })", "missing key 'name'"),
        ('volume_create(#{ name: "x", quota_mb: "big" })', "'quota_mb' must be int"),
        ('volume_create(#{ name: "../etc" })', "InvalidName: invalid volume name '../etc'"),
        ('volume_delete("ghost")', "VolumeNotFound: no volume 'ghost'"),
    ],
)
def test_errors_reach_the_script_with_their_line(engine, script, message):
    with pytest.raises(rhai.EvalError, match=message) as info:
        engine.eval(f"let a = 1;\n{script}")
    assert info.value.line == 2


def test_a_script_can_catch_a_storage_error(engine):
    script = 'volume_create(#{ name: "v" }); let r = "none"; try { volume_create(#{ name: "v" }); } catch (e) { r = `${e}`; } r'
    assert engine.eval(script) == "VolumeExists: volume 'v' already exists"


def test_without_storage_the_functions_say_what_is_missing():
    engine = rhai.Engine()
    registry.register_all(engine, registry.NodeSals())
    with pytest.raises(rhai.EvalError, match="storage is not configured on this node"):
        engine.eval("volume_list()")
