"""The node updating itself: the release the ledger names, installed beside the running one, switched to,
checked, and kept or rolled back, without an operator (docs/operators.md, "Updating a fleet").

The ledger answers each uptime report with the release the node should run
(`offer`). The updater, a thread beside the reports, then:

    1. refuses what it must not install, reporting why: fewer than `release_threshold` of the
       node's own `release_keys` signed it; an older version than the running one, unless the
       operator rolled back; a version that failed here before (until a newer one); too little disk
    2. downloads the artifact (resumed after an interruption; at most max_release_bytes) and checks
       its size and sha256, then every file in it against its manifest (zeronode.release.artifact)
    3. installs it into INSTALL_ROOT/versions/VERSION, a venv of its own (zeronode.identity_manager.install),
       while the running version keeps serving
    4. switches `current` to it (the state file says so first), restarts the node's services
       (zeronode.identity_manager.services) and checks the new version within `update_window`
       seconds (zeronode.identity_manager.checks): its supervisor, its runners, a canary job through
       the node's own queue, and a report to the ledger from its own identity manager
    5. passed: restarts itself onto the new version (exec), which reports the update a success;
       failed: switches `current` back, restarts the old services, reports `rolled_back` with the
       check that failed, and never tries that version again (only a newer one)

An update interrupted half way (the node lost power in the window) is rolled
back when the identity manager starts again: a version is kept only once it
has passed its checks. While an update runs, the node's health has the part
`update` false, so coord places nothing new on it; jobs sent to it directly
are accepted by the supervisor and run when its runners are back (only the
second or two of the supervisor's own restart refuses connections).
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import nacl.signing

import zeronode
from sal.errors import SalError
from sal.images import download
from sal.images.base import DownloadInterrupted
from zeronode.api.releases import ReleaseTarget, UpdateOutcome, UpdateResult
from zeronode.files import write_atomic
from zeronode.identity_manager import checks
from zeronode.identity_manager.host import supervisor_url
from zeronode.identity_manager.install import Installation
from zeronode.identity_manager.services import RestartFailed, service_control
from zeronode.node.settings import NodeSettings
from zeronode.protocol import keys
from zeronode.release.artifact import check_digest
from zeronode.release.manifest import BadArtifact, ReleaseError, SignaturesRefused, check_signatures, version_key

log = logging.getLogger("zeronode.identity")

STATE_FILE = "state.json"
FAILED_FILE = "failed.json"
RETRY_AFTER = 30.0  # a download that failed for a passing reason (the server away, a full disk) is tried again
CHILD_ENV = "ZERONODE_IDENTITY_CHECKING"  # tells `identity --once` that its parent holds the reporter lock


@dataclass
class UpdateState:
    """STATE_DIR/updates/state.json: the update under way (phase `checking`: `current` may name the new
    version, not yet kept), or done (`committed`: kept; `idle`), and the last update's result."""

    phase: str = "idle"
    from_version: str | None = None
    from_path: str | None = None
    to_version: str | None = None
    to_path: str | None = None
    switched_at: float | None = None
    result: dict | None = None


class Refusal(ReleaseError):
    """Not installed, for a reason that a retry of the same release will not change."""


