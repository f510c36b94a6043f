"""Envelope verification against raw PyNaCl verify of the same bytes, in one run.

    .venv/bin/python bench/verify.py [--envelopes 1000] [--rounds 9]

"full" is what every hop does with an envelope off the wire, `verify(bytes)`:
parse the JSON strictly into the model (one parse; zeronode.protocol.strict_json),
write its canonical JSON once (a text already in that spelling repeats no key;
the signed bytes are cut from it), check the time window, and check the signature.
"raw" is only `VerifyKey.verify(signing_bytes, signature)` with the key already
decoded. Each round is one pass over the same distinct envelopes, raw and full in
alternating batches of 100, so drift on a shared machine hits both sides alike;
the round's ratio is its full time over its raw time. Times are the thread's CPU
time: what verifying costs, not what the other processes on the machine took meanwhile.
Aim (issue 19): full / raw at most 1.2x, the median of the rounds.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import nacl.signing
from aims import Aim, report
from rich.console import Console
from rich.progress import track

from zeronode.protocol import keys
from zeronode.protocol.envelope import new_envelope, verify

BATCH = 100


def timed(fn, items) -> float:
    started = time.thread_time()
    for item in items:
        fn(item)
    return time.thread_time() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envelopes", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=9)
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

    timed(raw, raw_inputs[:BATCH])  # warm-up, not counted: first calls fill caches on both sides
    timed(verify, wire[:BATCH])
    raw_us, full_us, ratios = [], [], []  # per round: µs an envelope, and full / raw
    for _ in track(range(args.rounds), description="verifying…", console=Console(stderr=True)):
        raw_time = full_time = 0.0
        for start in range(0, args.envelopes, BATCH):
            raw_time += timed(raw, raw_inputs[start : start + BATCH])
            full_time += timed(verify, wire[start : start + BATCH])
        raw_us.append(1e6 * raw_time / args.envelopes)
        full_us.append(1e6 * full_time / args.envelopes)
        ratios.append(full_time / raw_time)

    console = Console()
    console.print(f"{args.envelopes} envelopes × {args.rounds} rounds on {os.cpu_count()} cores (thread CPU time)")
    for name, values in (("raw PyNaCl verify:", raw_us), ("full verification:", full_us)):
        console.print(f"{name:20}{statistics.median(values):6.1f} µs an envelope (rounds {min(values):.1f}–{max(values):.1f})")
    console.print(
        f"cost ratio full/raw: {statistics.median(ratios):.2f}× median of {len(ratios)} rounds "
        f"({min(ratios):.2f}–{max(ratios):.2f}; aim ≤ 1.20×)"
    )
    report([Aim("envelope verify / raw PyNaCl verify", ratios, at_most=1.2)], console)


if __name__ == "__main__":
    main()
