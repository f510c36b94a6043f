"""A release artifact: one uncompressed tar, manifest.json first, then the wheels, sorted.

Written reproducibly: every member's time is the manifest's `built_at`
(SOURCE_DATE_EPOCH), owner 0:0, mode 0644, in name order, so the same wheels
give the same bytes and the same sha256. Not compressed: wheels are zip files
already, and a tar can be checked member by member as it is read.

Read defensively (`unpack`): the whole file's size and sha256 must be the
published ones before anything is opened; then only regular files named
manifest.json or wheels/NAME.whl are taken (no links, devices, directories,
absolute or `..` paths), each written under the destination by its checked
name, and each must have the sha256 the manifest lists, and the manifest
must list no file the tar lacks.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
from collections.abc import Mapping
from pathlib import Path

from pydantic import ValidationError

from zeronode.protocol.errors import InvalidJSON
from zeronode.protocol.strict_json import unique_keys
from zeronode.release.manifest import MANIFEST_NAME, WHEEL_PATH, BadArtifact, Manifest

CHUNK = 1024 * 1024


def file_sha256(path: Path) -> tuple[str, int]:
    """The sha256 (hex) and size of a file, read in chunks."""
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as file:
        while chunk := file.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def _member(name: str, size: int, mtime: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = size, mtime, 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def write(path: Path, manifest: Manifest, files: Mapping[str, Path]) -> str:
    """Write the artifact of `manifest` with `files` (artifact name -> file on disk, the manifest's names);
    its sha256."""
    if set(files) != set(manifest.files):
        raise ValueError("the files given are not the manifest's")
    manifest_bytes = manifest.model_dump_json(indent=1).encode() + b"\n"
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        tar.addfile(_member(MANIFEST_NAME, len(manifest_bytes), manifest.built_at), io.BytesIO(manifest_bytes))
        for name in sorted(files):
            with open(files[name], "rb") as file:
                tar.addfile(_member(name, files[name].stat().st_size, manifest.built_at), file)
    return file_sha256(path)[0]


def read_manifest(raw: bytes) -> Manifest:
    try:
        unique_keys(raw)
        return Manifest.model_validate_json(raw)
    except (InvalidJSON, ValidationError) as exc:
        raise BadArtifact(f"{MANIFEST_NAME} is not a release manifest: {exc}") from None


def check_digest(path: Path, sha256: str, size: int) -> None:
    """BadArtifact unless the file is exactly `size` bytes with this sha256 (a truncated or tampered download)."""
    actual, actual_size = file_sha256(path)
    if actual_size != size:
        raise BadArtifact(f"the artifact is {actual_size} bytes; the release says {size} (truncated or not this release)")
    if actual != sha256:
        raise BadArtifact(f"the artifact's sha256 is {actual}; the release says {sha256} (tampered or not this release)")


def unpack(path: Path, destination: Path, *, sha256: str, size: int) -> Manifest:
    """Check the artifact against its published digest and size, then extract its manifest and wheels into
    `destination` (which must not exist) checking each; the manifest. BadArtifact for anything amiss."""
    check_digest(path, sha256, size)
    destination.mkdir(parents=True)
    (destination / "wheels").mkdir()
    manifest: Manifest | None = None
    seen: dict[str, str] = {}
    try:
        with tarfile.open(path, "r:") as tar:
            for info in tar:
                if not info.isreg():
                    raise BadArtifact(f"member {info.name!r} is not a regular file")
                source = tar.extractfile(info)
                assert source is not None  # a regular file
                if info.name == MANIFEST_NAME and manifest is None and not seen:
                    manifest = read_manifest(source.read(1024 * 1024))
                    continue
                if manifest is None or not WHEEL_PATH.fullmatch(info.name) or info.name in seen:
                    raise BadArtifact(f"member {info.name!r} is not expected here (manifest first, then wheels, once each)")
                digest = hashlib.sha256()
                with open(destination / info.name, "xb") as target:
                    while chunk := source.read(CHUNK):
                        digest.update(chunk)
                        target.write(chunk)
                seen[info.name] = digest.hexdigest()
    except tarfile.TarError as exc:
        raise BadArtifact(f"not a release artifact: {exc}") from None
    if manifest is None:
        raise BadArtifact(f"no {MANIFEST_NAME} in the artifact")
    if seen != manifest.files:
        wrong = sorted(name for name in set(seen) | set(manifest.files) if seen.get(name) != manifest.files.get(name))
        raise BadArtifact(f"files that differ from the manifest: {', '.join(wrong[:5])}")
    return manifest
