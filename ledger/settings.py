"""The ledger's settings: one TOML file, overridden by ZERONODE_LEDGER_* environment variables.

Every field has a default that works on a developer's machine (SQLite in the
data dir, no admins), so `zeronode ledger` starts with no file at all.

    database_url = "postgresql://ledger@db.internal/ledger"
    admins = ["A6EHv_POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg"]
    report_interval = 300
    supervisor_networks = ["127.0.0.0/8"]     # a cluster on one machine; a farm's LAN: ["10.0.0.0/24"]

Environment: ZERONODE_LEDGER_DATABASE_URL=..., ZERONODE_LEDGER_ADMINS='["KEY", ...]'.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from zeronode.protocol import keys
from zeronode.protocol.errors import MalformedKey
from zeronode.settings import FileSettings, default_state_dir


class LedgerSettings(FileSettings):
    model_config = SettingsConfigDict(env_prefix="ZERONODE_LEDGER_")

    # Beside a node's state dir: /var/lib/zeronode-ledger as root, else ~/.local/state/zeronode-ledger.
    data_dir: Path = Field(default_factory=lambda: default_state_dir("zeronode-ledger"), description="where the default SQLite database lives")
    database_url: str | None = Field(
        None, description="SQLAlchemy URL: sqlite:///PATH or postgresql://USER@HOST/DB; default: SQLite in data_dir"
    )
    host: str = "127.0.0.1"
    port: int = Field(8400, ge=0, le=65535)
    admins: list[str] = Field([], description="public keys that may manage users before any admin is in the database")
    read_token: str | None = Field(None, description="when set, reads need 'Authorization: Bearer TOKEN'")
    report_interval: float = Field(60.0, gt=0, description="seconds between a node's uptime reports (as the nodes are set)")
    offline_after_reports: float = Field(3.0, gt=0, description="a node is offline after this many report intervals of silence")
    skew: float = Field(60.0, ge=0, description="how far a report's timestamp may be from the ledger's clock, seconds")
    request_window: float = Field(60.0, gt=0, description="how old or new a signed request may be, seconds")
    max_batch: int = Field(1000, gt=0, description="most reports in one POST /v1/uptime/batch")
    # Besides the node's own mycelium /64, which is always allowed (zeronode.api.destinations).
    supervisor_networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = Field(
        [], description="networks a node's registered supervisor URL may point into, besides its own mycelium /64"
    )

    # Releases (docs/operators.md, "Updating a fleet"): the ledger refuses one its nodes would refuse.
    release_keys: list[str] = Field([], description="public keys whose signatures make a release; none: no releases")
    release_threshold: int = Field(1, ge=1, description="how many of release_keys must sign a release")
    max_artifact_bytes: int = Field(2**30, gt=0, description="the largest release artifact the ledger stores")

    @field_validator("admins", "release_keys")
    @classmethod
    def _admins_are_keys(cls, value: list[str]) -> list[str]:
        for key in value:
            try:
                keys.parse_public_key(key)
            except MalformedKey as exc:
                raise ValueError(str(exc)) from None
        return value

    @property
    def database(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'ledger.db'}"

    @property
    def artifacts(self) -> Path:
        """Where the release artifacts uploaded to this ledger are kept (by sha256)."""
        return self.data_dir / "releases"

    @property
    def offline_after(self) -> float:
        """Seconds of silence after which a node is offline."""
        return self.report_interval * self.offline_after_reports
