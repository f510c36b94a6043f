"""Uptime reports as signed requests: one `POST /v1/nodes/{id}/uptime`, or many copies of it in a batch.

A batch item is a single-report request exactly as its node signed it:
method, target, the three signature headers and the body. So a relay (or a
node catching up) forwards reports without holding any key, and each is
verified on its own, as if it had come alone. A bad item fails alone.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from ledger import uptime
from ledger.database import Database
from zeronode.api.bodies import parse_body
from zeronode.api.errors import Refused
from zeronode.api.ledger import SignedRequestCopy, UptimeAccepted, UptimeReport
from zeronode.protocol import keys
from zeronode.protocol.errors import VerificationError
from zeronode.protocol.signed_requests import LEDGER, verify_request

REPORT_TARGET = re.compile(r"/v1/nodes/([a-z2-7]{26})/uptime")


def single(signer: str, node_id: str, body: bytes | str) -> tuple[str, UptimeReport]:
    """The report in `body` for `node_id`, which must be the signer's own node."""
    if keys.node_id(signer) != node_id:
        raise Refused(403, "not_this_node", f"a report for node {node_id} must be signed by that node's key")
    return node_id, parse_body(UptimeReport, body)


def unpack(copy: SignedRequestCopy, *, window: float, now: float) -> tuple[str, UptimeReport]:
    """Verify one forwarded request as the single-report endpoint would; its (node id, report)."""
    target = REPORT_TARGET.fullmatch(copy.target)
    if copy.method != "POST" or target is None:
        raise Refused(422, "malformed", "a batch item must be a POST /v1/nodes/{id}/uptime request")
    try:
        signer = verify_request(copy.method, copy.target, copy.headers, copy.body.encode(), audience=LEDGER, window=window, now=now)
    except VerificationError as exc:
        raise Refused(401, exc.reason, str(exc)) from None
    return single(signer, target[1], copy.body)


def ingest_batch(
    db: Database, copies: Sequence[SignedRequestCopy], *, window: float, now: float, skew: float
) -> list[UptimeAccepted | Refused]:
    """One answer per copy, in order: refused alone when its request does not verify, else judged with the rest."""
    answers: list[UptimeAccepted | Refused | None] = []
    verified: list[tuple[str, UptimeReport]] = []
    for copy in copies:
        try:
            verified.append(unpack(copy, window=window, now=now))
            answers.append(None)
        except Refused as refusal:
            answers.append(refusal)
    judged = iter(uptime.ingest(db, verified, now=now, skew=skew))
    return [answer if answer is not None else next(judged) for answer in answers]
