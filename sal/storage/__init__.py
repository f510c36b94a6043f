"""Storage SAL: volumes, snapshots, quotas and replication (btrfs)."""

from sal.storage.base import InvalidName, Storage, StorageError, Usage, Volume, VolumeExists, VolumeNotFound, check_name
from sal.storage.btrfs import BtrfsStorage

__all__ = [
    "BtrfsStorage",
    "InvalidName",
    "Storage",
    "StorageError",
    "Usage",
    "Volume",
    "VolumeExists",
    "VolumeNotFound",
    "check_name",
]
