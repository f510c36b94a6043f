"""Volumes with owners: sal.tenancy's rules over any storage driver.

Drivers know storage only. This layer, which the storage functions and the VM
manager use, records each volume's owner (sal.storage.owners) and decides who
may do what with it:

    see it (info, list)                     its owner, admins; everyone when it is shared (an image)
    change it (delete, snapshot, quota)     its owner, admins
    boot a VM from it (clone)               whoever may see it
    share it                                admins

A volume with no owner is the admins' alone, unless its record says it is
shared: only the node's operator (or another admin) shares one, explicitly
(share). So a volume made outside scripts, or before volumes had owners, shows
to no deployer until an operator gives it an owner or shares it.

A volume the caller may not see answers as a missing one (VolumeNotFound). A
shared volume that a deployer may see but not change is refused as such
(VolumeShared). Names are node-wide: creating a name that is taken, whoever
holds it, is refused (VolumeExists).

Names `img-` and 32 lowercase hex digits are the image store's (sal.images:
one volume per image digest, shared): no one makes a volume under such a name
here, so no script can take an image's volume before it is pulled, and no one
deletes one here either (image_delete does, knowing its names and clones).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from sal.storage.base import (
    InvalidName,
    Storage,
    StorageError,
    Usage,
    Volume,
    VolumeExists,
    VolumeNotFound,
    check_name,
)
from sal.storage.owners import Owners
from sal.tenancy import Caller

IMAGE_VOLUME = re.compile(r"img-[0-9a-f]{32}")  # the image store's volumes (sal.images.base.image_volume)


class VolumeShared(StorageError):
    """A deployer tried to change a shared volume (an image for everyone): only node admins may."""


@dataclass(frozen=True)
class OwnedVolume(Volume):
    owner: str | None  # the signer of the script that made it; None: nobody's (the admins', unless shared)
    shared: bool  # an image the node's operator shared: every deployer may see it and boot from it

    def as_dict(self) -> dict:
        # Not "shared": Rhai reserves that word (and is_shared), so a script could not write `v.shared`.
        return {**super().as_dict(), "owner": self.owner, "shared_image": self.shared}

    def visible_to(self, caller: Caller) -> bool:
        return self.shared or caller.may_act_on(self.owner)


class OwnedStorage:
    def __init__(self, driver: Storage):
        self.driver = driver
        self.root = driver.root
        self.owners = Owners(driver.root)

    # -- what a caller may see and change --------------------------------------------

    def info(self, caller: Caller, name: str) -> OwnedVolume:
        """The volume, if the caller may see it."""
        volume = self._owned(name)
        if not volume.visible_to(caller):
            raise VolumeNotFound(f"no volume {name!r}")  # the driver's words for a missing one: nothing tells them apart
        return volume

    def changeable(self, caller: Caller, name: str) -> OwnedVolume:
        """The volume, if the caller may change it: delete it, snapshot it, set its quota, attach it to a VM."""
        volume = self.info(caller, name)
        if not caller.may_act_on(volume.owner):
            raise VolumeShared(f"volume {name!r} is shared on this node (an image for everyone): only a node admin may change it")
        return volume

    def list(self, caller: Caller) -> list[OwnedVolume]:
        """The volumes the caller may see, by name."""
        volumes = (self._with_owner(volume) for volume in self.driver.list())
        return [volume for volume in volumes if volume.visible_to(caller)]

    def usage(self, caller: Caller, name: str) -> Usage:
        self.info(caller, name)
        return self.driver.usage(name)

    def _owned(self, name: str) -> OwnedVolume:
        return self._with_owner(self.driver.info(name))

    def _with_owner(self, volume: Volume) -> OwnedVolume:
        record = self.owners.of(volume.name)
        return OwnedVolume(**vars(volume), owner=record.owner, shared=record.shared)

    # -- changes: each under the pool's ownership lock, so no two runners interleave a check and its change --

    def create(self, caller: Caller, name: str, *, quota_bytes: int | None = None) -> OwnedVolume:
        """A new volume owned by the caller; made by the operator, it has no owner: the admins' until shared."""
        check_name(name)
        with self.owners.locked():
            return self._make(caller, name, lambda: self.driver.create(name, quota_bytes=quota_bytes))

    def snapshot(self, caller: Caller, source: str, name: str, *, read_only: bool = True) -> OwnedVolume:
        """A snapshot of a volume the caller may change, owned by the caller: a shared image is not snapshotted
        by a deployer, it is only booted from (clone)."""
        check_name(source), check_name(name)
        with self.owners.locked():
            self.changeable(caller, source)
            return self._make(caller, name, lambda: self.driver.snapshot(source, name, read_only=read_only))

    def clone(self, caller: Caller, image: str, name: str) -> OwnedVolume:
        """A writable snapshot, owned by the caller, of a volume the caller may see: a VM's root disk from its image."""
        check_name(image), check_name(name)
        with self.owners.locked():
            self.info(caller, image)
            return self._make(caller, name, lambda: self.driver.snapshot(image, name, read_only=False))

    def delete(self, caller: Caller, name: str, *, recursive: bool = False) -> None:
        if IMAGE_VOLUME.fullmatch(check_name(name)):
            raise StorageError(f"volume {name!r} is an image's: delete the image with image_delete")
        with self.owners.locked():
            volume = self.changeable(caller, name)
            # The record first: a crash between leaves a volume with no record, the admins', never a record that
            # a volume made again under the name outside this layer would take for its own (shared, say).
            self.owners.set(name, None)
            try:
                self.driver.delete(name, recursive=recursive)
            except BaseException:
                if self.driver.exists(name):  # refused (say, it has snapshots): it stays as it was
                    self._record(volume)
                raise

    def _record(self, volume: OwnedVolume) -> None:
        if volume.shared:
            self.owners.share(volume.name)
        else:
            self.owners.set(volume.name, volume.owner)

    def share(self, caller: Caller, name: str) -> OwnedVolume:
        """Make the volume a shared image: every deployer sees it and may boot VMs from it, only admins change it.
        For the node's operator (OPERATOR) and admins; it takes the place of any owner the volume had."""
        check_name(name)
        if not caller.admin:
            raise StorageError("only a node admin may share a volume")
        with self.owners.locked():
            self.info(caller, name)  # it must exist: a record alone would share whatever volume is made under the name
            self.owners.share(name)
            return self._owned(name)

    def set_quota(self, caller: Caller, name: str, limit_bytes: int | None) -> None:
        with self.owners.locked():
            self.changeable(caller, name)
            self.driver.set_quota(name, limit_bytes)

    def _make(self, caller: Caller, name: str, make: Callable[[], Volume]) -> OwnedVolume:
        """Make volume `name` for the caller, its owner recorded before it exists (sal.storage.owners says why)."""
        if IMAGE_VOLUME.fullmatch(name):
            raise InvalidName(f"volume name {name!r} is reserved: img-<32 hex digits> names the node's images (image_pull)")
        if self.driver.exists(name):
            raise VolumeExists(f"the volume name {name!r} is taken on this node (volume names are node-wide)")
        self.owners.set(name, caller.owner)  # None also clears a record a crash left behind
        try:
            make()
        except VolumeExists:
            self.owners.set(name, None)  # made meanwhile outside this layer (by hand): not the caller's
            raise
        except BaseException:
            # A volume made but then refused (say, its quota) keeps its owner, who may then delete it.
            if not self.driver.exists(name):
                self.owners.set(name, None)
            raise
        return self._owned(name)
