"""The replay guard, on a real Redis."""

import nacl.signing
import pytest

from zeronode.protocol.envelope import VerifyOptions, new_envelope, verify
from zeronode.protocol.errors import Replayed
from zeronode.protocol.replay import ReplayGuard

NOW = 1_800_000_000


@pytest.fixture
def key():
    return nacl.signing.SigningKey.generate()


def test_accepted_once_then_refused(redis_client, key):
    envelope = verify(new_envelope("1", ["n"], key, now=NOW), now=NOW).envelope
    guard = ReplayGuard(redis_client)
    guard.claim(envelope, now=NOW)
    with pytest.raises(Replayed) as info:
        guard.claim(envelope, now=NOW + 1)
    assert info.value.reason == "replayed"


def test_guards_sharing_a_redis_share_the_memory(redis_client, redis_server, key):
    import redis

    envelope = new_envelope("1", ["n"], key, now=NOW)
    ReplayGuard(redis_client).claim(envelope, now=NOW)
    other_process_client = redis.Redis(unix_socket_path=str(redis_server))
    with pytest.raises(Replayed):
        ReplayGuard(other_process_client).claim(envelope, now=NOW)


def test_distinct_envelopes_and_signers_do_not_collide(redis_client, key):
    guard = ReplayGuard(redis_client)
    first = new_envelope("1", ["n"], key, now=NOW)
    second = new_envelope("1", ["n"], key, now=NOW)  # a fresh nonce
    same_nonce_other_signer = new_envelope("1", ["n"], nacl.signing.SigningKey.generate(), now=NOW).model_copy(
        update={"nonce": first.nonce}
    )
    for envelope in (first, second, same_nonce_other_signer):
        guard.claim(envelope, now=NOW)


def test_memory_lasts_until_the_envelope_could_no_longer_be_accepted(redis_client, key):
    envelope = new_envelope("1", ["n"], key, ttl=600, now=NOW)
    guard = ReplayGuard(redis_client, options=VerifyOptions(skew=300))
    guard.claim(envelope, now=NOW + 100)
    ttl = redis_client.ttl(guard.key(envelope))
    assert 600 - 100 + 300 - 2 <= ttl <= 600 - 100 + 300


def test_forgotten_after_expiry(redis_client, key):
    # An envelope at the very end of its window is remembered for one second.
    envelope = new_envelope("1", ["n"], key, ttl=10, now=NOW)
    guard = ReplayGuard(redis_client, options=VerifyOptions(skew=0))
    guard.claim(envelope, now=NOW + 10)
    assert redis_client.ttl(guard.key(envelope)) == 1
