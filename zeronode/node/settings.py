"""A node's settings (supervisor, runners, identity manager): zeronode.settings loads them.

    state_dir = "/var/lib/zeronode"
    redis_url = "unix:///run/zeronode/redis.sock"

    [limits]
    max_operations = 100000000

Environment: ZERONODE_REDIS_URL=..., nested fields as ZERONODE_LIMITS__MAX_OPERATIONS=...
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network, IPv6Address
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from zeronode.api.ledger import DRIVER_NAME
from zeronode.protocol.envelope import Label, VerifyOptions
from zeronode.protocol.errors import MalformedKey
from zeronode.protocol.keys import parse_public_key
from zeronode.settings import FileSettings, default_state_dir


class ScriptLimits(BaseModel):
    """The Rhai limits every job's script runs under (see docs/rhai-py.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_operations: int = Field(100_000_000, gt=0)
    max_call_levels: int = Field(64, gt=0)
    max_string_size: int = Field(4 * 1024 * 1024, gt=0)
    max_array_size: int = Field(100_000, gt=0)
    max_map_size: int = Field(10_000, gt=0)
    max_memory: int = Field(
        256 * 1024 * 1024, gt=0, description="bytes a script's run may hold at once, whatever it builds (rhai-py counts them)"
    )

    def engine_kwargs(self) -> dict[str, int]:
        return self.model_dump()


