"""Releases in the ledger: published by an admin with their release keys' signatures, served to nodes.

A release is (version, sha256, size) and the signatures over that statement
(zeronode.release.manifest). Publishing checks them against the ledger's own
release policy (`release_keys`, `release_threshold`), so a release nodes would
refuse is refused here first; the nodes check again with the keys they trust.

Where nodes fetch the artifact: a URL given at publishing (checked as coord
checks supervisor URLs: an IP literal in `supervisor_networks`), or else the
ledger itself, once the artifact is uploaded (PUT .../artifact). An upload
needs no signature of its own: the admin's signed digest names the bytes, and
an upload whose bytes are not those is refused and dropped.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import AsyncIterator, Collection, Sequence
from pathlib import Path

import sqlalchemy as sa

from ledger import rollouts
from ledger.database import Database
from ledger.schema import releases
from ledger.users import require_admin
from zeronode.api.destinations import Network, check_artifact_url
from zeronode.api.errors import Refused
from zeronode.api.releases import ReleaseNew, ReleaseView
from zeronode.release.manifest import ReleaseSignature, SignaturesRefused, check_signatures, version_key

log = logging.getLogger("zeronode.ledger")


def artifact_path(directory: Path, sha256: str) -> Path:
    return directory / f"{sha256}.tar"


def view(row: sa.Row) -> ReleaseView:
    return ReleaseView(
        version=row.version, sha256=row.sha256, size=row.size, url=row.url, hosted=row.hosted,
        signatures=[ReleaseSignature.model_validate(signature) for signature in row.signatures], signers=row.signers,
        published_at=row.published_at, published_by=row.published_by,
    )


def publish(
    db: Database, signer: str, release: ReleaseNew, now: float, *, config_admins: Collection[str],
    release_keys: Collection[str], threshold: int, networks: Sequence[Network],
) -> tuple[ReleaseView, bool]:
    """Save a release an admin signed for; (the release, whether it is new). Publishing the same release
    again is harmless; another digest under a published version is refused (409)."""
    try:
        signers = check_signatures(release.version, release.sha256, release.size, release.signatures, release_keys, threshold)
    except SignaturesRefused as exc:
        raise Refused(422, "release_signatures", str(exc)) from None
    url = check_artifact_url(release.url, networks=networks) if release.url else None
    values = {
        "version": release.version, "sha256": release.sha256, "size": release.size, "url": url, "hosted": False,
        "signatures": [signature.model_dump() for signature in release.signatures], "signers": signers,
        "published_at": int(now), "published_by": signer,
    }
    with db.writing() as connection:
        require_admin(connection, signer, config_admins)
        row = connection.execute(sa.select(releases).where(releases.c.version == release.version)).first()
        if row is not None:
            if (row.sha256, row.size) != (release.sha256, release.size):
                raise Refused(409, "release_exists", f"release {release.version} is published with another artifact")
            return view(row), False
        connection.execute(sa.insert(releases).values(values))
        row = connection.execute(sa.select(releases).where(releases.c.version == release.version)).one()
    rollouts.changed(db)
    log.info("release published", extra={"version": release.version, "sha256": release.sha256, "by": signer, "signers": signers})
    return view(row), True


def get(db: Database, version: str) -> ReleaseView:
    with db.reading() as connection:
        row = connection.execute(sa.select(releases).where(releases.c.version == version)).first()
    if row is None:
        raise Refused(404, "unknown_release", f"no release {version} in the ledger")
    return view(row)


def listing(db: Database) -> list[ReleaseView]:
    """Every release, newest version first."""
    with db.reading() as connection:
        rows = connection.execute(sa.select(releases)).all()
    return sorted((view(row) for row in rows), key=lambda release: version_key(release.version), reverse=True)


async def receive(db: Database, directory: Path, version: str, body: AsyncIterator[bytes]) -> ReleaseView:
    """Store the uploaded artifact of a published release when its bytes are the published ones; 422
    digest_mismatch (and nothing kept) when they are not, 409 when the release names a URL of its own."""
    release = get(db, version)
    if release.url is not None:
        raise Refused(409, "artifact_elsewhere", f"release {version} is served at {release.url}, not by the ledger")
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    final = artifact_path(directory, release.sha256)
    part = final.with_name(f"{final.name}.{os.getpid()}.{id(body)}.part")
    digest, size = hashlib.sha256(), 0
    try:
        with open(part, "wb") as file:
            async for chunk in body:
                size += len(chunk)
                if size > release.size:
                    raise Refused(422, "digest_mismatch", f"the upload is longer than release {version}'s {release.size} bytes")
                digest.update(chunk)
                file.write(chunk)
        if (digest.hexdigest(), size) != (release.sha256, release.size):
            raise Refused(422, "digest_mismatch", f"the upload ({size} bytes, sha256 {digest.hexdigest()}) is not release {version}'s artifact")
        os.replace(part, final)
    finally:
        part.unlink(missing_ok=True)
    with db.writing() as connection:
        connection.execute(sa.update(releases).where(releases.c.version == version).values(hosted=True))
    log.info("release artifact stored", extra={"version": version, "size": size})
    return release.model_copy(update={"hosted": True})
