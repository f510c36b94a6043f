"""The node's images: pulled (downloaded, verified, unpacked), listed, deleted; stored once per digest.

A pull, step by step:

1. Check the request (name, URL, digest, format) and the signature against the node's trusted image keys,
   before anything is fetched.
2. The name is taken with this digest already: that image, at once (image_pull is idempotent). The digest is
   stored already under another name: a new name for the same volume.
3. Otherwise, holding the digest's lock (a second pull of it waits for the first, then finds it done): download
   into a scratch subvolume of the pool that no listing shows (the storage driver's `stage`), resuming the part an
   interrupted pull left; check the sha256; unpack (sal.images.unpack); write `image.json`, the image's own
   record, into it.
4. Publish it as the read-only volume `img-<32 hex>`, shared (every tenant sees it and boots from it, only this
   store deletes it), then record the name: the volume is whole before it is visible, and the name follows it.

What a failure leaves: a download that stopped short (a dropped connection, a server error, the job cancelled
or out of time) keeps its part in the scratch subvolume, for the next pull of the digest to resume; anything
else (a wrong digest, too large, a bad image, a full disk) removes it. Parts left alone for PARTS_KEPT_FOR are
removed by the next pull of any image. Nothing half-made is ever visible.

Delete: only the name's owner or a node admin; the volume goes with the last name pointing at it, unless VM
root disks were cloned from it (ImageInUse), which only a node admin may force (the VMs keep their disks:
clones are whole volumes).
"""

from __future__ import annotations

import errno
import json
import logging
import time

from sal.context import report
from sal.errors import JobInterrupted
from sal.images.base import (
    DigestMismatch,
    DownloadError,
    Image,
    ImageDiskFull,
    ImageError,
    ImageExists,
    ImageInUse,
    ImageNotFound,
    ImageNotOwned,
    ImagePolicy,
    PullRequest,
    SignatureRefused,
    check_image_name,
    image_volume,
    signed_message,
)
from sal.images.catalog import Catalog
from sal.images.download import check_url, fetch
from sal.images.unpack import DISK, unpack
from sal.storage.base import Storage, StorageError
from sal.storage.owned import OwnedStorage
from sal.tenancy import Caller
from zeronode.files import read_json, write_atomic
from zeronode.protocol.errors import MalformedKey
from zeronode.protocol.keys import verify_signature

IMAGE_RECORD = "image.json"  # in the image's volume: its full digest and format, for later pulls of the digest
DOWNLOAD = "download"
STAGING_PREFIX = "image-"
PARTS_KEPT_FOR = 24 * 3600.0  # seconds a part nobody resumes stays on disk
MIB = 1024 * 1024

log = logging.getLogger("zeronode.images")


