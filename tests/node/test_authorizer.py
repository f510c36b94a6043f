"""The node's Authorizer: authorized_keys and the ledger's rights snapshot, merged; staleness; policies."""

import nacl.signing
import pytest

from zeronode.api.rights import Grant, NodeRights, SignaturePolicy
from zeronode.node import rights as snapshots
from zeronode.node.authorizer import Authorizer
from zeronode.protocol import keys
from zeronode.protocol.envelope import new_envelope, verify
from zeronode.protocol.errors import NotAuthorized, PolicyNotMet

NODE = "a" * 26


def key() -> nacl.signing.SigningKey:
    return nacl.signing.SigningKey.generate()


def public(signing_key) -> str:
    return keys.public_key_text(signing_key)


class Files:
    def __init__(self, tmp_path):
        self.authorized_keys = tmp_path / "authorized_keys"
        self.rights = tmp_path / "rights.json"
        self.clock = {"now": 1_800_000_000.0}

    def authorizer(self, max_staleness: float = 60.0, node_id: str = NODE) -> Authorizer:
        return Authorizer(self.authorized_keys, rights_path=self.rights, node_id=node_id, max_staleness=max_staleness,
                          clock=lambda: self.clock["now"])

    def grant(self, grants: dict[str, list[str]], policies=(), *, fetched_at: float | None = None, node_id: str = NODE):
        rights = NodeRights(
            node_id=node_id, farm="f1", generated_at=int(self.clock["now"]),
            grants=[Grant(public_key=k, roles=r) for k, r in grants.items()], policies=list(policies),
        )
        snapshots.save(self.rights, snapshots.RightsSnapshot(rights, self.clock["now"] if fetched_at is None else fetched_at))


@pytest.fixture
def files(tmp_path):
    return Files(tmp_path)


def signed(*signers, targets=(NODE,)):
    envelope = new_envelope("1", list(targets), signers[0])
    for cosigner in signers[1:]:
        envelope = envelope.signed_by(cosigner)
    return verify(envelope)


def test_local_signers_and_ledger_grants_are_merged(files):
    local_admin, local_deployer, ledger_deployer, ledger_operator, stranger = (key() for _ in range(5))
    observer = key()
    files.authorized_keys.write_text(f"{public(local_admin)} admin\n{public(local_deployer)}\n{public(observer)} observer\n")
    files.grant({public(ledger_deployer): ["deployer"], public(ledger_operator): ["operator"], public(local_deployer): ["admin"]})
    authorizer = files.authorizer()
    assert authorizer.roles(public(local_admin)) == {"operator"}  # a local admin is this node's operator
    assert authorizer.may_deploy(public(local_admin)) and authorizer.is_admin(public(local_admin))
    assert authorizer.may_deploy(public(ledger_deployer)) and not authorizer.is_admin(public(ledger_deployer))
    assert authorizer.is_admin(public(ledger_operator))
    assert authorizer.roles(public(local_deployer)) == {"deployer", "admin"}  # both sources count
    assert authorizer.roles(public(stranger)) == set()
    # An observer (coord's key) reads and cancels every job and deploys nothing.
    assert authorizer.oversees_jobs(public(observer)) and not authorizer.is_admin(public(observer))
    assert not authorizer.may_deploy(public(observer))
    assert authorizer.authorize(signed(ledger_deployer)) is False
    assert authorizer.authorize(signed(ledger_operator)) is True
    with pytest.raises(NotAuthorized):
        authorizer.authorize(signed(stranger))


def test_a_fleet_admin_alone_does_not_deploy(files):
    admin = key()
    files.grant({public(admin): ["admin"]})
    authorizer = files.authorizer()
    assert authorizer.is_admin(public(admin)) and not authorizer.may_deploy(public(admin))


def test_a_revocation_counts_from_the_next_check(files):
    deployer = key()
    files.grant({public(deployer): ["deployer"]})
    authorizer = files.authorizer()
    assert authorizer.may_deploy(public(deployer))
    files.grant({})
    assert not authorizer.may_deploy(public(deployer))
    files.authorized_keys.write_text(f"{public(deployer)}\n")
    assert authorizer.may_deploy(public(deployer))
    files.authorized_keys.unlink()
    assert not authorizer.may_deploy(public(deployer))


