"""Runs one job's script: verify the envelope again, then evaluate it in Rhai with the SALs.

A runner never trusts the queue. The payload is the signed envelope, and it is
verified here (signature, expiry, target, the signer's rights and the policies
as they stand now) before the script is even compiled.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import rhai
from sal import registry as sal
from sal.errors import JobInterrupted
from zeronode.api.jobs import ScriptError, Status
from zeronode.node.authorizer import Authorizer
from zeronode.node.queue.jobs import OUTPUT_MAX_BYTES, OUTPUT_MAX_LINES, RESOURCE_LIMIT, Outcome, json_value
from zeronode.node.settings import ScriptLimits
from zeronode.protocol.envelope import Envelope, VerifyOptions, verify
from zeronode.protocol.errors import Expired, NotAuthorized, PolicyNotMet, VerificationError
from zeronode.protocol.ticket import check_membership

AST_CACHE_SIZE = 256
RESOURCE_LIMITS = {"max_memory", "max_value_depth"}  # rhai.LimitError.limit values that mean it


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


class Run:
    """One attempt of a job as it goes: its clock, its output, and how it ended."""

    def __init__(self, attempt: int):
        self.attempt = attempt
        self.started = time.monotonic()
        self.output = OutputCapture()

    def end(self, status: Status, value: Any = None, error: ScriptError | None = None) -> Outcome:
        return Outcome(
            status=status,
            value=json_value(value),
            output=self.output.lines,
            output_truncated=self.output.truncated,
            error=error,
            duration=round(time.monotonic() - self.started, 6),
            attempt=self.attempt,
        )

    def failed(self, error_type: str, message: str) -> Outcome:
        return self.end(Status.FAILED, error=ScriptError(type=error_type, message=message))


@dataclass(frozen=True)
class Admitted:
    """A job that passed every check: whose it is, and whether its signer is a node admin here."""

    envelope: Envelope
    admin: bool
    run: Run


class Executor:
    """One per worker: one Rhai engine with every SAL registered, and a cache of compiled scripts."""

    def __init__(
        self,
        node_id: str,
        limits: ScriptLimits,
        verify_options: VerifyOptions,
        authorizer: Authorizer,
        sals: sal.NodeSals | None = None,
        *,
        farm: str = "",
        placers: frozenset[str] = frozenset(),
    ):
        self.node_id = node_id
        self.farm = farm  # with `placers`: what a placement ticket is checked against (zeronode.protocol.ticket)
        self.placers = placers
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
        ticket: str | None = None,
    ) -> Outcome:
        """Check the job, then run it: `admit` and `execute` in one."""
        admitted = self.admit(payload, job_id=job_id, attempt=attempt, ticket=ticket)
        if isinstance(admitted, Outcome):
            return admitted
        return self.execute(admitted, cancel_token=cancel_token)

    def admit(self, payload: str | bytes, *, job_id: str, attempt: int = 1, ticket: str | None = None) -> Admitted | Outcome:
        """Everything checked before a script may run, or the failure that stops it."""
        run = Run(attempt)
        # The queue is not trusted: everything the supervisor checked is checked again,
        # so a job written or altered in Redis by someone else never runs.
        try:
            verified = verify(payload, options=self.verify_options)
        except Expired as exc:
            return run.failed("Expired", f"envelope expired before it ran: {exc}")
        except VerificationError as exc:
            return run.failed("SignatureInvalid", f"signature invalid: {exc}")
        envelope = verified.envelope
        if envelope.id != job_id:
            return run.failed("WrongJob", f"job {job_id} carries envelope {envelope.id}")
        if self.node_id not in envelope.targets:
            try:
                check_membership(verified, self.node_id, self.farm, ticket=ticket, placers=self.placers)
            except VerificationError as exc:
                return run.failed("WrongNode", f"job is not for node {self.node_id}: {exc}")
        try:  # rights as they are now, not as they were when the job was queued: a revocation stops it
            admin = self.authorizer.authorize(verified)
        except (NotAuthorized, PolicyNotMet) as exc:
            return run.failed(type(exc).__name__, str(exc))
        return Admitted(envelope, admin, run)

    def execute(self, admitted: Admitted, *, cancel_token: rhai.CancelToken | None = None) -> Outcome:
        """Run an admitted job's script in Rhai, with the SALs."""
        envelope, run = admitted.envelope, admitted.run
        run.started = time.monotonic()  # the job's time starts now, not when it was checked
        context = sal.JobContext(
            job_id=envelope.id,
            signer=envelope.signer,
            node_id=self.node_id,
            deadline=run.started + envelope.timeout,
            admin=admitted.admin,  # a node admin's script sees and acts on every tenant's VMs and volumes
            cancel=cancel_token,
            output=run.output.add,  # a SAL call's progress (an image's download) goes with the script's prints
        )
        try:
            ast = self.compile(envelope.script)
            with sal.running(context):
                value = self.engine.eval(
                    ast,
                    self.scope(envelope, run.attempt),
                    timeout=envelope.timeout,
                    cancel=cancel_token,
                    on_print=run.output.add,
                    on_debug=run.output.debug,
                )
        except rhai.Timeout as exc:
            return run.end(Status.TIMED_OUT, error=script_error(exc, "Timeout"))
        except rhai.Cancelled as exc:
            return run.end(Status.CANCELED, error=script_error(exc, "Cancelled"))
        except rhai.LimitError as exc:
            kind = RESOURCE_LIMIT if exc.limit in RESOURCE_LIMITS else None
            return run.end(Status.FAILED, error=script_error(exc, kind))
        except rhai.RhaiError as exc:
            if isinstance(exc.__cause__, JobInterrupted):
                # A SAL call that stopped for the job's cancel or deadline ends the job as Rhai's own checks would
                # (a runner stopping puts a cancelled job back in the queue).
                if cancel_token is not None and cancel_token.cancelled:
                    return run.end(Status.CANCELED, error=script_error(exc, "Cancelled"))
                return run.end(Status.TIMED_OUT, error=script_error(exc, "Timeout"))
            return run.end(Status.FAILED, error=script_error(exc))
        return run.end(Status.FINISHED, value)

    def scope(self, envelope: Envelope, attempt: int = 1) -> dict[str, Any]:
        return {
            "env": dict(envelope.env),
            "job": {"id": envelope.id, "signer": envelope.signer, "node": self.node_id, "attempt": attempt},
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
