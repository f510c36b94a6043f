"""The image functions as deployment scripts call them: a real Rhai engine, a real btrfs, images from a loopback
HTTP server, and VMs (simulated VMMs) created from a pulled image by its name."""

import hashlib
import io
import tarfile

import pytest

import rhai
from sal import registry
from sal.images import ImagePolicy, ImageStore
from sal.images.base import ImageNotOwned

from .conftest import ADMIN, ALICE, BOB, job

DISK = b"\x01" * 4096
KERNEL = b"\x7fELF not really a kernel"


def guest_bundle() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in (("disk.raw", DISK), ("vmlinux", KERNEL), ("cmdline", b"console=ttyS0\n")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


BUNDLE = guest_bundle()
DIGEST = hashlib.sha256(BUNDLE).hexdigest()


@pytest.fixture
def server(image_server):
    image_server.serve("/guest.tar.gz", BUNDLE)
    return image_server


@pytest.fixture
def engine(storage, vm_manager):
    engine = rhai.Engine()
    registry.register_all(engine, registry.NodeSals(storage=storage, vms=vm_manager,
                                                    images=ImageStore(storage, ImagePolicy())))
    return engine


def pull_script(server) -> str:
    return f'image_pull(#{{ name: "guest", url: "{server.url("/guest.tar.gz")}", sha256: "{DIGEST}", format: "bundle" }})'


def test_a_script_pulls_an_image_lists_it_and_boots_a_vm_from_it_by_name(engine, server, storage):
    with job(ALICE):
        result = engine.eval(f"""
            let image = {pull_script(server)};
            let vm = vm_create(#{{ name: "web1", image: "guest" }});
            #{{ image: image, listed: image_list().map(|i| i.name), info: image_info("guest").volume,
               vm_image: vm.image, root: volume_info(vm.root_volume) }}
        """)
    image = result["image"]
    assert (image["name"], image["sha256"], image["format"], image["files"]) == (
        "guest", DIGEST, "bundle", ["disk.raw", "vmlinux", "cmdline"])
    assert image["kernel"] and image["owner"] == ALICE.owner and image["url"] == server.url("/guest.tar.gz")
    assert result["listed"] == ["guest"] and result["info"] == image["volume"] and result["vm_image"] == "guest"
    # The root disk is a clone of the image's volume, and boots its kernel.
    assert result["root"]["parent_uuid"] == storage.info(image["volume"]).uuid
    assert (storage.info("web1-root").path / "vmlinux").read_bytes() == KERNEL
    with job(BOB):  # every tenant sees the image, not its URL, and boots from it too
        seen = engine.eval('let i = image_info("guest"); vm_create(#{ name: "web2", image: "guest" }); i')
    assert seen["url"] is None and seen["owner"] == ALICE.owner


def test_deleting_an_image_follows_its_owner_and_its_vms(engine, server):
    with job(ALICE):
        engine.eval(f'{pull_script(server)}; vm_create(#{{ name: "web1", image: "guest" }})')
    with job(BOB), pytest.raises(rhai.EvalError, match="ImageNotOwned") as refused:
        engine.eval('image_delete("guest")')
    assert isinstance(refused.value.__cause__, ImageNotOwned)
    with job(ALICE), pytest.raises(rhai.EvalError, match="ImageInUse: image 'guest' is the origin of web1-root"):
        engine.eval('image_delete("guest")')
    with job(ALICE):
        engine.eval('vm_delete("web1"); image_delete(#{ name: "guest" })')
        assert engine.eval("image_list()") == []
    with job(ADMIN):  # an admin may force it while VMs derive from it
        engine.eval(f'{pull_script(server)}; vm_create(#{{ name: "web3", image: "guest" }}); '
                    'image_delete(#{ name: "guest", force: true })')
        assert engine.eval('image_list().len()') == 0 and engine.eval('vm_info("web3").image') == "guest"


@pytest.mark.parametrize(("script", "message"), [
    ('image_pull("guest")', "image_pull takes a map"),
    ('image_pull(#{ name: "guest", url: "http://x/y" })', "missing key 'sha256'"),
    ('image_pull(#{ name: "guest", url: "http://x/y", sha256: "ab", size: 1 })', "unknown key 'size'"),
    ('image_pull(#{ name: "guest", url: "http://x/y", sha256: "ab" })', "ImageError: sha256 must be 64 hex digits"),
    (f'image_pull(#{{ name: "../guest", url: "http://x/y", sha256: "{DIGEST}" }})', "InvalidImageName"),
    (f'image_pull(#{{ name: "guest", url: "http://x/y", sha256: "{DIGEST}", format: "zip" }})',
     "format must be one of raw, qcow2, bundle"),
    ('image_info("ghost")', "ImageNotFound: no image 'ghost'"),
    ('image_delete(#{ name: "ghost", force: 1 })', "'force' must be bool"),
])
def test_bad_arguments_are_refused_with_their_type(engine, script, message):
    with job(), pytest.raises(rhai.EvalError, match=message):
        engine.eval(script)


def test_without_storage_the_image_functions_say_what_is_missing():
    engine = rhai.Engine()
    registry.register_all(engine, registry.NodeSals())
    with job(), pytest.raises(rhai.EvalError, match="images need storage on this node"):
        engine.eval("image_list()")

