"""Which names point at which image: one small JSON record per name, in the pool's hidden `.images` directory.

    POOL/.images/names/ubuntu.json   {"format": 1, "name": "ubuntu", "sha256": "<64 hex>", "volume": "img-<32 hex>",
                                      "image_format": "qcow2", "size": ..., "disk_bytes": ..., "files": ["disk.raw"],
                                      "owner": "<the signer's key>", "signed_by": null, "url": "https://...",
                                      "pulled": 1700000000.0}
    POOL/.images/.lock               serialises changes to names and to image volumes
    POOL/.images/locks/0a            one pull at a time of the digests that start with 0a

Many names may point at one digest; its volume goes with the last of them.
`.images` cannot collide with a volume (no volume name starts with a dot), and
is 0700 with 0600 records, written whole or not at all. Digest locks are 256
files, one per first byte of the digest, not one per digest: a lock file cannot
be removed safely while another process may be about to lock it, and 256 never
grow; two pulls of different digests seldom share one, and then merely wait.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from sal.context import check_interrupted
from sal.images.base import Image, ImageError, check_image_name
from sal.storage.base import NAME
from zeronode.files import read_json, write_atomic

DIRECTORY = ".images"
FORMAT = 1
LOCK_POLL = 0.2  # seconds between tries of a digest lock another pull holds

log = logging.getLogger("zeronode.images")


class Catalog:
    def __init__(self, root: Path):
        # Nothing is made here: the VM manager builds one only to look names up.
        self.directory = Path(root) / DIRECTORY
        self.names = self.directory / "names"

    def _path(self, name: str) -> Path:
        return self.names / f"{check_image_name(name)}.json"

    # -- reading ------------------------------------------------------------------------

    def get(self, name: str) -> Image | None:
        """The image named `name`, None when there is none; an unreadable record is refused, never guessed."""
        path = self._path(name)
        data = read_json(path, ImageError, f"the record of image {name!r}")
        if data is None:
            return None
        try:
            if data.get("format") != FORMAT or data.get("name") != name:
                raise ValueError("not a format 1 record of this name")
            return Image(
                name=name, sha256=data["sha256"], volume=data["volume"], format=data["image_format"],
                size=data["size"], disk_bytes=data["disk_bytes"], files=tuple(data["files"]), owner=data["owner"],
                signed_by=data["signed_by"], url=data["url"], pulled=data["pulled"],
            )
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise ImageError(f"the record of image {name!r} is malformed ({path}): {exc}") from None

    def all(self) -> list[Image]:
        """Every image, by name; a record that cannot be read is left out (and logged), not the whole list."""
        if not self.names.is_dir():
            return []
        images = []
        for path in sorted(self.names.glob("*.json")):
            name = path.name.removesuffix(".json")
            if not NAME.fullmatch(name):
                continue
            try:
                image = self.get(name)
            except ImageError as exc:
                log.warning("image record not read", extra={"image": name, "error": str(exc)})
                continue
            if image is not None:
                images.append(image)
        return sorted(images, key=lambda image: image.name)

    def volume_of(self, name: str) -> str | None:
        """The volume of the image named `name`, or None (also for a name that could not be an image's)."""
        if not isinstance(name, str) or not NAME.fullmatch(name):
            return None
        image = self.get(name)
        return image.volume if image else None

    # -- changing (under `locked`) ---------------------------------------------------------

    def put(self, image: Image) -> None:
        self.names.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_atomic(self._path(image.name), json.dumps({
            "format": FORMAT, "name": image.name, "sha256": image.sha256, "volume": image.volume,
            "image_format": image.format, "size": image.size, "disk_bytes": image.disk_bytes,
            "files": list(image.files), "owner": image.owner, "signed_by": image.signed_by, "url": image.url,
            "pulled": image.pulled,
        }))

    def remove(self, name: str) -> None:
        self._path(name).unlink(missing_ok=True)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the catalog's lock (names and image volumes). Taken before the pool's ownership lock, never after."""
        self.directory.mkdir(mode=0o700, exist_ok=True)
        with open(self.directory / ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    @contextlib.contextmanager
    def digest_locked(self, digest: str, *, waiting: Callable[[], None] = lambda: None) -> Iterator[None]:
        """Hold the lock of `digest`'s pulls, waiting for another pull of it as long as the job may (`waiting`
        is called once, when it must wait)."""
        with self._digest_lock(digest) as lock:
            told = False
            while not _try_lock(lock):
                if not told:
                    waiting()
                    told = True
                check_interrupted("waiting for another pull of the image")
                time.sleep(LOCK_POLL)
            yield

    def digest_busy(self, digest: str) -> bool:
        """Whether a pull holds `digest`'s lock now."""
        with self._digest_lock(digest) as lock:
            return not _try_lock(lock)

    @contextlib.contextmanager
    def _digest_lock(self, digest: str) -> Iterator:
        locks = self.directory / "locks"
        locks.mkdir(mode=0o700, parents=True, exist_ok=True)
        with open(locks / digest[:2], "a") as lock:
            yield lock


def _try_lock(lock) -> bool:
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True
