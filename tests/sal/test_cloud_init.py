"""A VM's cloud-init NoCloud seed: what a script may give (bounded, checked), and the disk built from it, read
back with pycdlib as cloud-init reads it. The guest side (a real guest reading its seed) is in test_qemu.py."""

import email
import io
import json

import pycdlib
import pytest
import rhai
import yaml

from sal.errors import SalError
from sal.hypervisor.cloud_init import SEED_FILE, CloudInit

from .conftest import ALICE, job

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ2tHnwt2pCvUf0Y3j1JzJ2yQf7a0W0rVx1c4m9o0A1b alice@laptop"


def seed_files(path) -> dict[str, bytes]:
    iso = pycdlib.PyCdlib()
    iso.open(str(path))
    try:
        assert iso.pvd.volume_identifier.strip() == b"cidata"
        files = {}
        for name in ("meta-data", "user-data", "network-config"):
            data = io.BytesIO()
            try:
                iso.get_file_from_iso_fp(data, rr_path=f"/{name}")
            except pycdlib.pycdlibexception.PyCdlibInvalidInput:
                continue
            files[name] = data.getvalue()
        return files
    finally:
        iso.close()


@pytest.mark.parametrize("given, complaint", [
    ({"hostname": "not a host"}, "not a hostname"),
    ({"hostname": "a" * 64}, "not a hostname"),
    ({"ssh_keys": ["not a key"]}, "OpenSSH public key"),
    ({"ssh_keys": [KEY + "\nssh-rsa AAAA injected"]}, "OpenSSH public key"),
    ({"ssh_keys": [KEY] * 33}, "at most 32"),
    ({"user_data": "#cloud-config\n" + "x" * 65536}, "at most 65536 bytes"),
    ({"user_data": "echo no header"}, "#cloud-config or #!"),
    ({"network_config": {"version": 2, "pad": "x" * 20000}}, "at most 16384 bytes"),
    ({"hostname": 7}, "hostname"),
    ({"password": "x"}, "unknown key 'password'"),
])
def test_what_a_script_may_give_is_checked(given, complaint):
    with pytest.raises(SalError, match=complaint):  # CloudInitError, or spec()'s for the map's keys and types
        CloudInit.from_script(given, "web1")


def test_the_seed_holds_what_cloud_init_reads(tmp_path):
    given = CloudInit.from_script({"ssh_keys": [KEY], "user_data": "#!/bin/sh\necho hello\n",
                                   "network_config": {"version": 2, "ethernets": {"eth0": {"dhcp4": True}}}}, "Web1")
    path = given.write_seed(tmp_path / SEED_FILE, instance_id="i-1")
    assert path.stat().st_mode & 0o777 == 0o600  # the owner's user data: root's alone
    files = seed_files(path)
    assert yaml.safe_load(files["meta-data"]) == {"instance-id": "i-1", "local-hostname": "web1"}  # the VM's name
    assert yaml.safe_load(files["network-config"]) == {"version": 2, "ethernets": {"eth0": {"dhcp4": True}}}
    parts = [part for part in email.message_from_bytes(files["user-data"]).walk() if not part.is_multipart()]
    assert [part.get_content_type() for part in parts] == ["text/cloud-config", "text/x-shellscript"]
    ours = yaml.safe_load(parts[0].get_payload(decode=True))
    assert ours["hostname"] == "web1" and ours["ssh_authorized_keys"] == [KEY]
    assert parts[1].get_payload(decode=True) == b"#!/bin/sh\necho hello\n"

    plain = CloudInit.from_script({"hostname": "db.example"}, "web1").write_seed(tmp_path / "plain.iso", "i-2")
    files = seed_files(plain)
    assert files["user-data"].startswith(b"#cloud-config\n") and "network-config" not in files


def test_a_script_gives_a_vm_a_seed_that_is_new_each_time_the_vm_is_created(vm_engine, vm_manager):
    script = 'vm_create(#{ name: "web1", image: "ubuntu", cloud_init: #{ ssh_keys: [key] } })'
    instances = []
    for _ in range(2):
        with job(ALICE):
            vm_engine.eval(script, {"key": KEY})
        seed = vm_manager.state_dir / "web1" / SEED_FILE
        record = json.loads((vm_manager.state_dir / "web1" / "vm.json").read_text())
        assert record["spec"]["disks"][-1] == {"path": str(seed), "readonly": True, "id": "seed"}
        instances.append(yaml.safe_load(seed_files(seed)["meta-data"])["instance-id"])
        with job(ALICE):
            vm_engine.eval('vm_delete("web1")')
        assert not seed.exists()
    assert instances[0] != instances[1]  # cloud-init runs its first boot again for a new VM of the same name
    with job(ALICE), pytest.raises(rhai.EvalError, match="not a hostname"):
        vm_engine.eval('vm_create(#{ name: "web2", image: "ubuntu", cloud_init: #{ hostname: "a b" } })')
    assert not (vm_manager.state_dir / "web2").exists()
