"""The signed-script protocol (docs/protocol.md), which every hop speaks and which depends on no service.

    keys.py             Ed25519 keys: their text form, key files, node ids
    envelope.py         the signed envelope: a script, its targets and terms; signing, verifying
    signed_requests.py  signed HTTP requests (headers over method, path, time and body)
    replay.py           each (signer, nonce) accepted once
    errors.py           what verification refuses, each with a stable reason code
"""
