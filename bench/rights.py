"""What the rights check adds to the supervisor's accept path, against the rest of that path, in one run.

    .venv/bin/python bench/rights.py [--envelopes 1000] [--users 2000] [--rounds 5]

The node's Authorizer answers from authorized_keys and the ledger's rights
snapshot (rights.json, here with --users grants and a 2-of-3 policy on the
farm), both checked for changes on every call. Measured in alternating
batches of 100 over the same distinct envelopes, signed by the deployer and a
co-signer:

- "rights": `Authorizer.authorize(verified)` alone, the cached check;
- "accept": `Supervisor.check(raw)`, everything the supervisor does without
  Redis (verify, target, rights, compile from its cache), which includes it.

Reported: the rights check in µs per envelope (aim under 5 µs) and its share
of the accept path, medians of the per-batch values with their quartiles.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import nacl.signing
import redis
from rich.console import Console
from rich.progress import track

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from aims import Aim, report  # noqa: E402
from supervisor.service import Supervisor  # noqa: E402
from zeronode.api.rights import Grant, NodeRights, SignaturePolicy  # noqa: E402
from zeronode.node import rights as snapshots  # noqa: E402
from zeronode.node.authorizer import node_authorizer  # noqa: E402
from zeronode.node.identity import node_identity  # noqa: E402
from zeronode.node.settings import NodeSettings  # noqa: E402
from zeronode.protocol import keys  # noqa: E402
from zeronode.protocol.envelope import new_envelope, verify  # noqa: E402


def timed(fn, items) -> float:
    started = time.perf_counter()
    for item in items:
        fn(item)
    return time.perf_counter() - started


def spread(values: list[float]) -> tuple[float, float, float]:
    if len(values) < 2:
        return values[0], values[0], values[0]
    low, _, high = statistics.quantiles(values, n=4)
    return statistics.median(values), low, high


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envelopes", type=int, default=1000)
    parser.add_argument("--users", type=int, default=2000, help="grants in the node's rights snapshot")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="zeronode-bench-rights-"))
    settings = NodeSettings(state_dir=workdir, redis_url="unix:///nonexistent/redis.sock")  # check() needs no Redis
    identity = node_identity(settings)
    node_id = keys.node_id(identity.public_key)
    deployer, cosigner, third = (nacl.signing.SigningKey.generate() for _ in range(3))
    others = [keys.public_key_text(nacl.signing.SigningKey.generate()) for _ in range(args.users - 1)]
    grants = [Grant(public_key=keys.public_key_text(deployer), roles=["deployer"])]
    grants += [Grant(public_key=key, roles=["deployer"]) for key in others]
    policy = SignaturePolicy(scope="farm", target="bench", threshold=2,
                             keys=frozenset(keys.public_key_text(k) for k in (deployer, cosigner, third)))
    rights = NodeRights(node_id=node_id, farm="bench", generated_at=int(time.time()), grants=grants, policies=[policy])
    snapshots.save(settings.rights_path, snapshots.RightsSnapshot(rights, time.time()))
    settings.authorized_keys_path.write_text("")

    authorizer = node_authorizer(settings, identity)
    supervisor = Supervisor(settings, redis.Redis(unix_socket_path="/nonexistent"), identity, authorizer)
    envelopes = [new_envelope(f"{i} + 1", [node_id], deployer).signed_by(cosigner) for i in range(args.envelopes)]
    wire = [envelope.to_json().encode() for envelope in envelopes]
    verified = [verify(envelope) for envelope in envelopes]
    for raw in wire[:1]:
        supervisor.check(raw)  # compiled once: the cache the accept path has in production

    batch = 100
    rights_us: list[float] = []
    shares: list[float] = []
    for _ in track(range(args.rounds), description="checking…", console=Console(stderr=True)):
        for start in range(0, args.envelopes, batch):
            accept = timed(supervisor.check, wire[start : start + batch])
            check = timed(authorizer.authorize, verified[start : start + batch])
            count = len(verified[start : start + batch])
            rights_us.append(1e6 * check / count)
            shares.append(check / accept)

    console = Console()
    console.print(f"{args.envelopes} envelopes × {args.rounds} rounds, {args.users} users in the snapshot, "
                  f"a 2-of-3 policy, on {os.cpu_count()} cores")
    median, low, high = spread(rights_us)
    console.print(f"rights check per envelope: {median:.2f} µs median of {len(rights_us)} batches "
                  f"(quartiles {low:.2f}–{high:.2f}; aim < 5 µs)")
    median, low, high = spread(shares)
    console.print(f"share of the accept path: {100 * median:.1f}% (quartiles {100 * low:.1f}–{100 * high:.1f}%)")
    report([Aim("rights check per envelope (batches of 100)", rights_us, at_most=5, unit="µs")], console)


if __name__ == "__main__":
    main()
