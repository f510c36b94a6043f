"""Storage SAL: volumes, snapshots, quotas and replication. The interface is here; drivers are in drivers/ (btrfs)."""

from sal.storage.base import InvalidName, Storage, StorageError, Usage, Volume, VolumeExists, VolumeNotFound, check_name

__all__ = [
    "InvalidName",
    "Storage",
    "StorageError",
    "Usage",
    "Volume",
    "VolumeExists",
    "VolumeNotFound",
    "check_name",
]
