"""Writes tests/vectors/protocol-v1.json: fixed keys, envelopes, requests and their signatures.

    .venv/bin/python tests/vectors/make_vectors.py

Run it only when the protocol version changes: the vectors pin version 1, and
tests/protocol/test_vectors.py fails if the code stops reproducing them.
Ed25519 is deterministic, so the same inputs always give the same signatures.
"""

import json
from pathlib import Path

import nacl.signing

from zeronode.protocol import keys
from zeronode.protocol.envelope import Envelope
from zeronode.protocol.signed_requests import request_signing_bytes

SEEDS = {"alice": bytes(range(32)), "bob": bytes(range(32, 64))}


def envelope_case(name, fields, signers):
    envelope = Envelope(**fields, signer=keys.public_key_text(nacl.signing.SigningKey(SEEDS[signers[0]])))
    for signer in signers:
        envelope = envelope.signed_by(nacl.signing.SigningKey(SEEDS[signer]))
    return {
        "name": name,
        "signers": signers,
        "signing_bytes": envelope.signing_bytes().decode("utf-8"),
        "envelope": json.loads(envelope.to_json()),
    }


def main():
    common = {
        "algorithm": "ed25519",
        "created_at": 1767225600,  # 2026-01-01T00:00:00Z
        "expires_at": 1767229200,
        "retries": 1,
        "timeout": 60,
        "version": 1,
    }
    vectors = {
        "keys": {
            name: {"seed": keys.b64url(seed), "public_key": keys.public_key_text(nacl.signing.SigningKey(seed))}
            for name, seed in SEEDS.items()
        },
        "envelopes": [
            envelope_case(
                "minimal",
                {**common, "id": "00000000-0000-4000-8000-000000000001", "nonce": "AAAAAAAAAAAAAAAAAAAAAA",
                 "script": "40 + 2", "targets": ["edge-1"]},
                ["alice"],
            ),
            envelope_case(
                "escapes-unicode-env-two-signers",
                {**common, "id": "00000000-0000-4000-8000-000000000002", "nonce": "AQIDBAUGBwgJCgsMDQ4PEA",
                 "script": 'let msg = "tab\\there\\nnewline \\"quote\\" back\\\\slash \\u{1F680} café";\nprint(msg);\n\u0001',
                 "targets": ["edge-2", "edge-1"], "env": {"ZONE": "eu-west", "A_FIRST": "ünïcode"}},
                ["alice", "bob"],
            ),
        ],
        "requests": [],
    }
    alice = nacl.signing.SigningKey(SEEDS["alice"])
    for method, target, audience, timestamp, body in [
        ("POST", "/v1/nodes/abc/uptime", "ledger", 1767225600, b'{"uptime":3600}'),
        ("GET", "/v1/jobs/xyz?status=queued", "abcdefghijklmnopqrstuvwxyz", 1767225601, b""),
    ]:
        message = request_signing_bytes(method, target, audience, timestamp, body)
        vectors["requests"].append({
            "method": method, "target": target, "audience": audience, "timestamp": timestamp, "body": body.decode(),
            "signing_bytes": message.decode(), "public_key": keys.public_key_text(alice),
            "signature": keys.sign(alice, message),
        })
    path = Path(__file__).with_name("protocol-v1.json")
    path.write_text(json.dumps(vectors, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