def test_stale_rights_stop_counting_and_only_local_admins_pass(files):
    deployer, local_admin, local_deployer = key(), key(), key()
    files.authorized_keys.write_text(f"{public(local_admin)} admin\n{public(local_deployer)}\n")
    files.grant({public(deployer): ["deployer"]})
    authorizer = files.authorizer(max_staleness=30)
    files.clock["now"] += 29
    assert authorizer.may_deploy(public(deployer)) and authorizer.may_deploy(public(local_deployer))
    files.clock["now"] += 2
    assert not authorizer.may_deploy(public(deployer))
    assert not authorizer.may_deploy(public(local_deployer))
    assert authorizer.may_deploy(public(local_admin)) and authorizer.is_admin(public(local_admin))
    # A fresh fetch brings them back; one saved long ago counts for nothing from the start.
    files.grant({public(deployer): ["deployer"]})
    assert authorizer.may_deploy(public(deployer))
    files.grant({public(deployer): ["deployer"]}, fetched_at=files.clock["now"] - 31)
    assert not files.authorizer(max_staleness=30).may_deploy(public(deployer))


def test_a_node_without_ledger_rights_runs_on_authorized_keys_alone(files):
    local_deployer = key()
    files.authorized_keys.write_text(f"{public(local_deployer)}\n")
    authorizer = files.authorizer(max_staleness=30)
    files.clock["now"] += 3600
    assert authorizer.may_deploy(public(local_deployer))


def test_a_deleted_rights_file_keeps_the_last_rights_until_they_are_stale(files):
    deployer, second = key(), key()
    policy = SignaturePolicy(scope="node", target=NODE, threshold=2, keys=frozenset({public(deployer), public(second)}))
    files.grant({public(deployer): ["deployer"]}, [policy])
    authorizer = files.authorizer(max_staleness=30)
    assert authorizer.may_deploy(public(deployer))
    files.rights.unlink()
    assert authorizer.may_deploy(public(deployer))
    with pytest.raises(PolicyNotMet):  # the policy is not lost with the file
        authorizer.authorize(signed(deployer))
    files.clock["now"] += 31
    assert not authorizer.may_deploy(public(deployer))


def test_rights_of_another_node_or_a_broken_file_are_ignored(files):
    deployer = key()
    files.grant({public(deployer): ["deployer"]}, node_id="b" * 26)
    assert not files.authorizer().may_deploy(public(deployer))
    files.grant({public(deployer): ["deployer"]})
    authorizer = files.authorizer()
    assert authorizer.may_deploy(public(deployer))
    files.rights.write_text('{"fetched_at": "yesterday"}')
    assert authorizer.may_deploy(public(deployer))  # the last good snapshot stays


def test_a_two_of_three_policy_needs_two_distinct_signers(files):
    deployer, second, third, outsider = (key() for _ in range(4))
    policy = SignaturePolicy(scope="farm", target="f1", threshold=2, keys=frozenset(public(k) for k in (deployer, second, third)))
    files.grant({public(deployer): ["deployer"]}, [policy])
    authorizer = files.authorizer()
    with pytest.raises(PolicyNotMet):
        authorizer.authorize(signed(deployer))
    with pytest.raises(PolicyNotMet):
        authorizer.authorize(signed(deployer, outsider))  # a key outside the policy does not count
    assert authorizer.authorize(signed(deployer, third)) is False


def test_an_admin_policy_covers_only_what_a_node_admin_signs(files):
    deployer, operator, cosigner = (key() for _ in range(3))
    policy = SignaturePolicy(scope="node", target=NODE, action="admin", threshold=2,
                             keys=frozenset(public(k) for k in (operator, cosigner)))
    files.grant({public(deployer): ["deployer"], public(operator): ["operator"]}, [policy])
    authorizer = files.authorizer()
    assert authorizer.authorize(signed(deployer)) is False
    with pytest.raises(PolicyNotMet):
        authorizer.authorize(signed(operator))
    assert authorizer.authorize(signed(operator, cosigner)) is True


def test_the_snapshot_file_is_private(files):
    files.grant({})
    assert files.rights.stat().st_mode & 0o777 == 0o600



def test_a_node_with_a_ledger_but_no_rights_yet_lets_only_local_admins_in(files):
    local_admin, local_deployer = key(), key()
    files.authorized_keys.write_text(f"{public(local_admin)} admin\n{public(local_deployer)}\n")
    authorizer = Authorizer(files.authorized_keys, rights_path=files.rights, node_id=NODE, ledger=True,
                            clock=lambda: files.clock["now"])
    assert authorizer.rights_state == "pending"
    assert authorizer.may_deploy(public(local_admin)) and not authorizer.may_deploy(public(local_deployer))
    files.rights.write_text("not yet")  # unreadable (a wrong owner, say): still closed
    assert authorizer.rights_state == "unreadable" and not authorizer.may_deploy(public(local_deployer))
    files.rights.unlink()
    assert authorizer.rights_state == "pending"
    files.grant({})
    assert authorizer.rights_state == "ledger" and authorizer.may_deploy(public(local_deployer))
