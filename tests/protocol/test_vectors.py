"""tests/vectors/protocol-v1.json: what other implementations check themselves against.

Checked two ways: our code must reproduce every vector, and the vectors must
hold by the protocol's definition alone (reference JSON, raw PyNaCl), so a
change to our code cannot quietly change the protocol.
"""

import json
from pathlib import Path

import nacl.signing
import pytest

from zeronode.protocol import keys
from zeronode.protocol.envelope import DOMAIN, Envelope, verify
from zeronode.protocol.signed_requests import request_signing_bytes, verify_request

VECTORS = json.loads((Path(__file__).parent.parent / "vectors" / "protocol-v1.json").read_text(encoding="utf-8"))
SEEDS = {name: keys.b64url_decode(k["seed"], 32, "seed") for name, k in VECTORS["keys"].items()}


@pytest.mark.parametrize("case", VECTORS["envelopes"], ids=lambda c: c["name"])
def test_envelope_vector_by_definition(case):
    fields = {k: v for k, v in case["envelope"].items() if k != "signatures"}
    reference = DOMAIN + json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    assert reference == case["signing_bytes"].encode("utf-8")
    for signature in case["envelope"]["signatures"]:
        raw_key = keys.b64url_decode(signature["public_key"], 32, "key")
        raw_signature = keys.b64url_decode(signature["signature"], 64, "signature")
        nacl.signing.VerifyKey(raw_key).verify(reference, raw_signature)  # raises if wrong


@pytest.mark.parametrize("case", VECTORS["envelopes"], ids=lambda c: c["name"])
def test_envelope_vector_reproduced_by_our_code(case):
    envelope = Envelope.from_json(json.dumps(case["envelope"]))
    assert envelope.signing_bytes() == case["signing_bytes"].encode("utf-8")
    verified = verify(envelope, now=envelope.created_at)
    assert verified.signers == {VECTORS["keys"][name]["public_key"] for name in case["signers"]}
    # Ed25519 is deterministic: signing again gives the very same signatures.
    resigned = envelope.model_copy(update={"signatures": []})
    for name in case["signers"]:
        resigned = resigned.signed_by(nacl.signing.SigningKey(SEEDS[name]))
    assert json.loads(resigned.to_json()) == case["envelope"]


@pytest.mark.parametrize("case", VECTORS["requests"], ids=lambda c: f"{c['method']} {c['target']}")
def test_request_vector(case):
    message = request_signing_bytes(case["method"], case["target"], case["audience"], case["timestamp"], case["body"].encode())
    assert message == case["signing_bytes"].encode()
    assert keys.sign(nacl.signing.SigningKey(SEEDS["alice"]), message) == case["signature"]
    headers = {
        "X-Zeronode-Key": case["public_key"],
        "X-Zeronode-Audience": case["audience"],
        "X-Zeronode-Timestamp": str(case["timestamp"]),
        "X-Zeronode-Signature": case["signature"],
    }
    signer = verify_request(
        case["method"], case["target"], headers, case["body"].encode(), audience=case["audience"], now=case["timestamp"]
    )
    assert signer == case["public_key"]
