"""Who may do what on this node, from its authorized_keys file: the supervisor and every runner ask it.

One signer a line, with optional roles; `#` starts a comment:

    # zeronode authorized keys
    A6EHv_POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg              # alice: deployer (the default role)
    Kay64UG8yvCyLhqU000LxzYeUm0L_hLIl5S8kyKWbdc admin        # bob may also cancel others' jobs

The file is read again whenever it changes, so keys can be added without a restart.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

from zeronode.errors import ZeronodeError
from zeronode.protocol import keys
from zeronode.protocol.errors import MalformedKey

log = logging.getLogger("zeronode.node")

ROLES = frozenset({"deployer", "admin"})


class AuthorizedKeysError(ZeronodeError):
    """The authorized_keys file cannot be read or has a bad line."""


def parse(text: str, source: str = "authorized_keys") -> dict[str, frozenset[str]]:
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


class Authorizer:
    """The roles of each authorised signer, from a file that may change while we run."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._entries: dict[str, frozenset[str]] = {}

    def roles(self, signer: str) -> frozenset[str]:
        """The signer's roles; empty when it is not authorised here."""
        self._refresh()
        return self._entries.get(signer, frozenset())

    def may_deploy(self, signer: str) -> bool:
        return bool(self.roles(signer) & {"deployer", "admin"})

    def is_admin(self, signer: str) -> bool:
        return "admin" in self.roles(signer)

    def _refresh(self) -> None:
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            stamp = None
        else:
            stamp = (stat.st_mtime_ns, stat.st_size)
        if stamp == self._stamp:
            return
        with self._lock:
            if stamp is None:
                entries: dict[str, frozenset[str]] = {}
            else:
                try:
                    entries = parse(self.path.read_text(encoding="utf-8"), str(self.path))
                except (OSError, UnicodeDecodeError, AuthorizedKeysError) as exc:
                    # Keep the last good list rather than locking everyone out (or in).
                    log.error("authorized keys not reloaded", extra={"error": str(exc)})
                    return
            self._entries, self._stamp = entries, stamp
            log.info("authorized keys loaded", extra={"path": str(self.path), "signers": len(entries)})
