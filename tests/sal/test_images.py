"""Images pulled from a real HTTP server on loopback into a real btrfs: verified, unpacked, stored once per digest,
and nothing half-made left behind when the download, the image or the disk is bad."""

import contextlib
import hashlib
import io
import json
import os
import subprocess
import tarfile
import threading
import time

import nacl.signing
import pytest

from sal import registry
from sal.errors import JobInterrupted
from sal.images import ImagePolicy, ImageStore, PullRequest, signed_message
from sal.images.base import (
    BadImage,
    DigestMismatch,
    DownloadError,
    DownloadInterrupted,
    ImageDiskFull,
    ImageError,
    ImageExists,
    ImageInUse,
    ImageNotOwned,
    ImageTooLarge,
    SignatureRefused,
    UnsafeRedirect,
)
from sal.storage import InvalidName, OwnedStorage, StorageError
from sal.storage.drivers.btrfs import BtrfsStorage
from tests.support.waiting import wait_until
from zeronode.protocol.keys import public_key_text, sign

from .conftest import ADMIN, ALICE, BOB

MIB = 1024 * 1024
# A disk with data and an empty stretch (written as a hole), not starting like any image format.
DISK = os.urandom(MIB) + bytes(2 * MIB) + os.urandom(MIB // 2)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def store(pool_dir):
    return ImageStore(BtrfsStorage(pool_dir), ImagePolicy(max_bytes=16 * MIB))


class Token:
    cancelled = False


@contextlib.contextmanager
def job(caller=ALICE, *, deadline: float = 60, cancel=None):
    """Run as a job of `caller`; what the SAL reports to the job's output is in the list yielded."""
    output: list[str] = []
    context = registry.JobContext(job_id="job-1", signer=caller.owner, node_id="node-1",
                                  deadline=time.monotonic() + deadline, admin=caller.admin, cancel=cancel,
                                  output=output.append)
    with registry.running(context):
        yield output


def pull(store, caller=ALICE, **request):
    with job(caller):
        return store.pull(caller, PullRequest(**request))


def left_behind(store) -> dict:
    """What a pull may have left: names, image volumes, parts in staging."""
    storage = store.storage
    return {
        "names": [image.name for image in store.list()],
        "volumes": [volume.name for volume in storage.list() if volume.name.startswith("img-")],
        "staged": list(storage.staged()),
    }


NOTHING = {"names": [], "volumes": [], "staged": []}


def test_a_raw_image_is_verified_then_stored_read_only_shared_and_named(store, image_server):
    url = image_server.serve("/disk.raw", DISK)
    with job() as output:
        image = store.pull(ALICE, PullRequest(name="disk", url=url, sha256=sha(DISK).upper()))
    assert (image.name, image.sha256, image.format, image.size) == ("disk", sha(DISK), "raw", len(DISK))
    assert image.volume == f"img-{sha(DISK)[:32]}" and image.owner == ALICE.owner and image.files == ("disk.raw",)
    volume = OwnedStorage(store.storage).info(BOB, image.volume)  # shared: another tenant sees it
    assert volume.read_only and volume.shared
    assert (volume.path / "disk.raw").read_bytes() == DISK
    assert (volume.path / "disk.raw").stat().st_blocks * 512 < len(DISK)  # the empty stretch takes no room
    assert json.loads((volume.path / "image.json").read_text())["sha256"] == sha(DISK)
    assert output[0].startswith("image disk: downloading from 127.0.0.1")
    assert any(line.endswith(f"of {len(DISK) / MIB:.1f} MiB") for line in output)  # progress
    assert output[-1] == f"image disk: ready as volume {image.volume}"
    catalog = store.catalog.directory
    assert catalog.stat().st_mode & 0o777 == 0o700
    assert (catalog / "names" / "disk.json").stat().st_mode & 0o777 == 0o600
    assert left_behind(store)["staged"] == []
    shown = image.as_dict(BOB)
    assert shown["url"] is None and shown["kernel"] is False  # another tenant does not see the URL (it may hold a token)
    assert image.as_dict(ALICE)["url"] == url


def test_many_names_one_volume_pulling_again_is_a_no_op_and_the_last_name_takes_the_volume(store, image_server):
    url = image_server.serve("/disk.raw", DISK)
    first = pull(store, name="disk", url=url, sha256=sha(DISK))
    again = pull(store, name="disk", url=url, sha256=sha(DISK))
    other = pull(store, BOB, name="bobs-disk", url=url, sha256=sha(DISK))
    assert len(image_server.requests) == 1  # the digest was there: no second download
    assert again == first and other.volume == first.volume and other.owner == BOB.owner
    with pytest.raises(ImageExists, match="taken on this node by another digest"):
        pull(store, BOB, name="disk", url=url, sha256=sha(b"other"))
    with pytest.raises(ImageNotOwned):
        store.delete(BOB, "disk")
    store.delete(ALICE, "disk")
    assert store.storage.exists(first.volume)  # bobs-disk still points at it
    store.delete(BOB, "bobs-disk")
    assert left_behind(store) == NOTHING
    assert not (store.storage.root / ".owners" / f"{first.volume}.json").exists()


def test_a_dropped_connection_keeps_the_part_hidden_and_the_next_pull_resumes_it(store, image_server):
    url = image_server.serve("/disk.raw", DISK, drops=1)
    with pytest.raises(DownloadInterrupted, match="the part is kept: pull again to resume"):
        pull(store, name="disk", url=url, sha256=sha(DISK))
    left = left_behind(store)
    assert (left["names"], left["volumes"]) == ([], [])  # nothing visible
    [part] = left["staged"]
    assert (store.storage.root / ".staging" / part / "download").stat().st_size == len(DISK) // 2
    image = pull(store, name="disk", url=url, sha256=sha(DISK))
    assert image_server.requests == [("/disk.raw", None), ("/disk.raw", f"bytes={len(DISK) // 2}-")]
    assert (store.storage.info(image.volume).path / "disk.raw").read_bytes() == DISK
    assert left_behind(store)["staged"] == []


def test_a_server_that_ignores_the_range_starts_the_part_over(store, image_server):
    url = image_server.serve("/disk.raw", DISK, drops=1, ranges=False)
    with pytest.raises(DownloadInterrupted):
        pull(store, name="disk", url=url, sha256=sha(DISK))
    image = pull(store, name="disk", url=url, sha256=sha(DISK))
    assert (store.storage.info(image.volume).path / "disk.raw").read_bytes() == DISK


def test_a_second_pull_of_a_digest_waits_for_the_first_and_finds_it_made(store, image_server):
    second: dict = {}

    def pull_again():
        with job(BOB) as output:
            second["output"] = output
            second["image"] = store.pull(BOB, PullRequest(name="bobs", url=url, sha256=sha(DISK)))

    thread = threading.Thread(target=pull_again)

    def start_the_second_pull():  # while the first is half way
        thread.start()
        wait_until(lambda: any("waiting for it" in line for line in second.get("output", [])), 10, "the second pull to wait")

    url = image_server.serve("/disk.raw", DISK, halfway=start_the_second_pull)
    first = pull(store, name="disk", url=url, sha256=sha(DISK))
    thread.join(10)
    assert second["image"].volume == first.volume and second["image"].owner == BOB.owner
    assert len(image_server.requests) == 1  # one download for both


def test_a_wrong_digest_leaves_nothing_not_even_a_part(store, image_server):
    url = image_server.serve("/disk.raw", DISK)
    with pytest.raises(DigestMismatch, match=f"sha256 is {sha(DISK)}, not {sha(b'x')}"):
        pull(store, name="disk", url=url, sha256=sha(b"x"))
    assert left_behind(store) == NOTHING


def test_server_errors_bad_urls_and_redirects_to_another_scheme_are_refused_and_leave_nothing(store, image_server):
    digest = sha(DISK)
    image_server.serve("/disk.raw", DISK)
    with pytest.raises(DownloadError, match="answered 500"):
        pull(store, name="disk", url=image_server.serve("/broken", status=500), sha256=digest)
    with pytest.raises(DownloadError, match="answered 404"):
        pull(store, name="disk", url=image_server.url("/missing"), sha256=digest)
    with pytest.raises(UnsafeRedirect, match="redirected the http download to https"):
        pull(store, name="disk", url=image_server.serve("/moved", location="https://127.0.0.1:1/disk.raw"), sha256=digest)
    for url in ("ftp://example.com/disk.raw", "file:///etc/passwd", "http://user:pw@127.0.0.1/disk.raw", "http:///x"):
        with pytest.raises(DownloadError):
            pull(store, name="disk", url=url, sha256=digest)
    with pytest.raises(DownloadError, match="cannot download from 127.0.0.1"):
        pull(store, name="disk", url="http://127.0.0.1:9/disk.raw", sha256=digest)  # discard port: nothing listens
    assert left_behind(store) == NOTHING
    # A redirect within the scheme is followed.
    image = pull(store, name="disk", url=image_server.serve("/here", location="/disk.raw"), sha256=digest)
    assert image.url == image_server.url("/here")


def test_an_image_over_the_maximum_is_refused_whether_declared_or_streamed(store, image_server):
    big = os.urandom(17 * MIB)
    with pytest.raises(ImageTooLarge, match="is 17825792 bytes, over this node's max_image_bytes"):
        pull(store, name="big", url=image_server.serve("/big", big), sha256=sha(big))
    assert [range_ for _, range_ in image_server.requests] == [None]
    with pytest.raises(ImageTooLarge, match="over this node's max_image_bytes"):
        pull(store, name="big", url=image_server.serve("/unsized", big, length=False), sha256=sha(big))
    assert left_behind(store) == NOTHING


def qemu_img(*args: str) -> None:
    subprocess.run(["qemu-img", *args], check=True, capture_output=True)


def test_a_qcow2_image_is_converted_to_raw(store, image_server, tmp_path):
    raw, qcow2 = tmp_path / "disk.raw", tmp_path / "disk.qcow2"
    raw.write_bytes(DISK)
    qemu_img("convert", "-f", "raw", "-O", "qcow2", str(raw), str(qcow2))
    data = qcow2.read_bytes()
    with job() as output:
        image = store.pull(ALICE, PullRequest(name="cloud", url=image_server.serve("/disk.qcow2", data), sha256=sha(data),
                                              format="qcow2"))
    assert (image.format, image.size, image.disk_bytes) == ("qcow2", len(data), len(DISK))
    assert (store.storage.info(image.volume).path / "disk.raw").read_bytes() == DISK
    assert "image cloud: unpacking the qcow2 image" in output
    # The same bytes asked for as another format are refused: a digest is stored as one image.
    with pytest.raises(ImageError, match="on this node as a qcow2 image, not a raw one"):
        pull(store, name="cloud-raw", url=image_server.url("/disk.qcow2"), sha256=sha(data))


def test_a_qcow2_reading_host_files_or_pretending_to_be_raw_is_refused(store, image_server, tmp_path):
    host_file = tmp_path / "secret"
    host_file.write_bytes(b"the host's own data" * 1000)
    backed, with_data_file = tmp_path / "backed.qcow2", tmp_path / "data-file.qcow2"
    qemu_img("create", "-f", "qcow2", "-b", str(host_file), "-F", "raw", str(backed))
    qemu_img("create", "-f", "qcow2", "-o", f"data_file={host_file}", str(with_data_file), "1M")
    for path, why in ((backed, "has a backing file"), (with_data_file, "has an external data file")):
        data = path.read_bytes()
        with pytest.raises(BadImage, match=why):
            pull(store, name="evil", url=image_server.serve(f"/{path.name}", data), sha256=sha(data), format="qcow2")
    data = backed.read_bytes()
    with pytest.raises(BadImage, match="is a qcow2 image, not a raw disk"):
        pull(store, name="evil", url=image_server.url(f"/{backed.name}"), sha256=sha(data))
    with pytest.raises(BadImage, match="not a qcow2 image"):
        pull(store, name="evil", url=image_server.serve("/raw", DISK), sha256=sha(DISK), format="qcow2")
    assert left_behind(store) == NOTHING


def bundle(members: dict, *, gzip: bool = True, links: dict | None = None) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz" if gzip else "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            if name in (".", "./"):
                info.type = tarfile.DIRTYPE
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
    return buffer.getvalue()


def test_a_bundle_brings_its_kernel_and_cmdline(store, image_server):
    data = bundle({"./disk.raw": DISK, "./vmlinux": b"\x7fELF kernel", "./cmdline": b"console=ttyS0 root=/dev/vda\n"})
    image = pull(store, name="guest", url=image_server.serve("/guest.tar.gz", data), sha256=sha(data), format="bundle")
    assert image.files == ("disk.raw", "vmlinux", "cmdline") and image.as_dict(ALICE)["kernel"]
    path = store.storage.info(image.volume).path
    assert (path / "disk.raw").read_bytes() == DISK and (path / "vmlinux").read_bytes() == b"\x7fELF kernel"
    plain = bundle({"disk.raw": DISK}, gzip=False)
    assert pull(store, name="plain", url=image_server.serve("/plain.tar", plain), sha256=sha(plain), format="bundle").files == (
        "disk.raw",)


@pytest.mark.parametrize(("members", "links", "why"), [
    ({"disk.raw": DISK, "etc/passwd": b"x"}, None, "holds 'etc/passwd'"),
    ({"disk.raw": DISK, "../vmlinux": b"x"}, None, "holds '../vmlinux'"),
    ({"/disk.raw": DISK}, None, "holds '/disk.raw'"),
    ({"disk.raw": DISK}, {"vmlinux": "/etc/shadow"}, "vmlinux is not a regular file"),
    ({"vmlinux": b"x"}, None, "has no disk.raw"),
    ({"disk.raw": DISK, "./disk.raw": DISK}, None, "holds disk.raw twice"),
    ({".": b"", "./": b"", "disk.raw": DISK}, None, "holds ./ twice"),
    ({"disk.raw": DISK, "cmdline": b"x" * 5000}, None, "cmdline is over 4096 bytes"),
])
def test_a_bundle_with_anything_else_is_refused_whole(store, image_server, members, links, why):
    data = bundle(members, links=links)
    with pytest.raises(BadImage, match=why):
        pull(store, name="bad", url=image_server.serve("/bad.tar.gz", data), sha256=sha(data), format="bundle")
    assert left_behind(store) == NOTHING


def test_an_image_that_unpacks_over_the_maximum_is_refused(store, image_server, tmp_path):
    bomb = bundle({"disk.raw": bytes(17 * MIB)})  # a few KiB of gzip
    with pytest.raises(ImageTooLarge, match="the bundle's files are over"):
        pull(store, name="bomb", url=image_server.serve("/bomb.tar.gz", bomb), sha256=sha(bomb), format="bundle")
    qemu_img("create", "-f", "qcow2", str(tmp_path / "wide.qcow2"), "17M")
    wide = (tmp_path / "wide.qcow2").read_bytes()
    with pytest.raises(ImageTooLarge, match="the qcow2 image's disk is 17825792 bytes"):
        pull(store, name="wide", url=image_server.serve("/wide.qcow2", wide), sha256=sha(wide), format="qcow2")
    assert left_behind(store) == NOTHING


def test_signatures_are_checked_against_the_trusted_image_keys(pool_dir, image_server):
    trusted, stranger = nacl.signing.SigningKey.generate(), nacl.signing.SigningKey.generate()
    store = ImageStore(BtrfsStorage(pool_dir), ImagePolicy(trusted_keys=(public_key_text(trusted),), require_signed=True))
    url, digest = image_server.serve("/disk.raw", DISK), sha(DISK)
    with pytest.raises(SignatureRefused, match="this node requires signed images"):
        pull(store, name="disk", url=url, sha256=digest)
    with pytest.raises(SignatureRefused, match="none of this node's trusted image keys"):
        pull(store, name="disk", url=url, sha256=digest, signature=sign(stranger, signed_message(digest)))
    with pytest.raises(SignatureRefused, match="none of this node's trusted image keys"):  # over another text
        pull(store, name="disk", url=url, sha256=digest, signature=sign(trusted, bytes.fromhex(digest)))
    with pytest.raises(SignatureRefused, match="not valid"):
        pull(store, name="disk", url=url, sha256=digest, signature="not-a-signature")
    assert image_server.requests == []  # refused before anything was fetched
    image = pull(store, name="disk", url=url, sha256=digest, signature=sign(trusted, signed_message(digest)))
    assert image.signed_by == public_key_text(trusted)
    assert signed_message(digest) == f"zeronode image sha256:{digest}".encode()  # what docs/rhai-api.md says is signed


def test_a_cancelled_or_late_job_stops_the_download_and_nothing_is_visible(store, image_server):
    token = Token()
    url = image_server.serve("/disk.raw", DISK, halfway=lambda: setattr(token, "cancelled", True))
    with pytest.raises(JobInterrupted, match="the job was cancelled"), job(cancel=token):
        store.pull(ALICE, PullRequest(name="disk", url=url, sha256=sha(DISK)))
    left = left_behind(store)
    assert (left["names"], left["volumes"], len(left["staged"])) == ([], [], 1)  # the part, kept to resume
    with pytest.raises(JobInterrupted, match="the job ran out of time"), job(deadline=-1):
        store.pull(ALICE, PullRequest(name="disk", url=url, sha256=sha(DISK)))
    assert len(image_server.requests) == 1  # out of time before it asked


def test_the_image_volume_stays_while_vm_root_disks_derive_from_it_unless_an_admin_forces(store, image_server):
    image = pull(store, name="disk", url=image_server.serve("/disk.raw", DISK), sha256=sha(DISK))
    volumes = OwnedStorage(store.storage)
    volumes.clone(BOB, image.volume, "web1-root")  # what vm_create does
    with pytest.raises(ImageInUse, match="origin of 1 VM root disk"):
        store.delete(ALICE, "disk")
    with pytest.raises(ImageNotOwned, match="force is for node admins"):
        store.delete(ALICE, "disk", force=True)
    with pytest.raises(ImageInUse, match="origin of web1-root"):
        store.delete(ADMIN, "disk")
    store.delete(ADMIN, "disk", force=True)
    assert left_behind(store) == NOTHING
    assert (volumes.info(BOB, "web1-root").path / "disk.raw").read_bytes() == DISK  # the clone is whole


def test_image_volumes_are_made_and_deleted_only_as_images(store, image_server):
    volumes = OwnedStorage(store.storage)
    with pytest.raises(InvalidName, match="reserved"):  # no one takes the volume of an image before it is pulled
        volumes.create(ALICE, f"img-{sha(DISK)[:32]}")
    image = pull(store, name="disk", url=image_server.serve("/disk.raw", DISK), sha256=sha(DISK))
    with pytest.raises(StorageError, match="delete the image with image_delete"):
        volumes.delete(ADMIN, image.volume)  # even an admin: image_delete knows its names and clones


@pytest.fixture(scope="module")
def tiny_pool(tmp_path_factory):
    """A 40 MiB btrfs of its own, to fill up."""
    base = tmp_path_factory.mktemp("tiny-btrfs")
    image, mount = base / "pool.img", base / "mnt"
    mount.mkdir()
    with open(image, "wb") as file:
        file.truncate(40 * MIB)
    subprocess.run(["mkfs.btrfs", "-q", "--mixed", str(image)], check=True, capture_output=True)
    subprocess.run(["mount", "-o", "loop", str(image), str(mount)], check=True, capture_output=True)
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False, capture_output=True)


