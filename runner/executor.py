"""Runs one job's script: verify the envelope again, then evaluate it in Rhai with the SALs.

A runner never trusts the queue. The payload is the signed envelope, and it is
verified here (signature, expiry, target, the signer's rights and the policies
as they stand now) before the script is even compiled.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Any

import rhai
from sal import registry as sal
from zeronode.api.jobs import ScriptError, Status
from zeronode.node.authorizer import Authorizer
from zeronode.node.queue.jobs import OUTPUT_MAX_BYTES, OUTPUT_MAX_LINES, Outcome, json_value
from zeronode.node.settings import ScriptLimits
from zeronode.protocol.envelope import Envelope, VerifyOptions, verify
from zeronode.protocol.errors import Expired, NotAuthorized, PolicyNotMet, VerificationError

AST_CACHE_SIZE = 256


class OutputCapture:
    """A script's print/debug lines, bounded so a chatty script cannot fill Redis."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.size = 0
        self.truncated = False

    def add(self, line: str) -> None:
        if len(self.lines) >= OUTPUT_MAX_LINES or self.size + len(line) > OUTPUT_MAX_BYTES:
            self.truncated = True
            return
        self.lines.append(line)
        self.size += len(line)

    def debug(self, line: str, position: int | None) -> None:
        self.add(f"[debug line {position}] {line}" if position else f"[debug] {line}")


class Executor:
    """One per worker: one Rhai engine with every SAL registered, and a cache of compiled scripts."""

    def __init__(
        self,
        node_id: str,
        limits: ScriptLimits,
        verify_options: VerifyOptions,
        authorizer: Authorizer,
        sals: sal.NodeSals | None = None,
    ):
        self.node_id = node_id
        self.verify_options = verify_options
        self.authorizer = authorizer
        self.engine = rhai.Engine(**limits.engine_kwargs())
        sal.register_all(self.engine, sals or sal.NodeSals())
        self._asts: OrderedDict[str, rhai.AST] = OrderedDict()

    def compile(self, script: str) -> rhai.AST:
        ast = self._asts.get(script)
        if ast is None:
            ast = self._asts[script] = self.engine.compile(script, name="script")
            if len(self._asts) > AST_CACHE_SIZE:
                self._asts.popitem(last=False)
        else:
            self._asts.move_to_end(script)
        return ast

    def run(
        self,
        payload: str | bytes,
        *,
        job_id: str,
        cancel_token: rhai.CancelToken | None = None,
        attempt: int = 1,
    ) -> Outcome:
        started = time.monotonic()
        output = OutputCapture()

        def finish(status: Status, value: Any = None, error: ScriptError | None = None) -> Outcome:
            return Outcome(
                status=status,
                value=json_value(value),
                output=output.lines,
                output_truncated=output.truncated,
                error=error,
                duration=round(time.monotonic() - started, 6),
                attempt=attempt,
            )

        # The queue is not trusted: everything the supervisor checked is checked again,
        # so a job written or altered in Redis by someone else never runs.
        try:
            verified = verify(payload, options=self.verify_options)
        except Expired as exc:
            return finish(Status.FAILED, error=ScriptError(type="Expired", message=f"envelope expired before it ran: {exc}"))
        except VerificationError as exc:
            return finish(Status.FAILED, error=ScriptError(type="SignatureInvalid", message=f"signature invalid: {exc}"))
        envelope = verified.envelope
        if envelope.id != job_id:
            return finish(Status.FAILED, error=ScriptError(type="WrongJob", message=f"job {job_id} carries envelope {envelope.id}"))
        if self.node_id not in envelope.targets:
            return finish(Status.FAILED, error=ScriptError(type="WrongNode", message=f"job is not for node {self.node_id}"))
        try:  # rights as they are now, not as they were when the job was queued: a revocation stops it
            admin = self.authorizer.authorize(verified)
        except (NotAuthorized, PolicyNotMet) as exc:
            return finish(Status.FAILED, error=ScriptError(type=type(exc).__name__, message=str(exc)))

        context = sal.JobContext(
            job_id=envelope.id,
            signer=envelope.signer,
            node_id=self.node_id,
            deadline=started + envelope.timeout,
            admin=admin,  # a node admin's script sees and acts on every tenant's VMs and volumes
        )
        try:
            ast = self.compile(envelope.script)
            with sal.running(context):
                value = self.engine.eval(
                    ast,
                    self.scope(envelope),
                    timeout=envelope.timeout,
                    cancel=cancel_token,
                    on_print=output.add,
                    on_debug=output.debug,
                )
        except rhai.Timeout as exc:
            return finish(Status.TIMED_OUT, error=script_error(exc, "Timeout"))
        except rhai.Cancelled as exc:
            return finish(Status.CANCELED, error=script_error(exc, "Cancelled"))
        except rhai.RhaiError as exc:
            return finish(Status.FAILED, error=script_error(exc))
        return finish(Status.FINISHED, value)

    def scope(self, envelope: Envelope) -> dict[str, Any]:
        return {
            "env": dict(envelope.env),
            "job": {"id": envelope.id, "signer": envelope.signer, "node": self.node_id},
        }


def script_error(exc: rhai.RhaiError, kind: str | None = None) -> ScriptError:
    cause = exc.__cause__
    error_type = kind or (type(cause).__name__ if cause is not None else type(exc).__name__)
    return ScriptError(type=error_type, message=str(exc), line=exc.line, column=exc.column)


def run_envelope(payload: str) -> Any:
    """What rq records as every job's function. zeronode's runners never call it:
    they run jobs with verification, the authorizer, cancellation and bounded
    output. A plain `rq worker` pointed at a zeronode queue lands here and fails."""
    raise RuntimeError("zeronode jobs run only on zeronode runners (zeronode runner --pool N)")
