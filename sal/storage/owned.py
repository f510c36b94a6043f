"""Volumes with owners: sal.tenancy's rules over any storage driver.

Drivers know storage only. This layer, which the storage functions and the VM
manager use, records each volume's owner (sal.storage.owners) and decides who
may do what with it:

    see it (info, list)                     its owner, admins; everyone when it has no owner (a shared image)
    change it (delete, snapshot, quota)     its owner, admins
    boot a VM from it (clone)               whoever may see it

A volume the caller may not see answers as a missing one (VolumeNotFound). A
shared volume that a deployer may see but not change is refused as such
(VolumeShared). Names are node-wide: creating a name that is taken, whoever
holds it, is refused (VolumeExists).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sal.storage.base import Storage, StorageError, Usage, Volume, VolumeExists, VolumeNotFound, check_name
from sal.storage.owners import Owners
from sal.tenancy import Caller


class VolumeShared(StorageError):
    """A deployer tried to change a volume that has no owner (a shared image): only node admins may."""


@dataclass(frozen=True)
class OwnedVolume(Volume):
    owner: str | None  # the signer of the script that made it; None: shared, made by the node's operator

    def as_dict(self) -> dict:
        return {**super().as_dict(), "owner": self.owner}


class OwnedStorage:
    def __init__(self, driver: Storage):
        self.driver = driver
        self.root = driver.root
        self.owners = Owners(driver.root)

    # -- what a caller may see and change --------------------------------------------

    def info(self, caller: Caller, name: str) -> OwnedVolume:
        """The volume, if the caller may see it."""
        volume = self._owned(name)
        if not (volume.owner is None or caller.may_act_on(volume.owner)):
            raise VolumeNotFound(f"no volume {name!r}")  # the driver's words for a missing one: nothing tells them apart
        return volume

    def changeable(self, caller: Caller, name: str) -> OwnedVolume:
        """The volume, if the caller may change it: delete it, snapshot it, set its quota, attach it to a VM."""
        volume = self.info(caller, name)
        if not caller.may_act_on(volume.owner):
            raise VolumeShared(f"volume {name!r} is shared on this node (it has no owner): only a node admin may change it")
        return volume

    def list(self, caller: Caller) -> list[OwnedVolume]:
        """The volumes the caller may see, by name."""
        volumes = (self._with_owner(volume) for volume in self.driver.list())
        return [volume for volume in volumes if volume.owner is None or caller.may_act_on(volume.owner)]

    def usage(self, caller: Caller, name: str) -> Usage:
        self.info(caller, name)
        return self.driver.usage(name)

    def _owned(self, name: str) -> OwnedVolume:
        return self._with_owner(self.driver.info(name))

    def _with_owner(self, volume: Volume) -> OwnedVolume:
        return OwnedVolume(**vars(volume), owner=self.owners.of(volume.name))

    # -- changes: each under the pool's ownership lock, so no two runners interleave a check and its change --

    def create(self, caller: Caller, name: str, *, quota_bytes: int | None = None) -> OwnedVolume:
        """A new volume owned by the caller (no owner, when the caller is the operator)."""
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
        with self.owners.locked():
            self.changeable(caller, name)
            self.driver.delete(name, recursive=recursive)
            self.owners.set(name, None)  # after the volume: a crash between leaves a record of nothing, not a shared volume

    def set_quota(self, caller: Caller, name: str, limit_bytes: int | None) -> None:
        with self.owners.locked():
            self.changeable(caller, name)
            self.driver.set_quota(name, limit_bytes)

    def _make(self, caller: Caller, name: str, make: Callable[[], Volume]) -> OwnedVolume:
        """Make volume `name` for the caller, its owner recorded before it exists (sal.storage.owners says why)."""
        if self.driver.exists(name):
            raise VolumeExists(f"the volume name {name!r} is taken on this node (volume names are node-wide)")
        self.owners.set(name, caller.owner)  # None also clears a record a crash left behind
        try:
            make()
        except VolumeExists:
            self.owners.set(name, None)  # made meanwhile outside this layer (by hand): not the caller's
            raise
        except BaseException:
            # A volume made but then refused (say, its quota) keeps its owner: without one it would be shared.
            if not self.driver.exists(name):
                self.owners.set(name, None)
            raise
        return self._owned(name)
