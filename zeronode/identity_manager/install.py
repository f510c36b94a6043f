"""Versions side by side: one venv per release under INSTALL_ROOT/versions, and `current`, the link every
service runs from (`INSTALL_ROOT/current/bin/zeronode`).

    /opt/zeronode/versions/1.4.0/    a venv with zeronode 1.4.0 and its pinned dependencies, installed offline
    /opt/zeronode/versions/1.5.0/
    /opt/zeronode/current -> versions/1.5.0

A venv cannot move (its scripts name their interpreter by path), so a version
is installed in its own directory and counts as installed only once the file
`.installed` is there, written last: what a crash half way left is started
over. `switch`
replaces the link with rename(2): at every moment `current` names one whole
version, the old or the new. A node installed otherwise (a checkout's venv)
works the same once `current` points at it (`zeronode up` does that).
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

from zeronode.release import artifact
from zeronode.release.manifest import ReleaseError, version_key

log = logging.getLogger("zeronode.identity")

INSTALLED = ".installed"  # written last: a version's directory without it is not an install


class InstallError(ReleaseError):
    """A release could not be installed here (pip, the interpreter, the disk); the message says which."""


def base_python() -> str:
    """The interpreter new venvs are made with: the one under this process's venv."""
    return getattr(sys, "_base_executable", None) or sys.executable


class Installation:
    def __init__(self, root: Path):
        self.root = root
        self.versions = root / "versions"
        self.current = root / "current"

    def running(self) -> Path | None:
        """Where `current` points now (resolved), or None without the link."""
        return self.current.resolve() if self.current.is_symlink() else None

    def installed(self, version: str) -> Path | None:
        path = self.versions / version
        return path if (path / INSTALLED).exists() else None

    def install(self, artifact_path: Path, version: str, sha256: str, size: int, *, python_tag: str) -> Path:
        """Unpack the verified artifact and install its release into versions/VERSION; the venv's path."""
        if found := self.installed(version):
            return found
        self.versions.mkdir(parents=True, exist_ok=True)
        final = self.versions / version
        shutil.rmtree(final, ignore_errors=True)  # a half-made install of it, if any
        staging = self.versions / f".{version}.release"
        shutil.rmtree(staging, ignore_errors=True)
        manifest = artifact.unpack(artifact_path, staging, sha256=sha256, size=size)
        if manifest.version != version:
            raise InstallError(f"the artifact holds release {manifest.version}, not {version}")
        if manifest.python != python_tag:
            raise InstallError(f"release {version} is built for {manifest.python}; this node runs {python_tag}")
        try:
            self._run([base_python(), "-m", "venv", str(final)])
            self._run([str(final / "bin" / "python"), "-m", "pip", "install", "--quiet", "--no-index", "--no-cache-dir",
                       "--find-links", str(staging / "wheels"), manifest.requirement])
        except InstallError:
            shutil.rmtree(final, ignore_errors=True)
            raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        (final / INSTALLED).write_text(f"{manifest.version} {sha256}\n")
        log.info("release installed", extra={"version": version, "path": str(final)})
        return final

    @staticmethod
    def _run(argv: list[str]) -> None:
        env = {key: value for key, value in os.environ.items() if not key.startswith(("PIP_", "VIRTUAL_ENV", "PYTHON"))}
        done = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
        if done.returncode != 0:
            tail = " | ".join((done.stderr or done.stdout).strip().splitlines()[-4:])
            raise InstallError(f"{Path(argv[0]).name} {argv[2] if len(argv) > 2 else ''} failed ({done.returncode}): {tail}")

    def switch(self, path: Path) -> None:
        """Point `current` at `path`, atomically."""
        temporary = self.root / f".current.{os.getpid()}"
        temporary.unlink(missing_ok=True)
        os.symlink(path, temporary)
        os.replace(temporary, self.current)

    def prune(self, keep: int, *, protect: tuple[Path | None, ...]) -> list[str]:
        """Remove all but the `keep` newest installed versions (never those in `protect`, nor one a process
        still runs from: a VMM's executor started by an older runner keeps its interpreter); the removed."""
        if not self.versions.is_dir():
            return []
        installed = []
        for path in self.versions.iterdir():
            if not (path / INSTALLED).exists():  # half made: started over when it is installed again
                continue
            try:
                installed.append((version_key(path.name), path))
            except ValueError:  # a staging directory left by a crash, or something else: not ours to judge
                continue
        installed.sort(reverse=True)
        removed = []
        kept = {p.resolve() for p in protect if p is not None}
        in_use = _programs_running()
        for _, path in installed[keep:]:
            if path.resolve() not in kept and not any(program.startswith(f"{path}/") for program in in_use):
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path.name)
        return removed


def _programs_running() -> set[str]:
    """The programs (argv[0]) of the processes running now, as /proc shows them."""
    programs = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                programs.add((entry / "cmdline").read_bytes().split(b"\0", 1)[0].decode(errors="replace"))
            except OSError:  # gone meanwhile, or not ours to read
                continue
    return programs