def test_a_disk_that_fills_up_is_a_clear_error_and_nothing_is_left(tiny_pool, image_server):
    store = ImageStore(BtrfsStorage(tiny_pool), ImagePolicy(max_bytes=64 * MIB))
    big = os.urandom(48 * MIB)
    with pytest.raises(ImageDiskFull, match="the storage pool filled up while image 'big' was made"):
        pull(store, name="big", url=image_server.serve("/big", big), sha256=sha(big))
    assert left_behind(store) == NOTHING


def test_an_image_signed_with_the_cli_is_pulled_by_a_node_that_trusts_the_key(pool_dir, image_server, zn, tmp_path):
    """`zeronode sign-image` is what a publisher runs: its sha256, signature and key are what a node checks."""
    assert zn("keygen", "--out", str(tmp_path / "publisher.key")).returncode == 0
    (tmp_path / "disk.raw").write_bytes(DISK)
    signed = zn("sign-image", str(tmp_path / "disk.raw"), "--key", str(tmp_path / "publisher.key"))
    assert signed.returncode == 0, signed.stderr
    printed = json.loads(signed.stdout)
    assert printed["sha256"] == sha(DISK)
    store = ImageStore(BtrfsStorage(pool_dir), ImagePolicy(trusted_keys=(printed["public_key"],), require_signed=True))
    image = pull(store, name="disk", url=image_server.serve("/disk.raw", DISK), sha256=printed["sha256"],
                 signature=printed["signature"])
    assert image.signed_by == printed["public_key"]
    missing = zn("sign-image", str(tmp_path / "nope.raw"), "--key", str(tmp_path / "publisher.key"))
    assert missing.returncode == 1 and missing.stderr.count("\n") == 1 and "cannot read image" in missing.stderr
