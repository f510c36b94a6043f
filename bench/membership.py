"""What one node pays to accept its part of a deployment to N nodes: named in the envelope, or placed by coord.

    .venv/bin/python bench/membership.py [--nodes 100,1000,10000] [--repeat 200]

"named": the envelope lists all N targets; the node receives it whole, verifies it
(strict parse, canonical form, signature) and finds itself among the targets.
"placed": the envelope carries a selector for N nodes and names none; the node
receives it with its placement ticket, verifies the envelope and checks the ticket
(zeronode.protocol.ticket.check_membership: one Ed25519 signature, one SHA-256).
Both are what the supervisor does before anything else, timed in this process.
"""

from __future__ import annotations

import argparse
import statistics
import time

import nacl.signing
from rich.console import Console
from rich.table import Table

from zeronode.protocol import keys, ticket
from zeronode.protocol.envelope import Selector, new_envelope, verify


def per_call(fn, repeat: int) -> list[float]:
    """Seconds a call, for each of `repeat` calls."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", default="100,1000,10000", help="deployment sizes, comma-separated")
    parser.add_argument("--repeat", type=int, default=200)
    args = parser.parse_args()
    client, coord = nacl.signing.SigningKey.generate(), nacl.signing.SigningKey.generate()
    placers = {keys.public_key_text(coord)}
    table = Table(title="accepting one's part of a deployment to N nodes, per node (median µs; bytes received)",
                  title_justify="left")
    for column in ("N", "named µs", "named bytes", "placed µs", "placed bytes", "named / placed"):
        table.add_column(column, justify="right")
    for size in sorted(int(n) for n in args.nodes.split(",")):
        node_ids = [keys.node_id(keys.public_key_text(nacl.signing.SigningKey.generate())) for _ in range(min(size, 50))]
        node_ids += [f"{i:026d}" for i in range(size - len(node_ids))]  # the rest: ids of the same length
        me = node_ids[size // 2]
        named = new_envelope("42", node_ids, client).to_json().encode()
        placed = new_envelope("42", [], client, selector=Selector(count=size))
        placed_wire, token = placed.to_json().encode(), ticket.issue(placed, me, coord)

        def accept_named():
            if me not in verify(named).envelope.targets:
                raise AssertionError("not a target")

        def accept_placed():
            ticket.check_membership(verify(placed_wire), me, "edge", ticket=token, placers=placers)

        named_us = statistics.median(per_call(accept_named, max(5, args.repeat * 100 // size))) * 1e6
        placed_us = statistics.median(per_call(accept_placed, args.repeat)) * 1e6
        table.add_row(str(size), f"{named_us:,.0f}", f"{len(named):,}", f"{placed_us:,.0f}",
                      f"{len(placed_wire) + len(token):,}", f"{named_us / placed_us:.1f}×")
    Console().print(table)


if __name__ == "__main__":
    main()
