"""Reading request bodies: bounded while they stream in, and parsed strictly."""

from __future__ import annotations

from typing import TypeVar

from fastapi import Request
from pydantic import BaseModel, ValidationError

from zeronode.api.errors import Refused, problems

Model = TypeVar("Model", bound=BaseModel)


async def read_bounded(request: Request, limit: int) -> bytes:
    """The body, refused (413) as soon as it grows past `limit` bytes: never read whole first."""
    too_large = Refused(413, "too_large", f"request body over {limit} bytes")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


def parse_body(model: type[Model], raw: bytes | str) -> Model:
    """`raw` as a `model`, or Refused: 400 invalid_json when it is not JSON, 422 malformed when it does not fit."""
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        if any(e["type"] == "json_invalid" for e in exc.errors()):
            raise Refused(400, "invalid_json", f"body is not JSON: {problems(exc.errors())}") from None
        raise Refused(422, "malformed", problems(exc.errors())) from None
