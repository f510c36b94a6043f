"""Where coord may send a node's work: the one check of a supervisor URL, at registration and at dispatch.

A node registers its supervisor's URL itself, so without a check anyone with
a key could point coord at any address (a loopback admin port, a metadata
service) and read the answer back. A supervisor URL is allowed when:

- its scheme is http or https, and it has no user info, query or fragment;
- its path is the service root ("" or "/"): coord adds /v1/jobs itself;
- its host is an IP address literal (a name could resolve anywhere later)
  inside the node's own mycelium /64 (the subnet its registered overlay
  address is in), or inside a network the operator allows (`supervisor_networks`
  of the ledger and of coord: loopback for a local cluster, a LAN for a farm).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from urllib.parse import urlsplit

from zeronode.api.errors import Refused

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
OVERLAY_PREFIX = 64  # mycelium gives each node a /64 of 400::/7, its address inside it


def forbidden(message: str) -> Refused:
    return Refused(422, "forbidden_destination", message)


def check_supervisor_url(url: str, *, mycelium_address: str | None, networks: Sequence[Network]) -> str:
    """The URL as coord will use it (scheme://host:port, no trailing slash), or Refused(422, forbidden_destination)."""
    return _check(url, "supervisor_url", mycelium_address=mycelium_address, networks=networks, with_path=False)


def check_artifact_url(url: str, *, networks: Sequence[Network]) -> str:
    """Where nodes fetch a release artifact (docs/operators.md, "Updating a fleet"): the same rules, with a
    path allowed and no mycelium subnet (no node names it); the URL, or Refused(422, forbidden_destination)."""
    return _check(url, "url", mycelium_address=None, networks=networks, with_path=True)


def _check(url: str, what: str, *, mycelium_address: str | None, networks: Sequence[Network], with_path: bool) -> str:
    try:
        parts = urlsplit(url)
        port = parts.port
        host = ipaddress.ip_address((parts.hostname or "").split("%", 1)[0]) if parts.hostname else None
    except ValueError as exc:
        raise forbidden(f"{what} {url!r}: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise forbidden(f"{what} {url!r}: only http and https are allowed")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise forbidden(f"{what} {url!r}: user info is not allowed")
    if parts.query or parts.fragment or url.endswith(("?", "#")):
        raise forbidden(f"{what} {url!r}: a query or fragment is not allowed")
    if parts.path not in ("", "/") and not with_path:
        raise forbidden(f"{what} {url!r}: must be the service's root, without a path")
    if host is None:
        raise forbidden(f"{what} {url!r}: the host must be an IP address, not a name")
    if not _allowed(host, mycelium_address, networks):
        raise forbidden(f"{what} {url!r}: {host} is neither in the node's mycelium subnet nor in an allowed network")
    netloc = f"[{host}]" if host.version == 6 else str(host)
    origin = f"{parts.scheme}://{netloc}" + (f":{port}" if port is not None else "")
    return origin + parts.path if with_path else origin


def _allowed(host: ipaddress.IPv4Address | ipaddress.IPv6Address, mycelium_address: str | None, networks: Sequence[Network]) -> bool:
    if isinstance(host, ipaddress.IPv6Address) and host.ipv4_mapped is not None:
        host = host.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
    if any(host.version == network.version and host in network for network in networks):
        return True
    if mycelium_address is None or host.version != 6:
        return False
    try:
        subnet = ipaddress.IPv6Network(f"{mycelium_address}/{OVERLAY_PREFIX}", strict=False)
    except ValueError:
        return False
    return host in subnet and host in ipaddress.IPv6Network("400::/7")