class ImageStore:
    def __init__(self, storage: Storage, policy: ImagePolicy | None = None):
        self.storage = storage
        self.policy = policy or ImagePolicy()
        self.catalog = Catalog(storage.root)
        self.volumes = OwnedStorage(storage)  # its owner records share the image volumes; its lock orders clones

    # -- reading ---------------------------------------------------------------------------

    def info(self, name: str) -> Image:
        image = self.catalog.get(check_image_name(name))
        if image is None:
            raise ImageNotFound(f"no image {name!r}")
        return image

    def list(self) -> list[Image]:
        return self.catalog.all()

    # -- pulling ---------------------------------------------------------------------------

    def pull(self, caller: Caller, request: PullRequest) -> Image:
        check_url(request.url)
        signed_by = self._signed_by(request)
        with self.catalog.locked():
            if found := self._found(caller, request, signed_by):
                return found
        with self.catalog.digest_locked(request.sha256, waiting=lambda: report(
                f"image {request.name}: another job is pulling this digest; waiting for it")):
            with self.catalog.locked():  # the pull we waited for may have made it
                if found := self._found(caller, request, signed_by):
                    return found
            self._remove_abandoned_parts()
            key = STAGING_PREFIX + request.sha256
            self._build(key, request)
            with self.catalog.locked():
                return self._publish(caller, key, request, signed_by)

    def _signed_by(self, request: PullRequest) -> str | None:
        """The trusted key that signed the request's digest; None for an unsigned image where the node allows it."""
        if request.signature is None:
            if self.policy.require_signed:
                raise SignatureRefused("this node requires signed images: give the image's `signature`")
            return None
        if not self.policy.trusted_keys:
            raise SignatureRefused("this node trusts no image key (trusted_image_keys), so no signature can be checked")
        message = signed_message(request.sha256)
        try:
            for key in self.policy.trusted_keys:
                if verify_signature(key, message, request.signature):
                    return key
        except MalformedKey as exc:
            raise SignatureRefused(f"the signature is not valid: {exc}") from None
        raise SignatureRefused("the signature is by none of this node's trusted image keys")

    def _found(self, caller: Caller, request: PullRequest, signed_by: str | None) -> Image | None:
        """The image, when the name or the digest is here already (the catalog's lock held)."""
        named = self.catalog.get(request.name)
        if named is not None:
            if named.sha256 != request.sha256:
                raise ImageExists(f"the image name {request.name!r} is taken on this node by another digest "
                                  "(image names are node-wide)")
            self._same_format(named.format, request)
            return named
        stored = self._stored(request.sha256)
        if stored is None:
            return None
        self._same_format(stored["image_format"], request)
        return self._name(caller, request, stored, signed_by)

    @staticmethod
    def _same_format(stored: str, request: PullRequest) -> None:
        if stored != request.format:
            raise ImageError(f"this digest is on this node as a {stored} image, not a {request.format} one")

    def _stored(self, digest: str) -> dict | None:
        """The image record in the volume of `digest`, if that volume is here; refused when it holds another."""
        volume = image_volume(digest)
        if not self.storage.exists(volume):
            return None
        record = read_json(self.storage.info(volume).path / IMAGE_RECORD, ImageError, f"the image record of {volume!r}")
        if not isinstance(record, dict) or record.get("sha256") != digest:
            raise ImageError(f"volume {volume!r} does not hold the image of sha256 {digest}")
        return record

    def _name(self, caller: Caller, request: PullRequest, stored: dict, signed_by: str | None) -> Image:
        image = Image(
            name=request.name, sha256=request.sha256, volume=image_volume(request.sha256), format=request.format,
            size=stored["size"], disk_bytes=stored["disk_bytes"], files=tuple(stored["files"]), owner=caller.owner,
            signed_by=signed_by, url=request.url, pulled=time.time(),
        )
        self.catalog.put(image)
        log.info("image named", extra={"image": image.name, "sha256": image.sha256, "volume": image.volume})
        return image

    def _build(self, key: str, request: PullRequest) -> None:
        """Download, check and unpack the image in staging `key`; on failure keep only a part worth resuming."""
        staged = self.storage.stage(key)
        for entry in staged.iterdir():  # what an interrupted unpacking left: only the download is worth keeping
            if entry.name != DOWNLOAD:
                entry.unlink()
        download = staged / DOWNLOAD
        verified = False
        try:
            report(f"image {request.name}: downloading from {check_url(request.url).host}"
                   + (f", resuming at {_mib(download.stat().st_size)}" if download.exists() else ""))
            digest = fetch(request.url, download, max_bytes=self.policy.max_bytes, progress=Progress(request.name))
            if digest != request.sha256:
                raise DigestMismatch(f"the download's sha256 is {digest}, not {request.sha256}: nothing of it is kept")
            verified = True
            size = download.stat().st_size  # before unpacking, which removes the download
            if request.format != "raw":
                report(f"image {request.name}: unpacking the {request.format} image")
            files = unpack(request.format, download, staged, max_bytes=self.policy.max_bytes,
                           qemu_img=self.policy.qemu_img)
            write_atomic(staged / IMAGE_RECORD, json.dumps({
                "format": 1, "sha256": request.sha256, "image_format": request.format,
                "size": size, "disk_bytes": (staged / DISK).stat().st_size,
                "files": list(files),
            }))
        except (DownloadError, JobInterrupted) as exc:
            # A part of the right file, kept to resume; once verified, a stopped unpacking starts over.
            if verified or not download.exists() or download.stat().st_size == 0:
                self.storage.discard(key)
            log.info("image pull stopped", extra={"image": request.name, "error": str(exc)})
            raise
        except OSError as exc:
            self.storage.discard(key)
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise ImageDiskFull(f"the storage pool filled up while image {request.name!r} was made: "
                                    "nothing of it is kept") from None
            raise ImageError(f"image {request.name!r} could not be made: {exc}") from None
        except BaseException:
            self.storage.discard(key)
            raise

    def _publish(self, caller: Caller, key: str, request: PullRequest, signed_by: str | None) -> Image:
        """Make the staged image the shared, read-only volume of its digest, then name it (the catalog's lock held)."""
        if self.catalog.get(request.name) is not None:
            # Another pull took the name meanwhile, with another digest (one with this digest would have waited
            # for this one): this image would have no name.
            self.storage.discard(key)
            raise ImageExists(f"the image name {request.name!r} was taken on this node meanwhile by another digest")
        volume = image_volume(request.sha256)
        with self.volumes.owners.locked():
            self.volumes.owners.share(volume)  # before the volume is there (sal.storage.owners says why)
            try:
                self.storage.publish(key, volume)
            except BaseException:
                if not self.storage.exists(volume):
                    self.volumes.owners.set(volume, None)
                self.storage.discard(key)
                raise
        report(f"image {request.name}: ready as volume {volume}")
        return self._name(caller, request, self._stored(request.sha256), signed_by)

    def _remove_abandoned_parts(self) -> None:
        """Remove the parts of pulls that nobody resumed for PARTS_KEPT_FOR (and that no pull holds now)."""
        now = time.time()
        for key, used in self.storage.staged().items():
            digest = key.removeprefix(STAGING_PREFIX)
            if key.startswith(STAGING_PREFIX) and now - used > PARTS_KEPT_FOR and not self.catalog.digest_busy(digest):
                try:
                    self.storage.discard(key)
                except StorageError as exc:
                    log.warning("abandoned image part not removed", extra={"staging": key, "error": str(exc)})

    # -- deleting --------------------------------------------------------------------------

    def delete(self, caller: Caller, name: str, *, force: bool = False) -> None:
        """Remove the name; with the last name of a digest, its volume too (see the module's docstring)."""
        check_image_name(name)
        if force and not caller.admin:
            raise ImageNotOwned("force is for node admins")
        with self.catalog.locked():
            image = self.info(name)
            if not caller.may_act_on(image.owner):
                raise ImageNotOwned(f"image {name!r} was pulled by another signer: only it or a node admin may delete it")
            if any(other.sha256 == image.sha256 and other.name != name for other in self.catalog.all()):
                self.catalog.remove(name)  # other names still point at its volume
                return
            with self.volumes.owners.locked():  # no clone of the volume starts meanwhile (OwnedStorage.clone)
                if not self.storage.exists(image.volume):
                    self.catalog.remove(name)
                    return
                uuid = self.storage.info(image.volume).uuid
                clones = [volume for volume in self.storage.list() if volume.parent_uuid == uuid]
                if clones and not force:
                    raise ImageInUse(f"image {name!r} is the origin of {self._clones(caller, clones)}: delete those "
                                     "VMs first (a node admin may force it)")
                # The name first: a crash between leaves a volume no name points at, which the next pull of the
                # digest takes up again, never a name pointing at nothing.
                self.catalog.remove(name)
                self.volumes.owners.set(image.volume, None)
                self.storage.delete(image.volume)
        log.info("image deleted", extra={"image": name, "volume": image.volume, "forced": force})

    def _clones(self, caller: Caller, clones: list) -> str:
        """The clones, by name where the caller may see them; another tenant's are only counted."""
        visible = [clone.name for clone in clones if caller.may_act_on(self.volumes.owners.of(clone.name).owner)]
        hidden = len(clones) - len(visible)
        parts = [", ".join(visible)] if visible else []
        if hidden:
            parts.append(f"{hidden} VM root disk(s) of other tenants")
        return " and ".join(parts)


class Progress:
    """Reports a download's progress to the job's output: at each tenth of it, or each 256 MiB of an unknown size."""

    def __init__(self, name: str):
        self.name = name
        self.mark: int | None = None  # the last tenth (or 256 MiB) reached

    def __call__(self, have: int, total: int | None) -> None:
        mark = have // (max(1, total // 10) if total else 256 * MIB)
        if self.mark is not None and mark > self.mark:
            of = f" of {_mib(total)}" if total else ""
            report(f"image {self.name}: {_mib(have)}{of}")
        self.mark = mark  # the first call says where the download starts (a resume): nothing to report yet


def _mib(size: int | None) -> str:
    return f"{(size or 0) / MIB:.1f} MiB"

