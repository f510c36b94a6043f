"""Storage SAL: volumes, snapshots, quotas and replication. The interface is in base.py, drivers in drivers/ (btrfs),
and volumes' owners over any driver in owned.py (records: owners.py)."""

from sal.storage.base import InvalidName, Storage, StorageError, Usage, Volume, VolumeExists, VolumeNotFound, check_name
from sal.storage.owned import OwnedStorage, OwnedVolume, VolumeShared

__all__ = [
    "InvalidName",
    "OwnedStorage",
    "OwnedVolume",
    "Storage",
    "StorageError",
    "Usage",
    "Volume",
    "VolumeExists",
    "VolumeNotFound",
    "VolumeShared",
    "check_name",
]
