"""Who may do what on this node: the ledger's rights for it, and the bootstrap signers of authorized_keys.

The supervisor and every runner ask one Authorizer, which answers from two files:

- `authorized_keys`, the node's own list, for bootstrap admins and nodes
  without a ledger. One signer a line, with optional roles; `#` starts a comment:

      # zeronode authorized keys
      A6EHv_POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg              # alice: deployer (the default role)
      Kay64UG8yvCyLhqU000LxzYeUm0L_hLIl5S8kyKWbdc admin        # bob: this node's admin
      Ge8Yx0RHEPDEL8yDY6eLTakuasFGlG1aRQQZhdg50_I observer     # coord: reads and cancels jobs

  A local admin is an operator of this node (zeronode.api.rights): it deploys,
  and sees and acts on every tenant's workloads. An observer reads and cancels
  every job and deploys nothing.

- `rights.json`, the ledger's rights for this node as the identity manager
  last fetched them (zeronode.node.rights): the users with a role here and the
  signature policies covering the node. Older than `max_staleness` (the
  ledger has been unreachable that long), its grants stop counting and only
  the local admins pass; its policies keep applying. So it is too on a node
  with a ledger that has no snapshot yet. A node without a ledger runs on
  authorized_keys alone, deployers included.

Both files are read again as soon as they change (a stat each, per check), so
a grant or a revocation counts from the first envelope after the file changed.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from zeronode.api import rights as decide
from zeronode.api.rights import SignaturePolicy
from zeronode.errors import ZeronodeError
from zeronode.node import rights as snapshots
from zeronode.node.identity import NodeIdentity
from zeronode.node.settings import NodeSettings
from zeronode.protocol import keys
from zeronode.protocol.envelope import Verified
from zeronode.protocol.errors import MalformedKey

log = logging.getLogger("zeronode.node")

LOCAL_ROLES = {"deployer": frozenset({"deployer"}), "admin": frozenset({"operator"}), "observer": frozenset({"observer"})}
ROLES = frozenset(LOCAL_ROLES)
Stamp = tuple[int, int, int] | None  # (inode, mtime, size): what tells a changed file


class AuthorizedKeysError(ZeronodeError):
    """The authorized_keys file cannot be read or has a bad line."""


def parse(text: str, source: str = "authorized_keys") -> dict[str, frozenset[str]]:
    """Each signer's roles as written in the file (deployer, admin)."""
    entries: dict[str, frozenset[str]] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        key, roles = words[0], frozenset(words[1:]) or frozenset({"deployer"})
        try:
            keys.parse_public_key(key)
        except MalformedKey as exc:
            raise AuthorizedKeysError(f"{source}:{number}: {exc}") from None
        if unknown := roles - ROLES:
            raise AuthorizedKeysError(f"{source}:{number}: unknown role {sorted(unknown)[0]!r} (roles: {', '.join(sorted(ROLES))})")
        entries[key] = roles
    return entries


def _stamp(path: str | None) -> Stamp:
    if path is None:
        return None
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return None
    return (stat.st_ino, stat.st_mtime_ns, stat.st_size)


