"""The coordinator's settings: one TOML file, overridden by ZERONODE_COORD_* environment variables.

    redis_url = "redis://coord-redis:6379/0"     # shared by every coord replica
    ledger_url = "http://ledger:8400"
    key = "/var/lib/zeronode-coord/coord.key"    # signs cancels and job reads sent to supervisors
    supervisor_networks = ["10.0.0.0/8"]          # where supervisors may be besides their mycelium /64
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated

from pydantic import Field, StringConstraints
from pydantic_settings import SettingsConfigDict

from zeronode.protocol.envelope import VerifyOptions
from zeronode.settings import FileSettings, default_state_dir


class CoordSettings(FileSettings):
    model_config = SettingsConfigDict(env_prefix="ZERONODE_COORD_")

    state_dir: Path = Field(default_factory=lambda: default_state_dir("zeronode-coord"))
    key: Path | None = Field(None, description="the coordinator's private key; default: STATE_DIR/coord.key")
    redis_url: str = "redis://127.0.0.1:6379/0"
    ledger_url: str = "http://127.0.0.1:8400"
    ledger_token: str | None = Field(None, description="the ledger's read token, if it has one")
    host: str = "127.0.0.1"
    port: int = Field(8200, ge=0, le=65535)
    admins: list[str] = Field([], description="public keys that may read and cancel anyone's deployment")
    verify: VerifyOptions = VerifyOptions()
    offline_wait: float = Field(30.0, ge=0, description="seconds a task waits for an offline node before failing")
    # Reconciling with nodes (docs/operators.md, "Coord: reconciling with nodes").
    unresponsive_after: float = Field(
        180.0, gt=0, description="seconds a node the ledger says is online may leave its supervisor unanswering: then "
        "node_unresponsive (a pending task fails; a dispatched one stays unknown until the node answers)",
    )
    reconcile_margin: float = Field(
        86400.0, ge=0, description="seconds past the envelope's expiry coord keeps asking an unreachable node what became "
        "of a dispatched task (it reads unknown meanwhile); then the task fails",
    )
    lost_after: float | None = Field(
        None, description="no longer used (accepted so that old settings files still load): see reconcile_margin"
    )
    # Keeping services on live nodes (docs/operators.md, "Failover").
    failover_after: float = Field(
        300.0, gt=0, description="seconds a node running a service's share may stay offline before the share moves "
        "to another node that matches the selector (a draining node's shares move at once)",
    )
    failover_interval: float = Field(5.0, gt=0, description="seconds between two looks at the services' nodes")
    concurrency: int = Field(256, gt=0, description="tasks one replica steps at once (HTTP requests in flight)")
    lease: float = Field(
        5.0, gt=0, description="seconds a claimed task stays this replica's without a heartbeat (renewed every third of "
        "it while a step runs): how soon another replica takes over the tasks of one that died",
    )
    request_timeout: float = Field(10.0, gt=0, description="seconds for one request to a supervisor or the ledger")
    # What one signer may ask of the fleet (docs/operators.md, "What coord checks").
    submissions_per_minute: int = Field(60, gt=0, description="submissions one signer may make a minute, across replicas")
    ledger_lookups_per_second: int = Field(
        200, gt=0, description="submissions, by all signers, checked with the ledger a second, across replicas (then 429)"
    )
    max_envelope_bytes: int = Field(1024 * 1024, gt=0, description="largest envelope a submission may carry, bytes")
    max_targets: int = Field(1000, gt=0, description="most target nodes one deployment may name")
    rights_ttl: float = Field(
        5.0, ge=0, description="seconds the ledger's users and policies are cached: how long a revocation takes to apply"
    )
    # The fleet dashboard's sign-in (coord.dashboard.auth): hashes, so this file holds no secret.
    dashboard_tokens: list[Annotated[str, StringConstraints(pattern=r"^sha256:[0-9a-f]{64}$")]] = Field(
        [], description="SHA-256 hashes (sha256:HEX) of the read tokens that sign in to /dashboard/ with a coord admin's "
        "read rights; `zeronode dashboard token` makes one",
    )
    supervisor_networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = Field(
        [], description="networks supervisors may be in besides their node's mycelium /64 (127.0.0.0/8 for a local cluster)"
    )

    @property
    def key_path(self) -> Path:
        return self.key or self.state_dir / "coord.key"
