"""Envelope verification against raw PyNaCl verify of the same bytes, in one run.

    .venv/bin/python bench/verify.py [--envelopes 1000] [--rounds 5]

"full" is what every hop does with an envelope off the wire: parse the JSON
strictly into the model (one parse; a repeated key is found by a count, not by
parsing again: zeronode.protocol.strict_json), canonicalize, check the time
window, and check the signature.
"raw" is only `VerifyKey.verify(signing_bytes, signature)` with the key already
decoded. Both run over the same distinct envelopes in alternating batches of
100, and the reported ratio is the median of the per-batch ratios, so drift on
a shared machine hits both sides alike. Aim: full / raw cost at most 1.3x.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import nacl.signing
from rich.console import Console
from rich.progress import track

from zeronode.protocol import keys
from zeronode.protocol.envelope import new_envelope, verify


def timed(fn, items) -> float:
    started = time.perf_counter()
    for item in items:
        fn(item)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envelopes", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    key = nacl.signing.SigningKey.generate()
    envelopes = [
        new_envelope(f"let job = {i};\nnode_info().id + job", ["edge-1", "edge-2"], key, env={"ZONE": "eu"})
        for i in range(args.envelopes)
    ]
    wire = [envelope.to_json().encode() for envelope in envelopes]
    verify_key = key.verify_key
    raw_inputs = [
        (e.signing_bytes(), keys.b64url_decode(e.signatures[0].signature, 64, "signature")) for e in envelopes
    ]

    def raw(item):
        verify_key.verify(*item)

    batch = 100
    full_time = raw_time = 0.0
    ratios = []
    for _ in track(range(args.rounds), description="verifying…", console=Console(stderr=True)):
        for start in range(0, args.envelopes, batch):
            raw_batch = timed(raw, raw_inputs[start : start + batch])
            full_batch = timed(verify, wire[start : start + batch])
            raw_time += raw_batch
            full_time += full_batch
            ratios.append(full_batch / raw_batch)

    n = args.envelopes * args.rounds
    quartiles = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else [ratios[0]] * 3
    console = Console()
    console.print(f"{args.envelopes} envelopes × {args.rounds} rounds on {os.cpu_count()} cores")
    console.print(f"raw PyNaCl verify:  {n / raw_time:>9,.0f}/s  {1e6 * raw_time / n:6.1f} µs")
    console.print(f"full verification:  {n / full_time:>9,.0f}/s  {1e6 * full_time / n:6.1f} µs")
    console.print(
        f"cost ratio full/raw: {statistics.median(ratios):.2f}× median of {len(ratios)} batches "
        f"(quartiles {quartiles[0]:.2f}–{quartiles[2]:.2f}; aim ≤ 1.30×)"
    )


if __name__ == "__main__":
    main()
