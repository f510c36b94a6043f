"""A VM's first-boot configuration: a cloud-init NoCloud seed disk.

The seed is an ISO 9660 image labelled `cidata` holding three files, as
cloud-init's NoCloud datasource reads them:

    meta-data       instance-id and local-hostname
    user-data       a #cloud-config with the hostname and the SSH keys; with the owner's
                    own user data, a MIME multipart of both (cloud-init's way to combine them)
    network-config  the VM's addresses on the node's VM network (sal.vmnet), or the owner's own
                    network config (version 2) when given: theirs replaces ours

It is built in Python with pycdlib: no string of a script's ever reaches a
command line. The instance-id is the VM's uuid, so it is stable across restarts
and new when a VM of the same name is created again: cloud-init runs its
first-boot steps once per VM.

What a script may give is bounded (sizes, key count, hostname syntax) and kept
only in the seed, 0600 in the root-only vm_dir: user data is its owner's (the
VM's record may be readable by the supervisor's group).
"""

from __future__ import annotations

import io
import json
import os
import re
from dataclasses import dataclass, replace
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from pathlib import Path
from typing import Any

import pycdlib
import yaml

from sal.errors import SalError, spec

SEED_FILE = "seed.iso"
UNFOLDED = 1 << 20  # YAML line width: a key stays on one line, as people read it
MAX_USER_DATA = 64 * 1024  # bytes: cloud-init's own limit for user data in many datasources is 16 KiB-64 KiB
MAX_NETWORK_CONFIG = 16 * 1024  # bytes, as JSON
MAX_SSH_KEYS = 32
MAX_SSH_KEY = 16 * 1024  # bytes: an RSA-16384 key with a comment fits
HOSTNAME = re.compile(r"(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*")
SSH_KEY = re.compile(r"(ssh-(rsa|ed25519|dss)|ecdsa-sha2-nistp(256|384|521)|sk-(ssh-ed25519|ecdsa-sha2-nistp256)@openssh\.com)"
                     r" [A-Za-z0-9+/]+={0,3}( [^\n\r]*)?")


class CloudInitError(SalError):
    """A cloud_init map a VM cannot boot with: a bad hostname, key, size or type."""


@dataclass(frozen=True)
class CloudInit:
    hostname: str
    ssh_keys: tuple[str, ...] = ()
    user_data: str | None = None
    network_config: dict[str, Any] | None = None

    @classmethod
    def from_script(cls, arguments: dict, vm_name: str) -> CloudInit:
        """The `cloud_init` map of vm_create, checked; the hostname defaults to the VM's name."""
        args = spec("vm_create: cloud_init", arguments, required={},
                    optional={"hostname": str, "ssh_keys": list, "user_data": str, "network_config": dict})
        hostname = args.get("hostname", vm_name).lower()
        if not HOSTNAME.fullmatch(hostname):
            raise CloudInitError(f"cloud_init: {hostname!r} is not a hostname (letters, digits and '-', dot-separated)")
        keys = args.get("ssh_keys", [])
        if len(keys) > MAX_SSH_KEYS:
            raise CloudInitError(f"cloud_init: at most {MAX_SSH_KEYS} ssh_keys")
        for key in keys:
            if not isinstance(key, str) or len(key) > MAX_SSH_KEY or not SSH_KEY.fullmatch(key.strip()):
                raise CloudInitError("cloud_init: each of ssh_keys is one OpenSSH public key line (ssh-ed25519 AAAA... comment)")
        user_data = args.get("user_data")
        if user_data is not None:
            if len(user_data.encode()) > MAX_USER_DATA:
                raise CloudInitError(f"cloud_init: user_data is at most {MAX_USER_DATA} bytes")
            _subtype(user_data)
        network = args.get("network_config")
        if network is not None and len(json.dumps(network).encode()) > MAX_NETWORK_CONFIG:
            raise CloudInitError(f"cloud_init: network_config is at most {MAX_NETWORK_CONFIG} bytes as JSON")
        return cls(hostname, tuple(key.strip() for key in keys), user_data, network)

    def with_network(self, network_config: dict[str, Any]) -> CloudInit:
        """The VM's own addresses as its network config, unless the owner gave theirs."""
        return self if self.network_config is not None else replace(self, network_config=network_config)

    # -- the seed's files ----------------------------------------------------------------------------

    def meta_data(self, instance_id: str) -> bytes:
        return yaml.safe_dump({"instance-id": instance_id, "local-hostname": self.hostname}, sort_keys=False).encode()

    def user_data_file(self) -> bytes:
        config = {"hostname": self.hostname, "fqdn": self.hostname} | ({"ssh_authorized_keys": list(self.ssh_keys)} if self.ssh_keys else {})
        ours = "#cloud-config\n" + yaml.safe_dump(config, sort_keys=False, width=UNFOLDED)
        if self.user_data is None:
            return ours.encode()
        parts = MIMEMultipart()
        parts.attach(MIMEText(ours, "cloud-config"))
        parts.attach(MIMEText(self.user_data, _subtype(self.user_data)))
        return parts.as_bytes()

    def network_config_file(self) -> bytes | None:
        if self.network_config is None:
            return None
        return yaml.safe_dump(self.network_config, sort_keys=False).encode()

    def write_seed(self, path: Path, instance_id: str) -> Path:
        """The seed ISO at `path` (replaced whole: written beside it, then renamed), mode 0600."""
        files = {"meta-data": self.meta_data(instance_id), "user-data": self.user_data_file()}
        if (network := self.network_config_file()) is not None:
            files["network-config"] = network
        iso = pycdlib.PyCdlib()
        # Rock Ridge and Joliet carry the real names: ISO 9660 level 1 has no '-' in names.
        iso.new(interchange_level=3, joliet=3, rock_ridge="1.09", vol_ident="cidata")
        for name, data in files.items():
            short = "/" + name.replace("-", "").upper()[:8] + ".;1"
            iso.add_fp(io.BytesIO(data), len(data), short, rr_name=name, joliet_path=f"/{name}")
        temporary = path.with_name(f".{path.name}.tmp")
        with open(temporary, "wb", opener=lambda name, flags: os.open(name, flags, 0o600)) as out:
            iso.write_fp(out)
        iso.close()
        temporary.replace(path)
        return path


def _subtype(user_data: str) -> str:
    """The MIME subtype cloud-init reads the owner's part as, from its first line."""
    first = user_data.lstrip().split("\n", 1)[0]
    if first.startswith("#!"):
        return "x-shellscript"
    if first.startswith("#cloud-config"):
        return "cloud-config"
    raise CloudInitError("cloud_init: user_data starts with #cloud-config or #! (a script)")
