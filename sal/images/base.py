"""Images on a node: what one is, how it is named and asked for, and what can go wrong pulling one.

An image is a read-only volume holding `disk.raw` and optionally `vmlinux`,
`initramfs` and `cmdline`: what vm_create boots (sal.hypervisor.manager). It
is made from a download whose sha256 the script gives, and is stored once per
digest, in the volume `img-` + the digest's first 32 hex digits, however many
names point at it. Names are node-wide, like volume names, and every tenant
sees every image: images are public on their node.

A signature, when there is one, is Ed25519 (zeronode.protocol.keys: unpadded
base64url) over the ASCII text `zeronode image sha256:` followed by the 64
lowercase hex digits of the download's sha256 (signed_message): it vouches for
exactly the bytes the digest names, and cannot be taken for a signature over
anything else zeronode verifies.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sal.errors import SalError
from sal.storage.base import NAME
from sal.tenancy import Caller

FORMATS = ("raw", "qcow2", "bundle")
DIGEST = re.compile(r"[0-9a-f]{64}")
GIB = 1024**3
DEFAULT_MAX_BYTES = 20 * GIB
MAX_URL_CHARS = 2048


class ImageError(SalError):
    """An image operation was refused or failed; the message says what and why."""


class InvalidImageName(ImageError, ValueError):
    """An image name that is not 1-64 letters, digits, '.', '_' or '-' (refused before any syscall)."""


class ImageNotFound(ImageError):
    pass


class ImageExists(ImageError):
    """The name points at another digest (names are node-wide; the same name and digest again is no error)."""


class ImageNotOwned(ImageError):
    """Only the signer that pulled an image under this name, or a node admin, may delete the name."""


class ImageInUse(ImageError):
    """The image's volume would go while VM root disks cloned from it remain (a node admin may force it)."""


class ImageTooLarge(ImageError):
    """The download, or what it unpacks to, is beyond the node's max_image_bytes."""


class ImageDiskFull(ImageError):
    """The storage pool filled up while the image was made; what was made is removed."""


class BadImage(ImageError):
    """The download is not an image of its format: not a qcow2, a qcow2 with a backing or data file, a bundle
    with other members than disk.raw, vmlinux, initramfs and cmdline..."""


class DigestMismatch(ImageError):
    """The download's sha256 is not the one the script gave; nothing of it is kept."""


class SignatureRefused(ImageError):
    """No signature where the node requires one, or a signature by none of the node's trusted image keys."""


class DownloadError(ImageError):
    """The image could not be downloaded: a bad URL, a server that cannot be reached or answers an error."""


class DownloadInterrupted(DownloadError):
    """The download stopped before its end (the connection dropped, the body came short): what came is kept, and
    pulling again resumes it."""


class UnsafeRedirect(DownloadError):
    """The server redirected to another scheme (https to http, say), or too many times."""


def check_image_name(name: Any) -> str:
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise InvalidImageName(
            f"invalid image name {name!r}: use 1-64 letters, digits, '.', '_' or '-', not starting with '.'"
        )
    return name


def check_digest(digest: Any) -> str:
    """The sha256 as 64 lowercase hex digits (upper case is taken too)."""
    if isinstance(digest, str) and DIGEST.fullmatch(digest.lower()):
        return digest.lower()
    raise ImageError(f"sha256 must be 64 hex digits, got {digest!r}")


def image_volume(digest: str) -> str:
    """The volume that holds the image of `digest`: 128 bits of it name the volume, and the image's own record
    (image.json, in the volume) holds all 256, which a later pull of the digest checks."""
    return f"img-{check_digest(digest)[:32]}"


def signed_message(digest: str) -> bytes:
    """What an image's signature signs (see the module's docstring)."""
    return f"zeronode image sha256:{check_digest(digest)}".encode("ascii")


@dataclass(frozen=True)
class ImagePolicy:
    """A node's rules for images (its settings: max_image_bytes, trusted_image_keys, require_signed_images)."""

    max_bytes: int = DEFAULT_MAX_BYTES  # the download, and what it unpacks to (a qcow2's virtual size, a bundle's files)
    trusted_keys: tuple[str, ...] = ()  # base64url Ed25519 public keys whose signatures this node accepts
    require_signed: bool = False  # refuse images without a signature by a trusted key
    qemu_img: str = "qemu-img"  # converts qcow2 to raw (Debian's qemu-utils)


@dataclass(frozen=True)
class PullRequest:
    """What image_pull asks for, checked."""

    name: str
    url: str
    sha256: str
    format: str = "raw"
    signature: str | None = None

    def __post_init__(self) -> None:
        check_image_name(self.name)
        object.__setattr__(self, "sha256", check_digest(self.sha256))
        if self.format not in FORMATS:
            raise ImageError(f"format must be one of {', '.join(FORMATS)}, got {self.format!r}")


@dataclass(frozen=True)
class Image:
    """A name on the node and the image it points at."""

    name: str
    sha256: str
    volume: str
    format: str  # how it came: raw, qcow2 or bundle
    size: int  # bytes downloaded
    disk_bytes: int  # the size of its disk.raw
    files: tuple[str, ...]  # what the volume holds: disk.raw, and vmlinux, initramfs, cmdline when it has them
    owner: str | None  # the signer that pulled it under this name (None: the node's operator)
    signed_by: str | None  # the trusted key whose signature it carried, if any
    url: str
    pulled: float  # Unix time

    def as_dict(self, caller: Caller) -> dict[str, Any]:
        # The URL may hold a token (a presigned URL): only its owner and admins see it.
        return {
            "name": self.name, "sha256": self.sha256, "volume": self.volume, "format": self.format,
            "size": self.size, "disk_bytes": self.disk_bytes, "files": list(self.files),
            "kernel": "vmlinux" in self.files, "owner": self.owner, "signed_by": self.signed_by,
            "url": self.url if caller.may_act_on(self.owner) else None, "pulled": self.pulled,
        }