class Updater:
    def __init__(self, settings: NodeSettings, key: nacl.signing.SigningKey, stop: threading.Event, *,
                 reporting: threading.Lock, config: Path | None = None, clock=time.time):
        self.settings = settings
        self.key = key
        self.node_id = keys.node_id(keys.public_key_text(key))
        self.stop = stop
        self.reporting = reporting  # held while the new version's identity manager reports: one reporter at a time
        self.config = config
        self.clock = clock
        self.directory = settings.update_dir
        self.installation = Installation(settings.install_root)
        self.wanted: ReleaseTarget | None = None
        self.wake = threading.Event()
        self.updating = False
        # When to try a target again after a passing failure, by (version, rollback): a rollback the operator
        # asks for after the same version was refused as older is a new request, tried at once.
        self.retry_at: dict[tuple[str, bool], float] = {}
        self.refused: set[tuple[str, str]] = set()  # (version, reason) reported once, not logged at every offer

    # -- the state files ---------------------------------------------------

    def state(self) -> UpdateState:
        try:
            return UpdateState(**json.loads((self.directory / STATE_FILE).read_text()))
        except FileNotFoundError:
            return UpdateState()
        except (OSError, ValueError, TypeError) as exc:
            log.error("update state unreadable; starting afresh", extra={"error": str(exc)})
            return UpdateState()

    def _save(self, state: UpdateState) -> None:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_atomic(self.directory / STATE_FILE, json.dumps(asdict(state)))

    def failed(self) -> dict[str, str]:
        try:
            return dict(json.loads((self.directory / FAILED_FILE).read_text()))
        except (OSError, ValueError, TypeError):
            return {}

    def _mark_failed(self, version: str, reason: str) -> None:
        failed = self.failed() | {version: reason}
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_atomic(self.directory / FAILED_FILE, json.dumps(failed))

    def last_result(self) -> UpdateResult | None:
        result = self.state().result
        return UpdateResult.model_validate(result) if result else None

    def _record(self, state: UpdateState, version: str, outcome: UpdateOutcome, reason: str | None) -> None:
        state.result = UpdateResult(version=version, result=outcome, reason=reason[:500] if reason else None,
                                    at=int(self.clock())).model_dump()
        self._save(state)

    # -- the thread ----------------------------------------------------------

    def offer(self, target: ReleaseTarget | None) -> None:
        """The ledger's latest answer: what this node should run (None: nothing decided)."""
        self.wanted = target
        if target is not None and target.version != zeronode.__version__:
            self.wake.set()

    def run(self) -> None:
        while not self.stop.is_set():
            self.wake.wait(RETRY_AFTER)
            self.wake.clear()
            target = self.wanted
            if target is not None and not self.stop.is_set():
                try:
                    self.apply(target)
                except Exception:  # never dies: the next offer tries again
                    log.exception("update failed unexpectedly", extra={"version": target.version})
                    self.updating = False

    def resume(self) -> None:
        """At start: finish what an update left. Kept (`committed`): now idle, its success reported. Cut off
        in its window (`checking`): roll back, and exec the old version if this process is the new one."""
        state = self.state()
        if state.phase == "committed":
            state.phase = "idle"
            self._save(state)
            log.info("running the new version", extra={"version": zeronode.__version__, "from": state.from_version})
        elif state.phase == "checking" and state.from_path:
            log.warning("an update was cut off before its checks passed: rolling back", extra={"version": state.to_version})
            self._roll_back(state, "interrupted before its health checks passed (the node or the identity manager stopped)")
            if zeronode.__version__ != state.from_version:
                self._exec()

    def apply(self, target: ReleaseTarget) -> None:
        running = zeronode.__version__
        if target.version == running:
            return
        if reason := self._not_now(target, running):
            if reason != "later":
                self._refuse(target, reason, permanent=False)
            return
        state = self.state()
        try:
            self.update(target, state)
        except DownloadInterrupted as exc:  # the part is kept: resumed next time
            log.warning("release download interrupted; resuming later", extra={"version": target.version, "error": str(exc)})
            self.retry_at[target.version, target.rollback] = time.monotonic() + RETRY_AFTER
        except Refusal as exc:
            self._refuse(target, str(exc), permanent=True)
        except (ReleaseError, SalError, OSError) as exc:
            self._refuse(target, _describe(exc), permanent=isinstance(exc, (BadArtifact, SignaturesRefused)))
        finally:
            self.updating = False

    def _not_now(self, target: ReleaseTarget, running: str) -> str | None:
        """Why not to try `target` now: a reason to report, "later" to wait quietly, None to go on."""
        if target.version in self.failed():
            return "later"  # failed here before: only a newer release is tried
        if time.monotonic() < self.retry_at.get((target.version, target.rollback), 0):
            return "later"
        try:
            older = version_key(target.version) < version_key(running)
        except ValueError:
            older = False  # the running version is not a release version (a checkout): anything goes
        if older and not target.rollback:
            return f"release {target.version} is older than the running {running}, and no rollback was asked for"
        return None

    def _refuse(self, target: ReleaseTarget, reason: str, *, permanent: bool) -> None:
        version = target.version
        if (version, reason) not in self.refused:
            self.refused.add((version, reason))
            log.error("update refused", extra={"version": version, "reason": reason, "retried": not permanent})
            self._record(self.state(), version, "refused", reason)
        if permanent:
            self._mark_failed(version, reason)
        else:
            self.retry_at[version, target.rollback] = time.monotonic() + RETRY_AFTER

    # -- one update ------------------------------------------------------------

    def update(self, target: ReleaseTarget, state: UpdateState) -> None:
        settings = self.settings
        control = service_control(settings)
        if control is None:
            raise Refusal("service_manager is none: nothing would restart the services onto a new version")
        from_path = self.installation.running()
        if from_path is None:
            raise Refusal(f"{self.installation.current} is not a link: this node is not installed as versions side by side")
        try:
            check_signatures(target.version, target.sha256, target.size, target.signatures,
                             settings.release_keys, settings.release_threshold)
        except SignaturesRefused as exc:
            raise Refusal(str(exc)) from None
        self.updating = True
        started = time.monotonic()
        path = self.installation.installed(target.version)
        if path is None:
            artifact = self._download(target)
            path = self.installation.install(artifact, target.version, target.sha256, target.size, python_tag=_python_tag())
            artifact.unlink(missing_ok=True)
        installed = time.monotonic()
        state = UpdateState(phase="checking", from_version=zeronode.__version__, from_path=str(from_path),
                            to_version=target.version, to_path=str(path), switched_at=self.clock(), result=state.result)
        self._save(state)  # before the switch: a crash from here on is rolled back at the next start
        log.info("switching to a new version", extra={"version": target.version, "from": zeronode.__version__,
                                                      "install_seconds": round(installed - started, 1)})
        self.installation.switch(path)
        deadline = time.monotonic() + settings.update_window
        try:
            control.restart(timeout=settings.update_window)
            self._check(target.version, path, state.switched_at, deadline)
            if stopped := control.still_running():
                raise checks.CheckFailed(f"services: {stopped}")
        except (checks.CheckFailed, RestartFailed) as exc:
            began = time.monotonic()
            self._roll_back(state, str(exc))
            log.warning("update rolled back", extra={"version": target.version, "reason": str(exc),
                                                     "rollback_seconds": round(time.monotonic() - began, 1)})
            return
        state.phase = "committed"
        self._record(state, target.version, "succeeded", None)
        log.info("update passed its checks", extra={"version": target.version,
                                                    "switch_seconds": round(time.monotonic() - installed, 1)})
        removed = self.installation.prune(settings.keep_versions, protect=(path, from_path))
        if removed:
            log.info("old versions removed", extra={"versions": removed})
        self._exec()

    def _download(self, target: ReleaseTarget) -> Path:
        if target.size > self.settings.max_release_bytes:
            raise Refusal(f"release {target.version} is {target.size} bytes, over max_release_bytes ({self.settings.max_release_bytes})")
        downloads = self.directory / "downloads"
        downloads.mkdir(mode=0o700, parents=True, exist_ok=True)
        for stale in downloads.iterdir():  # one download at a time: what other releases left goes
            if not stale.name.startswith(target.sha256):
                stale.unlink(missing_ok=True)
        part = downloads / f"{target.sha256}.tar"
        have = part.stat().st_size if part.exists() else 0
        # The artifact, its unpacked wheels and the venv they make: about three times its size.
        need = 3 * target.size - have
        for where in (downloads, self.installation.root):
            free = shutil.disk_usage(where if where.exists() else where.parent).free
            if free < need:
                raise OSError(errno.ENOSPC, f"{free} bytes free in {where}, about {need} needed for release {target.version}")
        url = target.url if target.url.startswith(("http://", "https://")) else self.settings.ledger_url.rstrip("/") + target.url
        download.fetch(url, part, max_bytes=target.size, progress=lambda *_: None)
        try:
            check_digest(part, target.sha256, target.size)
        except BadArtifact:
            part.unlink(missing_ok=True)  # not resumable: those bytes are wrong
            raise
        return part

    def _check(self, version: str, path: Path, switched_at: float, deadline: float) -> None:
        url = supervisor_url(self.settings)
        checks.supervisor(url, version, deadline)
        checks.runners(self.settings, switched_at, deadline)
        if skipped := checks.canary(url, self.node_id, self.key, deadline):
            log.warning("canary job skipped", extra={"reason": skipped})
        self._report_from(path, deadline)

    def _report_from(self, path: Path, deadline: float) -> None:
        """The new version's identity manager registers and reports once (`identity --once`), while this one waits."""
        argv = [str(path / "bin" / "zeronode"), "identity", "--once", "--ledger", str(self.settings.ledger_url)]
        argv += ["--config", str(self.config)] if self.config else []
        with self.reporting:
            try:
                done = subprocess.run(argv, capture_output=True, text=True, timeout=max(1.0, deadline - time.monotonic()),
                                      env={**os.environ, CHILD_ENV: str(os.getpid())}, check=False)
            except (OSError, subprocess.TimeoutExpired) as exc:
                raise checks.CheckFailed(f"report: the new identity manager: {exc}") from None
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
            raise checks.CheckFailed(f"report: the new identity manager exited {done.returncode}: {tail[0][-300:]}")

    def _roll_back(self, state: UpdateState, reason: str) -> None:
        self.installation.switch(Path(state.from_path))
        control = service_control(self.settings)
        try:
            if control is not None:
                control.restart(timeout=self.settings.update_window)
            checks.supervisor(supervisor_url(self.settings), state.from_version, time.monotonic() + self.settings.update_window)
        except (RestartFailed, checks.CheckFailed) as exc:
            log.error("the old version is back, but not yet healthy", extra={"error": str(exc)})
        state.phase = "idle"
        self._record(state, state.to_version, "rolled_back", reason)
        self._mark_failed(state.to_version, reason)

    def _exec(self) -> None:
        """Become the identity manager of the version `current` names (same pid, same arguments)."""
        program = self.installation.current / "bin" / "zeronode"
        log.info("restarting the identity manager", extra={"program": str(program)})
        for handler in logging.getLogger().handlers:
            handler.flush()
        os.execv(program, [str(program), *sys.argv[1:]])


def _python_tag() -> str:
    return f"cp{sys.version_info[0]}{sys.version_info[1]}"


def _describe(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return f"disk full: {exc.strerror or exc}"
    return str(exc) or type(exc).__name__