class Authorizer:
    """Each signer's roles on this node, and the one check every envelope passes (`authorize`)."""

    def __init__(
        self,
        path: Path,
        *,
        rights_path: Path | None = None,
        node_id: str | None = None,
        ledger: bool = False,
        max_staleness: float = 3600.0,
        clock: Callable[[], float] = time.time,
        own_key: str | None = None,
    ):
        self.path = Path(path)
        # The node's own key deploys here, whatever the files say: an update's canary job is signed by it
        # (zeronode.identity_manager.checks). It grants nothing the key's holder lacks: the key is the node's.
        self.own_key = own_key
        self.rights_path = rights_path
        self.node_id = node_id
        self.ledger = ledger  # rights come from a ledger: until its first snapshot, only local admins pass
        self.max_staleness = max_staleness
        self.clock = clock
        # os.stat of a str is a microsecond faster than of a Path: this is the accept path's cost.
        self._watched = (str(self.path), str(rights_path) if rights_path is not None else None)
        self._lock = threading.Lock()
        self._stamps: tuple[Stamp, Stamp] = (None, None)
        self._loaded = False
        self._local: dict[str, frozenset[str]] = {}
        self._granted: dict[str, frozenset[str]] = {}
        self._snapshot_loaded = False  # a node with a ledger: once stale, only local admins pass
        self._unreadable = False  # the last read of rights.json failed
        self._stale = False
        self._grants_until = float("-inf")  # when the ledger's grants go stale
        self.policies: tuple[SignaturePolicy, ...] = ()
        self._roles: dict[str, frozenset[str]] = {}  # local and ledger merged: the hot path is one lookup

    # -- the checks ------------------------------------------------------

    def roles(self, signer: str) -> frozenset[str]:
        """The signer's roles here (zeronode.api.rights); empty when it has none."""
        self._bring_up_to_date()
        return self._roles.get(signer, decide.NONE)

    def may_deploy(self, signer: str) -> bool:
        return decide.may_deploy(self.roles(signer))

    def is_admin(self, signer: str) -> bool:
        """A node admin: sees and acts on every tenant's jobs and workloads."""
        return decide.is_node_admin(self.roles(signer))

    def oversees_jobs(self, signer: str) -> bool:
        """Reads and cancels every tenant's jobs: a node admin, or an observer (coord)."""
        return decide.oversees_jobs(self.roles(signer))

    @property
    def rights_state(self) -> str:
        """Where the rights come from now, for /health: "ledger" (a fresh snapshot), "stale" (only local
        admins pass), "pending" (a ledger, but no snapshot yet: only local admins pass), "local" (no
        ledger: authorized_keys alone), or "unreadable" (rights.json is there but cannot be read: fix its
        owner or mode; the last rights read, if any, hold)."""
        self._bring_up_to_date()
        if self._unreadable:
            return "unreadable"
        if not self._snapshot_loaded:
            return "pending" if self.ledger else "local"
        return "stale" if self._stale else "ledger"

    def authorize(self, verified: Verified) -> bool:
        """Whether the envelope's signer may run it here, by its roles and the policies on its signers;
        NotAuthorized or PolicyNotMet if not. True when it runs as a node admin."""
        signer = verified.envelope.signer
        return decide.authorize(self.roles(signer), self.policies, verified.signers, signer)

    # -- the files -------------------------------------------------------

    def _bring_up_to_date(self) -> None:
        """Both files as they are now, and the ledger's rights stale once they are too old."""
        self._refresh()
        if self._snapshot_loaded and not self._stale and self._grants_until < self.clock():
            self._go_stale()

    def _refresh(self) -> None:
        stamps = (_stamp(self._watched[0]), _stamp(self._watched[1]))
        if stamps == self._stamps and self._loaded:
            return
        with self._lock:
            if stamps[0] != self._stamps[0] or not self._loaded:
                self._load_local(stamps[0])
            if stamps[1] != self._stamps[1] or not self._loaded:
                self._load_rights(stamps[1])
            self._stamps, self._loaded = stamps, True
            self._merge()

    def _load_local(self, stamp: Stamp) -> None:
        if stamp is None:
            self._local = {}
            return
        try:
            entries = parse(self.path.read_text(encoding="utf-8"), str(self.path))
        except (OSError, UnicodeDecodeError, AuthorizedKeysError) as exc:
            # Keep the last good list rather than locking everyone out (or in).
            log.error("authorized keys not reloaded", extra={"error": str(exc)})
            return
        self._local = {key: frozenset().union(*(LOCAL_ROLES[role] for role in roles)) for key, roles in entries.items()}
        log.info("authorized keys loaded", extra={"path": str(self.path), "signers": len(entries)})

    def _load_rights(self, stamp: Stamp) -> None:
        if stamp is None or self.rights_path is None:
            self._unreadable = False
            if self._snapshot_loaded:  # deleted: the identity manager saves it again; until then, and until stale, the last one
                log.warning("ledger rights file is gone; the last ones loaded serve until they are stale")
            return
        try:
            snapshot = snapshots.load(self.rights_path)
        except (OSError, snapshots.SnapshotError) as exc:
            log.error("ledger rights not reloaded", extra={"error": str(exc)})
            self._unreadable = True
            return
        self._unreadable = False
        if self.node_id is not None and snapshot.rights.node_id != self.node_id:
            log.error("ledger rights are for another node; ignored", extra={"for": snapshot.rights.node_id})
            return
        self._granted = {grant.public_key: frozenset(grant.roles) for grant in snapshot.rights.grants}
        self.policies = tuple(snapshot.rights.policies)
        self._grants_until = snapshot.fetched_at + self.max_staleness
        self._snapshot_loaded, self._stale = True, False
        log.info("ledger rights loaded", extra={"users": len(self._granted), "policies": len(self.policies),
                                                "fetched_at": snapshot.fetched_at})

    def _go_stale(self) -> None:
        with self._lock:
            if self._stale:
                return
            log.warning("ledger rights are stale: only the local admins of authorized_keys pass now",
                        extra={"max_staleness": self.max_staleness})
            self._merge()

    def _merge(self) -> None:
        """The roles each signer has now. With stale ledger rights, the ledger's grants and the local
        deployers count for nothing; the local admins (and observers) still pass, so the node stays
        manageable. The policies keep applying."""
        self._stale = self._snapshot_loaded and self._grants_until < self.clock()
        # Stale rights, or a node with a ledger that has none yet (a first fetch to come, or a rights.json
        # it cannot read): fail closed, to the local admins.
        restricted = self._stale or (self.ledger and not self._snapshot_loaded)
        merged = {} if restricted else dict(self._granted)
        for key, roles in self._local.items():
            if restricted:
                roles = roles & decide.OVERSEES_JOBS
            if roles:
                merged[key] = merged.get(key, decide.NONE) | roles
        if self.own_key is not None:
            merged[self.own_key] = merged.get(self.own_key, decide.NONE) | LOCAL_ROLES["deployer"]
        self._roles = merged


def node_authorizer(settings: NodeSettings, identity: NodeIdentity) -> Authorizer:
    """The authorizer of a node's supervisor and runners, from its settings."""
    return Authorizer(
        # The ledger knows the node by its key's id, even where the settings override node_id.
        settings.authorized_keys_path, rights_path=settings.rights_path, node_id=keys.node_id(identity.public_key),
        ledger=settings.ledger_url is not None,
        max_staleness=settings.rights_max_staleness, own_key=identity.public_key,
    )
