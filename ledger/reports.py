"""Uptime reports as signed requests: one `POST /v1/nodes/{id}/uptime`, or many copies of it in a batch.

A batch item is a single-report request exactly as its node signed it:
method, target, the three signature headers and the body. So a relay (or a
node catching up) forwards reports without holding any key, and each is
verified on its own, as if it had come alone. A bad item fails alone: the
batch is cut into its items' texts (zeronode.api.bodies.batch_items) and each
is parsed on its own, so an item that is too large, nested 100,000 deep, not
JSON, repeats a key or has a field of the wrong type is answered alone.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from ledger import uptime
from ledger.database import Database
from zeronode.api.bodies import batch_items, parse_body
from zeronode.api.errors import Refused
from zeronode.api.ledger import SignedRequestCopy, UptimeAccepted, UptimeReport
from zeronode.protocol import keys
from zeronode.protocol.errors import VerificationError
from zeronode.protocol.signed_requests import LEDGER, verify_request

REPORT_TARGET = re.compile(r"/v1/nodes/([a-z2-7]{26})/uptime")
# The text of one batch item: a body of at most 4096 characters (SignedRequestCopy), escaped at
# worst six-fold, a target and four headers of at most 256. Larger is refused before it is parsed.
MAX_ITEM_BYTES = 32 * 1024


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


def copy_of(item: bytes | SignedRequestCopy) -> SignedRequestCopy:
    """A batch item's text as the request copy it must be, or Refused (413, 400, 422) for it alone."""
    if isinstance(item, SignedRequestCopy):
        return item
    if len(item) > MAX_ITEM_BYTES:
        raise Refused(413, "too_large", f"a batch item of {len(item)} bytes; at most {MAX_ITEM_BYTES}")
    return parse_body(SignedRequestCopy, item)


def ingest_raw_batch(
    db: Database, raw: bytes, *, limit: int, window: float, now: float, skew: float
) -> list[UptimeAccepted | Refused]:
    """POST /v1/uptime/batch's body, `{"reports": [...]}`: one answer per item, or Refused for the whole
    batch when it is not that shape or has more than `limit` items (zeronode.api.bodies.batch_items)."""
    return ingest_batch(db, batch_items(raw, limit=limit, member="reports"), window=window, now=now, skew=skew)


def ingest_batch(
    db: Database, copies: Sequence[bytes | SignedRequestCopy], *, window: float, now: float, skew: float
) -> list[UptimeAccepted | Refused]:
    """One answer per copy (its text, or parsed), in order: refused alone when it is not a request copy
    or its request does not verify, else judged with the rest."""
    answers: list[UptimeAccepted | Refused | None] = []
    verified: list[tuple[str, UptimeReport]] = []
    for copy in copies:
        try:
            verified.append(unpack(copy_of(copy), window=window, now=now))
            answers.append(None)
        except Refused as refusal:
            answers.append(refusal)
    judged = iter(uptime.ingest(db, verified, now=now, skew=skew))
    return [answer if answer is not None else next(judged) for answer in answers]
