"""A request the ledger refuses: an HTTP status, a stable reason code and a message; and strict body parsing."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from zeronode.errors import ZeronodeError

Model = TypeVar("Model", bound=BaseModel)


class Refused(ZeronodeError):
    def __init__(self, status: int, reason: str, message: str):
        super().__init__(message)
        self.status = status
        self.reason = reason

    def body(self) -> dict[str, str]:
        return {"reason": self.reason, "message": str(self)}


def problems(errors: Iterable[dict]) -> str:
    """Pydantic's (or FastAPI's) validation errors on one line: `where: what; ...`."""
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in errors)


def parse_body(model: type[Model], raw: bytes | str) -> Model:
    """`raw` as a `model`, or Refused: 400 invalid_json when it is not JSON, 422 malformed when it does not fit."""
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        if any(e["type"] == "json_invalid" for e in exc.errors()):
            raise Refused(400, "invalid_json", f"body is not JSON: {problems(exc.errors())}") from None
        raise Refused(422, "malformed", problems(exc.errors())) from None
