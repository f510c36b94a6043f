"""The storage functions as deployment scripts call them: a real Rhai engine on a real btrfs."""

import pytest

import rhai
from sal import registry
from sal.storage.drivers.btrfs import BtrfsStorage

from .conftest import job


@pytest.fixture
def engine(pool_dir):
    engine = rhai.Engine()
    registry.register_all(engine, registry.NodeSals(storage=BtrfsStorage(pool_dir)))
    return engine


def test_a_script_creates_snapshots_lists_and_deletes_volumes(engine, pool_dir):
    with job():
        result = engine.eval(
            """
            let data = volume_create(#{ name: "web1-data", quota_mb: 64 });
            let snap = volume_snapshot(#{ source: "web1-data", name: "web1-data-1" });
            let clone = volume_snapshot(#{ source: "web1-data-1", name: "web1-clone", read_only: false });
            let names = volume_list().map(|v| v.name);
            volume_delete("web1-clone");
            volume_delete(#{ name: "web1-data-1" });
            #{ names: names, left: volume_list().map(|v| v.name), snap_ro: snap.read_only,
               from: snap.parent_uuid == data.uuid, info: volume_info("web1-data").name, owner: data.owner }
            """
        )
    assert result == {
        "names": ["web1-clone", "web1-data", "web1-data-1"],
        "left": ["web1-data"],
        "snap_ro": True,
        "from": True,
        "info": "web1-data",
        "owner": "alice-key",  # the job's signer
    }
    assert (pool_dir / "web1-data").is_dir()


def test_outside_a_job_the_storage_functions_refuse(engine):
    with pytest.raises(rhai.EvalError, match="this function can only be called from a job"):
        engine.eval('volume_create(#{ name: "x" })')
