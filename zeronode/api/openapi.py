"""What the services' OpenAPI documents declare beyond what FastAPI sees: request bodies and error answers.

Request bodies. The write routes read their body as bytes (bounded, parsed
strictly: zeronode.api.bodies; an envelope verified from its exact text;
a batch cut into its items' texts), so FastAPI sees no body parameter and
would declare none: Swagger UI would offer no box to submit one in. Each such
route declares its body with `openapi_extra=request_body(Model)`: a reference
to the model's JSON schema, which `install` adds to the document's
components. The parsing stays the route's own; only the document changes.

Errors. Every router declares ERRORS: any 4xx and any 5xx answer is the one
ErrorBody (zeronode.api.errors). It stands in for FastAPI's own 422
(HTTPValidationError), which our services never send: zeronode.api.handlers
answers a validation error as ErrorBody too.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from zeronode.api.errors import ErrorBody

COMPONENTS = "#/components/schemas/"

ERRORS: dict[int | str, dict[str, Any]] = {
    "4XX": {"model": ErrorBody, "description": "Refused: the request's fault, `reason` says which; the same request again will not help"},
    "5XX": {"model": ErrorBody, "description": "Unavailable: try again later (a 503 says when, in Retry-After)"},
}

# Every model named in a request_body, by the name its reference uses: `install` adds the ones a document refers to.
_BODY_MODELS: dict[str, type[BaseModel]] = {}


def reference(model: type[BaseModel]) -> dict[str, str]:
    """A JSON schema reference to `model` in the document's components (request_body makes sure it is there)."""
    known = _BODY_MODELS.setdefault(model.__name__, model)
    if known is not model:
        raise ValueError(f"two request body models are named {model.__name__}: {known} and {model}")
    return {"$ref": COMPONENTS + model.__name__}


def request_body(schema: type[BaseModel] | dict[str, Any], *, content_type: str = "application/json",
                 description: str | None = None) -> dict[str, Any]:
    """`openapi_extra` for a route that reads its own body: the body is `schema`, a model (or a JSON schema
    built with `reference`, such as an array of a model)."""
    body: dict[str, Any] = {
        "required": True,
        "content": {content_type: {"schema": reference(schema) if isinstance(schema, type) else schema}},
    }
    if description:
        body["description"] = description
    return {"requestBody": body}


def install(app: FastAPI) -> None:
    """Make `app`'s document hold the schemas its routes' declared bodies refer to."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            _add_body_schemas(generate())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _add_body_schemas(document: dict[str, Any]) -> None:
    wanted = {name for name in _BODY_MODELS if f'"{COMPONENTS}{name}"' in _text_of_bodies(document)}
    if not wanted:
        return
    _, definitions = models_json_schema(
        [(_BODY_MODELS[name], "validation") for name in sorted(wanted)], ref_template=COMPONENTS + "{model}"
    )
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    for name, schema in definitions.get("$defs", {}).items():
        schemas.setdefault(name, schema)  # FastAPI's own, where a response already made it


def _text_of_bodies(document: dict[str, Any]) -> str:
    return json.dumps([op.get("requestBody") for path in document.get("paths", {}).values() for op in path.values()
                       if isinstance(op, dict)])
