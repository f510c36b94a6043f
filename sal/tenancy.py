"""Who a SAL function acts for, and whose VMs and volumes that caller may act on.

Every VM and volume a script creates records its owner: the envelope's signer.
A deployer sees and acts on its own; a node admin on everyone's. What has no
owner (made outside scripts by the node's operator, OPERATOR, or before VMs
and volumes had owners) is the admins' alone. The one exception is explicit: a
volume the operator shared (sal.storage.owned) is an image, which everyone may
see and boot from and only admins may change. No caller names a host network
interface: a VM's tap is zeronode's, made for it alone (sal.vmnet).

What a caller may not see answers exactly as a missing one would, so a
deployer cannot learn that another's VM or volume exists; only creating says
that a name is taken, because names are node-wide.
"""

from __future__ import annotations

from dataclasses import dataclass

from sal.context import current_job


@dataclass(frozen=True)
class Caller:
    owner: str | None  # the envelope's signer; None for the node's operator acting outside scripts
    admin: bool = False  # a node admin: acts on everything, whoever owns it

    def owns(self, owner: str | None) -> bool:
        # Nothing unowned is anyone's own: a caller without a key must not "own" every shared volume.
        return owner is not None and owner == self.owner

    def may_act_on(self, owner: str | None) -> bool:
        """See, change or delete what `owner` owns (None: owned by nobody)."""
        return self.admin or self.owns(owner)


# The node's operator, outside any script (`zeronode up` preparing images, a node stopping its VMs):
# it acts on everything, and what it makes has no owner (the admins' alone, until it shares an image).
OPERATOR = Caller(owner=None, admin=True)


def current_caller() -> Caller:
    """The caller of the job being run; outside one, the SalError of current_job()."""
    job = current_job()
    return Caller(owner=job.signer, admin=job.admin)
