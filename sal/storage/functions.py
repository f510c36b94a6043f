"""The storage SAL as Rhai scripts see it: functions taking maps, returning maps.

    let data = volume_create(#{ name: "web1-data", quota_mb: 1024 });
    let snap = volume_snapshot(#{ source: "web1-data", name: "web1-data-1" });
    volume_list();                              // [#{ name, id, uuid, read_only, owner, ... }]
    volume_delete("web1-data-1");               // or #{ name: "...", recursive: true }

Each acts for the job's signer (sal.tenancy): what it creates is the signer's,
and it sees and changes only what the signer may (sal.storage.owned).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sal import capacity
from sal.capacity import Ratios
from sal.errors import configured, spec, spec_named
from sal.storage.base import Storage
from sal.storage.owned import OwnedStorage
from sal.tenancy import current_caller

MIB = 1024 * 1024


def functions(storage: Storage | None, ratios: Ratios | None = None) -> dict[str, Callable[..., Any]]:
    volumes = configured(OwnedStorage(storage) if storage else None, "storage is not configured on this node (set storage_root)")

    def volume_create(arguments: dict) -> dict:
        args = spec("volume_create", arguments, required={"name": str}, optional={"quota_mb": int})
        quota = args["quota_mb"] * MIB if args.get("quota_mb") else None
        owned = volumes()
        if quota and ratios is not None and storage is not None:
            # A quota is a promise of disk: all of them together stay within the pool and its ratio. (Two jobs
            # creating at once may both pass: runners of one node are few, and the next report shows it.)
            capacity.check_room(capacity.Resources(0, 0, quota), capacity.host_total(storage.root),
                                capacity.quotas(storage), ratios)
        return owned.create(current_caller(), args["name"], quota_bytes=quota).as_dict()

    def volume_snapshot(arguments: dict) -> dict:
        args = spec("volume_snapshot", arguments, required={"source": str, "name": str}, optional={"read_only": bool})
        snapshot = volumes().snapshot(current_caller(), args["source"], args["name"], read_only=args.get("read_only", True))
        return snapshot.as_dict()

    def volume_delete(name_or_arguments: str | dict) -> None:
        args = spec_named("volume_delete", name_or_arguments, optional={"recursive": bool})
        volumes().delete(current_caller(), args["name"], recursive=args.get("recursive", False))

    def volume_info(name: str) -> dict:
        return volumes().info(current_caller(), name).as_dict()

    def volume_list() -> list[dict]:
        return [volume.as_dict() for volume in volumes().list(current_caller())]

    return {
        "volume_create": volume_create,
        "volume_snapshot": volume_snapshot,
        "volume_delete": volume_delete,
        "volume_info": volume_info,
        "volume_list": volume_list,
    }
