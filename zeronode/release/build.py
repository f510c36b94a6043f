"""`zeronode release build`: a release artifact of this checkout, for nodes to install offline.

    1. copy the sources (no venv, build output, caches), and set the version asked for in pyproject.toml
    2. the project's wheel (pip, setuptools), rhai-py's (maturin, release mode: cached by its sources' digest,
       as the Rust build is the slow part)
    3. every runtime dependency as a wheel, pinned to the version installed in the building venv (the
       versions the tests ran with): `pip wheel` with the venv's `pip freeze` as constraints
    4. manifest.json (version, interpreter, build time, the sha256 of every wheel) and the tar
       (zeronode.release.artifact)

Reproducible: SOURCE_DATE_EPOCH (default: the last commit's time) dates the
wheels' entries and the tar's, so the same sources and pins give the same
artifact digest.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from zeronode.release import artifact
from zeronode.release.manifest import Manifest, ReleaseError, version_key

IGNORED = shutil.ignore_patterns(".git", ".venv", "target", "build", "dist", "*.egg-info", "__pycache__",
                                 ".pytest_cache", ".hypothesis", ".cache", "*.so")
EXTRAS = "btrfs"  # what a node installs besides the core: its storage driver's binding
RHAI_INPUTS = ("Cargo.toml", "Cargo.lock", "pyproject.toml", "src", "python", "vendor")


class ReleaseBuildError(ReleaseError):
    """A step of the build failed (pip, maturin): the message has its command and the end of its output."""


@dataclass(frozen=True)
class Built:
    path: Path
    sha256: str
    size: int
    manifest: Manifest


def build(
    source: Path, output: Path, *, version: str | None = None, python: str = sys.executable,
    cache: Path | None = None, progress: Callable[[str], None] = lambda _line: None,
) -> Built:
    """Build the release of the checkout at `source` (its pyproject's version, or `version`) into `output`."""
    source = source.resolve()
    cache = cache or Path.home() / ".cache" / "zeronode" / "release"
    cache.mkdir(parents=True, exist_ok=True)
    epoch = int(os.environ.get("SOURCE_DATE_EPOCH") or _commit_time(source))
    env = {**os.environ, "SOURCE_DATE_EPOCH": str(epoch)}
    with tempfile.TemporaryDirectory(prefix="zeronode-release-") as scratch:
        work = Path(scratch)
        progress("copying the sources")
        tree = work / "src"
        shutil.copytree(source, tree, ignore=IGNORED, symlinks=True)
        version = _set_version(tree / "pyproject.toml", version)
        progress(f"building zeronode {version}'s wheel")
        _run([python, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(work / "project"), str(tree)], env)
        [project_wheel] = (work / "project").glob("zeronode-*.whl")
        rhai_wheel = _rhai_wheel(source / "rhai-py", tree / "rhai-py", cache, python, env, progress)
        progress("gathering the pinned dependencies as wheels")
        pins = work / "pins.txt"
        frozen = _run([python, "-m", "pip", "freeze", "--exclude-editable"], env)
        pins.write_text("".join(line + "\n" for line in frozen.splitlines()
                                if line and not line.startswith(("zeronode", "-e ", "#"))))
        wheels = work / "wheels"
        # With the btrfs extra: a node's storage driver needs btrfsutil (built here against libbtrfsutil-dev).
        _run([python, "-m", "pip", "wheel", "-q", "-w", str(wheels), "-c", str(pins), "--find-links",
              str(rhai_wheel.parent), f"zeronode[{EXTRAS}] @ {project_wheel.as_uri()}"], env)
        files = {f"wheels/{wheel.name}": wheel for wheel in sorted(wheels.glob("*.whl"))}
        manifest = Manifest(
            version=version, built_at=epoch, python=_python_tag(python, env), requirement=f"zeronode[{EXTRAS}]=={version}",
            files={name: artifact.file_sha256(path)[0] for name, path in files.items()},
        )
        output.mkdir(parents=True, exist_ok=True)
        path = output / f"zeronode-{version}.tar"
        progress(f"writing {path}")
        sha256 = artifact.write(path, manifest, files)
    return Built(path, sha256, path.stat().st_size, manifest)


def _run(argv: list[str], env: dict[str, str], cwd: Path | None = None) -> str:
    try:
        done = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, check=False)
    except OSError as exc:
        raise ReleaseBuildError(f"{argv[0]}: {exc.strerror}") from None
    if done.returncode != 0:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-12:])
        raise ReleaseBuildError(f"{' '.join(argv[:4])} ... failed ({done.returncode}):\n{tail}")
    return done.stdout


def _commit_time(source: Path) -> int:
    try:
        return int(_run(["git", "-C", str(source), "log", "-1", "--format=%ct"], dict(os.environ)).strip())
    except (ReleaseBuildError, ValueError):
        raise ReleaseBuildError(f"{source} is not a git checkout: set SOURCE_DATE_EPOCH to date the build") from None


def _set_version(pyproject: Path, version: str | None) -> str:
    """The release's version: `version` written into [project] (checked as a release version), or the one there."""
    text = pyproject.read_text()
    match = re.search(r'(?m)^version = "([^"]*)"$', text)
    if match is None:
        raise ReleaseBuildError(f"no version line in {pyproject}")
    version = version or match.group(1)
    try:
        version_key(version)
    except ValueError as exc:
        raise ReleaseBuildError(str(exc)) from None
    pyproject.write_text(text[: match.start(1)] + version + text[match.end(1):])
    return version


def _rhai_wheel(original: Path, tree: Path, cache: Path, python: str, env: dict[str, str], progress) -> Path:
    """rhai-py's wheel, from the cache when its sources are unchanged (a release build of Rhai takes minutes
    cold); Cargo builds in the checkout's own target directory, so even a miss is incremental."""
    digest = hashlib.sha256()
    for name in RHAI_INPUTS:
        for path in sorted(p for p in (tree / name).rglob("*") if p.is_file()) if (tree / name).is_dir() else [tree / name]:
            digest.update(str(path.relative_to(tree)).encode() + b"\0" + path.read_bytes())
    wheels = cache / f"rhai-{digest.hexdigest()[:24]}"
    if found := sorted(wheels.glob("*.whl")):
        return found[-1]
    progress("building rhai-py's wheel (Rust, release mode)")
    maturin = shutil.which("maturin", path=str(Path(python).parent)) or "maturin"
    scratch = wheels.with_name(wheels.name + ".part")
    shutil.rmtree(scratch, ignore_errors=True)
    _run([maturin, "build", "--release", "--quiet", "-i", python, "-o", str(scratch)],
         {**env, "CARGO_TARGET_DIR": str(original / "target")}, cwd=tree)
    scratch.rename(wheels)
    return sorted(wheels.glob("*.whl"))[-1]


def _python_tag(python: str, env: dict[str, str]) -> str:
    return _run([python, "-c", "import sys; print(f'cp{sys.version_info[0]}{sys.version_info[1]}')"], env).strip()
