"""One error tree: every error a SAL exports is a SalError, and a SalError is a ZeronodeError."""

import pytest

import sal.hypervisor
import sal.network
import sal.storage
import sal.vmnet
from sal.errors import SalError
from zeronode.errors import ZeronodeError

EXPORTED = [
    getattr(package, name)
    for package in (sal.storage, sal.network, sal.hypervisor, sal.vmnet)
    for name in package.__all__
    if isinstance(getattr(package, name), type) and issubclass(getattr(package, name), Exception)
]


def test_a_sal_error_is_a_zeronode_error():
    assert issubclass(SalError, ZeronodeError)


@pytest.mark.parametrize("error", EXPORTED, ids=lambda error: error.__name__)
def test_every_sal_error_is_a_sal_error(error):
    assert issubclass(error, SalError)


def test_each_sal_exports_its_errors():
    names = {error.__name__ for error in EXPORTED}
    assert {"StorageError", "InvalidName", "VolumeNotFound", "VolumeExists"} <= names
    assert {"NetworkError", "PeerExists", "PeerNotFound", "MalformedEndpoint", "ReplyTimeout"} <= names
    assert {"VmNotFound", "VmExists", "InvalidVmName", "HypervisorError", "VmmUnreachable", "VmmFailure"} <= names
    assert "VmNetworkError" in names
