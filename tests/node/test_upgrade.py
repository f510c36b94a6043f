"""A node upgraded under load still runs what it had queued: the stored job names stay valid."""

import pytest
from rq.utils import import_attribute

from runner.pool import run_runner
from zeronode.node.queue.jobs import RUN_FUNCTION, open_queue

# What every job queued since the first release names as its function, inside Redis.
STORED_FUNCTION = "runner.executor.run_envelope"


def test_the_function_stored_in_queued_jobs_still_imports_and_refuses_plain_rq_workers():
    assert RUN_FUNCTION == STORED_FUNCTION, "jobs already queued name the old function: keep it, or migrate them"
    function = import_attribute(STORED_FUNCTION)
    with pytest.raises(RuntimeError, match="only on zeronode runners"):
        function("{}")


def test_a_job_queued_through_rq_by_an_older_supervisor_runs(node):
    envelope = node.sign("40 + 2")
    queue = open_queue(node.connection, node.settings.queue)
    meta = {"node": node.node_id, "signer": envelope.signer, "retries": 0, "attempts": 0}
    queue.enqueue(STORED_FUNCTION, envelope.model_dump_json(), job_id=envelope.id, meta=meta)
    assert run_runner(node.settings, burst=True) == 1
    job = node.wait(envelope.id)
    assert (job.status, job.result, job.attempts) == ("finished", 42, 1)
