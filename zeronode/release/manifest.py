"""What a release is: its version, the manifest of its artifact, and the statement its release keys sign.

A release is known by (version, sha256 of the artifact, size). Release keys
sign exactly that, as one canonical line of JSON, so a signature cannot be
moved to other bytes or another version. A node installs a release only when
`threshold` of the release keys it trusts (its own settings, not the
ledger's) signed it: a ledger or a download server that lies cannot make a
node run code the release keys did not vouch for.

Versions are dotted integers (1.4.0, 2.0): they sort as numbers, and the
order decides what is an update and what is a rollback.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Annotated, Literal

import nacl.signing
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from zeronode.errors import ZeronodeError
from zeronode.protocol import keys

VERSION_PATTERN = r"^[0-9]{1,6}(\.[0-9]{1,6}){0,3}$"
SHA256_PATTERN = r"^[0-9a-f]{64}$"
# What an artifact holds: its manifest, and wheels (names as pip writes them). Nothing else is extracted.
MANIFEST_NAME = "manifest.json"
WHEEL_PATH = re.compile(r"^wheels/[A-Za-z0-9_.+-]{1,200}\.whl$")


class ReleaseError(ZeronodeError):
    """A release that cannot be built, trusted or installed; the message says which and why."""


class BadArtifact(ReleaseError):
    """The artifact is not the one published: digest or size differ, a file's digest differs, a member is unsafe."""


class SignaturesRefused(ReleaseError):
    """Fewer than the threshold of trusted release keys signed this release."""


Version = Annotated[str, StringConstraints(pattern=VERSION_PATTERN)]
Sha256 = Annotated[str, StringConstraints(pattern=SHA256_PATTERN)]


def version_key(version: str) -> tuple[int, ...]:
    """A version as numbers, trailing zeros dropped: 1.10 > 1.9, and 1.0 == 1."""
    if not re.fullmatch(VERSION_PATTERN, version):
        raise ValueError(f"not a release version (dotted integers, e.g. 1.4.0): {version!r}")
    parts = [int(part) for part in version.split(".")]
    while len(parts) > 1 and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


_STRICT = ConfigDict(strict=True, extra="forbid", frozen=True)


class Manifest(BaseModel):
    """manifest.json, the artifact's first member: what the release is and the sha256 of every other member."""

    model_config = _STRICT

    format: Literal[1] = 1
    name: Literal["zeronode"] = "zeronode"
    version: Version
    built_at: Annotated[int, Field(ge=0, le=2**53)]  # SOURCE_DATE_EPOCH: the same sources give the same bytes
    python: Annotated[str, StringConstraints(pattern=r"^cp3[0-9]{1,2}$")]  # the interpreter its wheels are for
    requirement: Annotated[str, StringConstraints(max_length=200)]  # what pip installs: zeronode==VERSION
    files: Annotated[dict[Annotated[str, StringConstraints(pattern=WHEEL_PATH.pattern)], Sha256], Field(min_length=1)]


class ReleaseSignature(BaseModel):
    """One release key's signature over a release's statement."""

    model_config = _STRICT

    public_key: Annotated[str, AfterValidator(keys.canonical_public_key)]
    signature: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{86}$")]


def statement(version: str, sha256: str, size: int) -> bytes:
    """The bytes release keys sign: one canonical JSON line naming the release and its artifact."""
    return json.dumps(
        {"kind": "zeronode-release", "version": version, "sha256": sha256, "size": size},
        sort_keys=True, separators=(",", ":"),
    ).encode()


def sign(key: nacl.signing.SigningKey, version: str, sha256: str, size: int) -> ReleaseSignature:
    return ReleaseSignature(public_key=keys.public_key_text(key), signature=keys.sign(key, statement(version, sha256, size)))


def check_signatures(
    version: str, sha256: str, size: int, signatures: Iterable[ReleaseSignature], trusted: Iterable[str], threshold: int
) -> list[str]:
    """The trusted keys whose signatures over this release are valid, when there are at least `threshold`;
    SignaturesRefused otherwise (and always with no trusted key: nothing unsigned is ever installed)."""
    trusted = set(trusted)
    if not trusted or threshold < 1:
        raise SignaturesRefused("no release keys are trusted here (release_keys, release_threshold): updates are off")
    message = statement(version, sha256, size)
    valid = sorted({
        signature.public_key for signature in signatures
        if signature.public_key in trusted and keys.verify_signature(signature.public_key, message, signature.signature)
    })
    if len(valid) < threshold:
        raise SignaturesRefused(
            f"release {version} is signed by {len(valid)} of the trusted release keys; {threshold} are required"
        )
    return valid
