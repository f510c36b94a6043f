"""Images as Rhai scripts see them: functions taking maps, returning maps.

    let img = image_pull(#{ name: "debian-12", url: "https://.../debian-12.qcow2",
                            sha256: "<64 hex>", format: "qcow2", signature: "<base64url>" });
    image_info("debian-12");       // #{ name, sha256, volume, format, size, disk_bytes, files, kernel, owner, ... }
    image_list();                  // every image of the node, by name
    image_delete("debian-12");     // or #{ name: "debian-12", force: true } (node admins)
    vm_create(#{ name: "web1", image: "debian-12", ... });   // an image name, or its volume (img.volume)

Each acts for the job's signer (sal.tenancy): what it pulls is named for the
signer, every tenant sees every image, and only the signer that pulled a name
(or a node admin) deletes it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sal.errors import configured, spec, spec_named
from sal.images.base import PullRequest
from sal.images.store import ImageStore
from sal.tenancy import current_caller


def functions(store: ImageStore | None) -> dict[str, Callable[..., Any]]:
    images = configured(store, "images need storage on this node (set storage_root)")

    def image_pull(arguments: dict) -> dict:
        args = spec("image_pull", arguments, required={"name": str, "url": str, "sha256": str},
                    optional={"format": str, "signature": str})
        caller = current_caller()
        return images().pull(caller, PullRequest(**args)).as_dict(caller)

    def image_delete(name_or_arguments: str | dict) -> None:
        args = spec_named("image_delete", name_or_arguments, optional={"force": bool})
        images().delete(current_caller(), args["name"], force=args.get("force", False))

    def image_info(name: str) -> dict:
        caller = current_caller()
        return images().info(name).as_dict(caller)

    def image_list() -> list[dict]:
        caller = current_caller()
        return [image.as_dict(caller) for image in images().list()]

    return {
        "image_pull": image_pull,
        "image_delete": image_delete,
        "image_info": image_info,
        "image_list": image_list,
    }
