"""Reading what zeronode's services answer: their JSON error bodies and their OpenAPI documents."""

from __future__ import annotations

import httpx


def detail(response: httpx.Response) -> tuple[int, str]:
    """(status, reason) of a zeronode error answer: {"reason": ..., "message": ...}."""
    return response.status_code, response.json()["reason"]


def openapi_routes(response: httpx.Response) -> set[tuple[str, str]]:
    """(METHOD, path) of every operation in an answer to GET /openapi.json (which must be a 200)."""
    assert response.status_code == 200, response.text
    return {(method.upper(), path) for path, operations in response.json()["paths"].items() for method in operations}