class NodeSettings(FileSettings):
    model_config = SettingsConfigDict(env_prefix="ZERONODE_")

    state_dir: Path = Field(default_factory=default_state_dir)
    node_key: Path | None = Field(None, description="the node's private key; default: STATE_DIR/node.key")
    node_id: str | None = Field(None, description="override the id derived from the node key (local clusters)")
    authorized_keys: Path | None = Field(None, description="signers allowed here; default: STATE_DIR/authorized_keys")
    # The SALs' drivers are names in sal.registry's table, which checks them (and names the known ones) when
    # a runner builds them: a new driver is one line there, not a second edit here.
    storage_driver: str = Field("btrfs", pattern=DRIVER_NAME, description="the storage SAL's driver")
    storage_root: Path | None = Field(None, description="the btrfs directory holding this node's volumes")
    network_driver: str = Field("mycelium", pattern=DRIVER_NAME, description="the network SAL's driver")
    mycelium_url: str | None = Field(None, description="the mycelium daemon's API, e.g. http://127.0.0.1:8989")
    hypervisor: str = Field(
        "auto", pattern=DRIVER_NAME,
        description="the hypervisor SAL's driver: cloud-hypervisor, qemu, simulated (cloud-hypervisor's API "
        "simulator: no guest runs), or auto: cloud-hypervisor when on PATH, else qemu when on PATH, else simulated "
        "(logged loudly)",
    )
    hypervisor_binary: str = Field("cloud-hypervisor", description="the cloud-hypervisor executable (name or path)")
    qemu_binary: str = Field("qemu-system-x86_64", description="the QEMU executable (name or path)")
    qemu_acceleration: Literal["auto", "kvm", "tcg"] = Field(
        "auto", description="QEMU's accelerator: kvm, tcg (software emulation), or auto: KVM when it runs the "
        "guests, else TCG",
    )
    kvm_probe_seconds: float = Field(
        10.0, gt=0, description="under qemu_acceleration = auto, how long a new VM on KVM is watched (it must start "
        "and write to its serial console) before the node falls back to TCG",
    )
    vm_firmware: Path | None = Field(None, description="firmware booting images without a kernel, e.g. hypervisor-fw")
    vm_dir: Path | None = Field(None, description="the VMs' records, sockets and logs; default: STATE_DIR/vms")
    # The VM network (sal.vmnet, docs/rhai-api.md "VM networking"): a bridge and a tap per VM, as root.
    vm_network: bool = Field(
        True, description="put VMs on the node's mycelium /64 (needs mycelium_url): a bridge, a tap per VM, "
        "nftables rules, IPv6 forwarding on",
    )
    vm_bridge: str = Field(
        "znbr0", pattern=r"^zn[a-z0-9-]{1,13}$", description="the bridge zeronode makes for its VMs (its own: "
        "removed with the last VM)",
    )
    vm_private_subnet: IPv4Network | None = Field(
        IPv4Network("10.208.0.0/24"), description="private IPv4 addresses for VMs that ask (private_ipv4: true), "
        "masqueraded out; empty: none",
    )
    vm_nameservers: list[IPv4Address | IPv6Address] = Field(
        default_factory=list, description="DNS servers the network config of VMs with a private IPv4 names "
        "(none by default: the node's own resolver, often 127.0.0.53, is not the guests')",
    )
    # Images (image_pull, docs/rhai-api.md): they live on the storage pool.
    max_image_bytes: int = Field(
        20 * 1024**3, gt=0, description="bytes an image may be: its download, and what it unpacks to (a qcow2's "
        "disk, a bundle's files)",
    )
    trusted_image_keys: list[str] = Field(
        default_factory=list, description="public keys (base64url Ed25519, as every zeronode key) whose image "
        "signatures this node accepts",
    )
    require_signed_images: bool = Field(
        False, description="refuse to pull an image without a signature by one of trusted_image_keys"
    )
    redis_url: str = "redis://127.0.0.1:6379/0"
    queue: str = Field("zeronode", pattern=r"^[A-Za-z0-9_.:-]{1,64}$")
    host: str = "127.0.0.1"
    port: int = Field(8300, ge=0, le=65535)
    verify: VerifyOptions = VerifyOptions()
    limits: ScriptLimits = ScriptLimits()
    result_ttl: int = Field(7 * 86400, gt=0, description="seconds a finished job's record is kept")
    heartbeat_interval: float = Field(2.0, gt=0, description="seconds between a runner's heartbeats")
    dead_after: float = Field(10.0, gt=0, description="a runner silent this long is dead; its job is recovered")
    stop_grace: float = Field(30.0, ge=0, description="seconds a stopping runner may spend on its current job")
    runner_batch_max: int = Field(
        32, ge=1, le=1000, description="at most this many quick jobs a runner takes at once, for one Redis round trip "
        "and one journal fsync; 1: one at a time",
    )
    runner_batch_seconds: float = Field(
        0.02, gt=0, description="a runner takes as many jobs as it ran in this long last time (up to runner_batch_max): "
        "quick jobs come in batches, a slow one alone, so slow jobs spread over a pool",
    )
    runner_metrics_host: str = Field(
        "127.0.0.1", description="where a runner pool serves /metrics and /health (open: keep it local or firewalled)"
    )
    runner_metrics_port: int = Field(
        8301, ge=0, le=65535, description="the port of the runner pool's /metrics and /health; 0: not served "
        "(several pools on one node need a port each)",
    )
    runner_memory_max: int = Field(
        2 * 1024**3, ge=0, description="bytes of address space each runner process may map (RLIMIT_AS): a script's "
        "memory kills its own runner at worst, recorded as ResourceLimit; 0: no ceiling",
    )
    allow_volatile_queue: bool = Field(
        False, description="run on a Redis without append-only persistence (a crash of it then loses accepted jobs)"
    )
    # The identity manager (`zeronode identity`, docs/ledger.md).
    ledger_url: str | None = Field(None, description="the ledger's API, e.g. http://ledger.internal:8400")
    uptime_interval: float = Field(60.0, ge=1, description="seconds between uptime reports; production: 300")
    farm: str = Field("default", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$", description="the farm this node belongs to")
    owner: str | None = Field(None, max_length=128, description="who owns this node (free text, in the ledger)")
    labels: list[Label] = Field(
        [], max_length=32, description='"key=value" labels reported to the ledger, which deployments\' selectors match'
    )
    # Placement (docs/operators.md, "Placement and capacity").
    placers: frozenset[str] = Field(
        frozenset(), description="public keys trusted to place deployments here (coord's): a placement ticket signed by "
        "one of them admits an envelope whose selector this node matches (zeronode.protocol.ticket)",
    )
    cpu_allocation_ratio: float = Field(
        4.0, gt=0, description="vCPUs the node's VMs may hold, running or stopped, per host CPU: beyond it vm_create refuses"
    )
    memory_allocation_ratio: float = Field(
        1.0, gt=0, description="memory the node's VMs may hold, running or stopped, per byte of host memory"
    )
    disk_allocation_ratio: float = Field(
        1.0, gt=0, description="volume quotas and VM disks the node may promise, per byte of its storage pool"
    )
    rights_refresh: float = Field(
        15.0, ge=1, description="seconds between fetches of this node's rights from the ledger: how soon a revocation counts"
    )
    rights_max_staleness: float = Field(
        3600.0, ge=0, description="seconds the last rights fetched stay good while the ledger is unreachable; "
        "after that only authorized_keys counts",
    )
    supervisor_url: str | None = Field(
        None, pattern=r"^https?://\S{1,500}$", description="the supervisor as others reach it; default http://HOST:PORT"
    )
    # Updates (docs/operators.md, "Updating a fleet"): the identity manager installs what the ledger names.
    release_keys: list[str] = Field(
        [], description="public keys whose signatures make a release this node installs; none: updates are off"
    )
    release_threshold: int = Field(1, ge=1, description="how many of release_keys must have signed a release")
    install_root: Path = Field(
        Path("/opt/zeronode"), description="versions/VERSION (one venv each) and `current`, the link the services run from"
    )
    service_manager: Literal["systemd", "local", "none"] = Field(
        "systemd", description="who restarts the node's services on an update: systemd, `zeronode up` (local), or none"
    )
    update_units: list[str] = Field(
        ["zeronode-supervisor.service", "zeronode-runner.service", "zeronode-vm-keeper.service"],
        description="with systemd: the units restarted on an update (the identity manager restarts itself)",
    )
    update_window: float = Field(
        120.0, gt=0, description="seconds a new version has to pass its health checks before it is rolled back"
    )
    max_release_bytes: int = Field(2**30, gt=0, description="the largest release artifact this node downloads")
    keep_versions: int = Field(3, ge=2, description="installed versions kept, the running one and the one before included")

    @field_validator("vm_private_subnet", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("trusted_image_keys", "placers", "release_keys")
    @classmethod
    def _keys_are_keys(cls, keys, info):
        for key in keys:
            try:
                parse_public_key(key)
            except MalformedKey as exc:
                raise ValueError(f"{info.field_name}: {exc}") from None
        return keys

    @model_validator(mode="after")
    def _heartbeat_within_dead_after(self) -> NodeSettings:
        if self.heartbeat_interval >= self.dead_after:
            raise ValueError("heartbeat_interval must be shorter than dead_after, or live runners would look dead")
        return self

    @property
    def node_key_path(self) -> Path:
        return self.node_key or self.state_dir / "node.key"

    @property
    def vm_state_dir(self) -> Path:
        return self.vm_dir or self.state_dir / "vms"

    @property
    def authorized_keys_path(self) -> Path:
        return self.authorized_keys or self.state_dir / "authorized_keys"

    @property
    def journal_path(self) -> Path:
        """The node's journal of envelopes accepted and run (zeronode.node.journal): at most one run each."""
        return self.state_dir / "journal.sqlite3"

    @property
    def update_dir(self) -> Path:
        """The identity manager's update state: downloads, the update in progress, versions that failed here."""
        return self.state_dir / "updates"

    @property
    def rights_path(self) -> Path:
        """The ledger's rights for this node, as the identity manager last fetched them (zeronode.node.rights)."""
        return self.state_dir / "rights.json"
