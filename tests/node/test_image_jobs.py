"""An image pull as a runner runs it: its progress in the job's output, and a cancel in the middle of the download
ending the job as cancelled (a runner stopping puts such a job back in the queue), with nothing visible."""

import hashlib
import os

import nacl.signing
import pytest

import rhai
from runner.executor import Executor
from sal.images import ImagePolicy, ImageStore
from sal.registry import NodeSals
from sal.storage.drivers.btrfs import BtrfsStorage
from zeronode.api.jobs import Status
from zeronode.node.authorizer import Authorizer
from zeronode.node.settings import ScriptLimits
from zeronode.protocol import keys
from zeronode.protocol.envelope import VerifyOptions, new_envelope

NODE = "node-1"
DISK = os.urandom(3 * 1024 * 1024)
DIGEST = hashlib.sha256(DISK).hexdigest()


@pytest.fixture
def signer(tmp_path):
    key = nacl.signing.SigningKey.generate()
    (tmp_path / "authorized_keys").write_text(f"{keys.public_key_text(key)} deployer\n")
    return key


@pytest.fixture
def executor(tmp_path, pool_dir, signer):
    sals = NodeSals(images=ImageStore(BtrfsStorage(pool_dir), ImagePolicy()))
    return Executor(NODE, ScriptLimits(), VerifyOptions(), Authorizer(tmp_path / "authorized_keys"), sals)


def run(executor, signer, url: str, token=None):
    envelope = new_envelope(f'image_pull(#{{ name: "disk", url: "{url}", sha256: "{DIGEST}" }}).name', [NODE], signer)
    return executor.run(envelope.to_json(), job_id=envelope.id, cancel_token=token)


def test_a_pull_reports_its_progress_in_the_jobs_output(executor, signer, image_server):
    outcome = run(executor, signer, image_server.serve("/disk.raw", DISK))
    assert (outcome.status, outcome.value) == (Status.FINISHED, "disk")
    assert outcome.output[0] == "image disk: downloading from 127.0.0.1"
    assert "image disk: 3.0 MiB of 3.0 MiB" in outcome.output
    assert outcome.output[-1].startswith("image disk: ready as volume img-")


def test_a_job_cancelled_during_the_download_ends_cancelled_with_nothing_visible(executor, signer, image_server, pool_dir):
    token = rhai.CancelToken()
    outcome = run(executor, signer, image_server.serve("/disk.raw", DISK, halfway=token.cancel), token)
    assert outcome.status == Status.CANCELED
    assert (outcome.error.type, "the job was cancelled" in outcome.error.message) == ("Cancelled", True)
    assert [entry.name for entry in pool_dir.iterdir() if not entry.name.startswith(".")] == []
