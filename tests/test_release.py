"""A release's artifact and signatures (zeronode.release) and the node's versions side by side
(zeronode.identity_manager.install): what is refused, and that the same inputs give the same bytes."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import tarfile
from pathlib import Path

import nacl.signing
import pytest

from zeronode.identity_manager.install import INSTALLED, Installation
from zeronode.protocol import keys
from zeronode.release import artifact
from zeronode.release.manifest import BadArtifact, Manifest, SignaturesRefused, check_signatures, sign, version_key


@pytest.fixture
def wheels(tmp_path) -> dict[str, Path]:
    files = {}
    for name in ("zeronode-1.2.0-py3-none-any.whl", "rq-2.0-py3-none-any.whl"):
        path = tmp_path / "in" / name
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(os.urandom(5000))
        files[f"wheels/{name}"] = path
    return files


def manifest_of(files: dict[str, Path], version: str = "1.2.0") -> Manifest:
    return Manifest(version=version, built_at=1_700_000_000, python="cp311", requirement=f"zeronode=={version}",
                    files={name: artifact.file_sha256(path)[0] for name, path in files.items()})


def test_versions_sort_as_numbers_and_only_dotted_integers_are_versions():
    assert version_key("1.10") > version_key("1.9") > version_key("1.2.3")
    assert version_key("2.0.0") == version_key("2")
    for bad in ("1.2.3-rc1", "v1", "", "1..2", "1.2.3.4.5"):
        with pytest.raises(ValueError):
            version_key(bad)


def test_a_release_needs_the_threshold_of_trusted_keys_over_exactly_its_statement():
    trusted = [nacl.signing.SigningKey.generate() for _ in range(3)]
    publics = [keys.public_key_text(key) for key in trusted]
    digest = "a" * 64
    two = [sign(key, "1.0", digest, 100) for key in trusted[:2]]
    assert check_signatures("1.0", digest, 100, two, publics, 2) == sorted(publics[:2])
    with pytest.raises(SignaturesRefused):
        check_signatures("1.0", digest, 100, two[:1] * 2, publics, 2)  # one key twice is one signature
    stranger = sign(nacl.signing.SigningKey.generate(), "1.0", digest, 100)
    with pytest.raises(SignaturesRefused):
        check_signatures("1.0", digest, 100, [two[0], stranger], publics, 2)
    for version, sha256, size in (("1.1", digest, 100), ("1.0", "b" * 64, 100), ("1.0", digest, 101)):
        with pytest.raises(SignaturesRefused):  # signatures do not move to another release or artifact
            check_signatures(version, sha256, size, two, publics, 2)
    with pytest.raises(SignaturesRefused, match="updates are off"):
        check_signatures("1.0", digest, 100, two, [], 1)


def test_the_same_wheels_make_the_same_artifact_and_it_unpacks_checked(tmp_path, wheels):
    manifest = manifest_of(wheels)
    first = artifact.write(tmp_path / "a.tar", manifest, wheels)
    second = artifact.write(tmp_path / "b.tar", manifest, wheels)
    assert first == second  # reproducible: same inputs, same digest
    size = (tmp_path / "a.tar").stat().st_size
    unpacked = artifact.unpack(tmp_path / "a.tar", tmp_path / "out", sha256=first, size=size)
    assert unpacked == manifest
    for name, path in wheels.items():
        assert (tmp_path / "out" / name).read_bytes() == path.read_bytes()


def test_a_tampered_or_truncated_artifact_is_refused_before_anything_is_written(tmp_path, wheels):
    manifest = manifest_of(wheels)
    sha256 = artifact.write(tmp_path / "a.tar", manifest, wheels)
    data = (tmp_path / "a.tar").read_bytes()
    (tmp_path / "short.tar").write_bytes(data[:-512])
    with pytest.raises(BadArtifact, match="truncated"):
        artifact.unpack(tmp_path / "short.tar", tmp_path / "o1", sha256=sha256, size=len(data))
    flipped = bytearray(data)
    flipped[3000] ^= 1
    (tmp_path / "flipped.tar").write_bytes(bytes(flipped))
    with pytest.raises(BadArtifact, match="tampered"):
        artifact.unpack(tmp_path / "flipped.tar", tmp_path / "o2", sha256=sha256, size=len(data))
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o2").exists()


def hand_made(path: Path, members: list[tuple[tarfile.TarInfo, bytes]]) -> tuple[str, int]:
    """A tar with exactly these members; its sha256 and size (published as such: only the members are wrong)."""
    with tarfile.open(path, "w") as tar:
        for info, data in members:
            info.size = len(data) if info.isreg() else 0
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_size


@pytest.mark.parametrize("member", ["../evil.whl", "/etc/evil.whl", "wheels/../../evil.whl", "wheels/x.sh", "link"])
def test_an_artifact_with_a_member_out_of_place_is_refused(tmp_path, wheels, member):
    manifest = manifest_of(wheels)
    members = [(tarfile.TarInfo("manifest.json"), manifest.model_dump_json().encode())]
    members += [(tarfile.TarInfo(name), path.read_bytes()) for name, path in wheels.items()]
    evil = tarfile.TarInfo(member)
    if member == "link":
        evil.type, evil.linkname = tarfile.SYMTYPE, "/etc/passwd"
    members.append((evil, b"#!/bin/sh\n"))
    sha256, size = hand_made(tmp_path / "evil.tar", members)
    with pytest.raises(BadArtifact):
        artifact.unpack(tmp_path / "evil.tar", tmp_path / "out", sha256=sha256, size=size)
    assert not (tmp_path / "evil.whl").exists() and not (tmp_path / "out" / "wheels" / "x.sh").exists()


def test_a_manifest_that_does_not_match_the_wheels_or_repeats_a_key_is_refused(tmp_path, wheels):
    manifest = manifest_of(wheels)
    other = dict(manifest.files)
    other[next(iter(other))] = "0" * 64
    lying = manifest.model_copy(update={"files": other})
    members = [(tarfile.TarInfo("manifest.json"), lying.model_dump_json().encode())]
    members += [(tarfile.TarInfo(name), path.read_bytes()) for name, path in wheels.items()]
    sha256, size = hand_made(tmp_path / "lying.tar", members)
    with pytest.raises(BadArtifact, match="differ from the manifest"):
        artifact.unpack(tmp_path / "lying.tar", tmp_path / "o1", sha256=sha256, size=size)
    text = manifest.model_dump_json()
    doubled = text[:-1] + ', "version": "9.9.9"}'
    sha256, size = hand_made(tmp_path / "doubled.tar", [(tarfile.TarInfo("manifest.json"), doubled.encode())])
    with pytest.raises(BadArtifact, match="duplicate key"):
        artifact.unpack(tmp_path / "doubled.tar", tmp_path / "o2", sha256=sha256, size=size)


def test_current_switches_atomically_and_pruning_keeps_the_running_and_previous_versions(tmp_path):
    installation = Installation(tmp_path)
    for version in ("1.0.0", "1.1.0", "1.2.0", "1.10.0"):
        (tmp_path / "versions" / version).mkdir(parents=True)
        (tmp_path / "versions" / version / INSTALLED).write_text(version)
    (tmp_path / "versions" / "2.0.0").mkdir()  # a crash before `.installed`: not an install
    assert installation.installed("2.0.0") is None and installation.installed("1.2.0") is not None
    assert installation.running() is None
    installation.switch(tmp_path / "versions" / "1.0.0")
    installation.switch(tmp_path / "versions" / "1.1.0")
    assert installation.running() == (tmp_path / "versions" / "1.1.0").resolve()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".current")] == []
    assert installation.prune(2, protect=(installation.running(), tmp_path / "versions" / "1.0.0")) == []
    removed = installation.prune(2, protect=(installation.running(),))
    assert removed == ["1.0.0"]  # 1.10.0 and 1.2.0 are the newest two, 1.1.0 runs; 2.0.0 is not an install
    assert sorted(p.name for p in (tmp_path / "versions").iterdir()) == ["1.1.0", "1.10.0", "1.2.0", "2.0.0"]
    # A process still running from an old version (a VMM's executor started by an older runner) keeps it.
    (tmp_path / "versions" / "1.2.0" / "bin").mkdir()
    os.symlink("/bin/sleep", tmp_path / "versions" / "1.2.0" / "bin" / "python")
    sleeper = subprocess.Popen([str(tmp_path / "versions" / "1.2.0" / "bin" / "python"), "30"])
    try:
        assert installation.prune(1, protect=(installation.running(),)) == []
    finally:
        sleeper.kill()
        sleeper.wait()
    assert installation.prune(1, protect=(installation.running(),)) == ["1.2.0"]


@pytest.fixture
def updater(tmp_path):
    """A node's updater whose release keys are the three returned; nothing in it reaches a network."""
    import threading

    from zeronode.identity_manager.updates import Updater
    from zeronode.node.settings import NodeSettings

    signers = [nacl.signing.SigningKey.generate() for _ in range(3)]
    (tmp_path / "venv").mkdir()
    (tmp_path / "current").symlink_to(tmp_path / "venv")
    settings = NodeSettings(
        state_dir=tmp_path / "state", install_root=tmp_path, service_manager="local", ledger_url="http://127.0.0.1:9",
        release_keys=[keys.public_key_text(key) for key in signers], release_threshold=2, max_release_bytes=2**50,
    )
    return Updater(settings, nacl.signing.SigningKey.generate(), threading.Event(), reporting=threading.Lock()), signers


def target(version: str, signers, size: int = 1000, rollback: bool = False):
    from zeronode.api.releases import ReleaseTarget

    digest = "c" * 64
    return ReleaseTarget(version=version, sha256=digest, size=size, url="/v1/releases/x/artifact", channel="stable",
                         rollback=rollback, signatures=[sign(key, version, digest, size) for key in signers])


def test_the_updater_refuses_and_reports_what_it_must_not_install(updater, tmp_path):
    import zeronode

    node, signers = updater
    newer = ".".join(str(part + 1) for part in version_key(zeronode.__version__))
    node.apply(target(newer, signers[:1]))  # one signature of the two needed
    assert node.last_result().result == "refused" and "2 are required" in node.last_result().reason
    assert newer in node.failed()  # never tried again: only a newer release is
    node.apply(target("0.0.1", signers[:2]))
    assert "older than the running" in node.last_result().reason and "0.0.1" not in node.failed()
    node.apply(target("0.0.1", signers[:2], rollback=True, size=2**45))  # an explicit rollback goes on, to the disk check
    assert node.last_result().reason.startswith("disk full") and "0.0.1" not in node.failed()  # tried again later
    assert not (tmp_path / "versions").exists() and os.readlink(tmp_path / "current") == str(tmp_path / "venv")
