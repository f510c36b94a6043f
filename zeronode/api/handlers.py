"""The exception handlers every zeronode service installs: one JSON error body, never a traceback.

    {"reason": "not_found", "message": "no job 1234 on this node"}

- ServiceError (Refused, Unavailable): its own status, reason and message (and headers).
- Every 503 says when to try again (Retry-After), unless its error says otherwise.
- A request FastAPI could not validate (a query parameter, a path): 422 malformed.
- Starlette's HTTPException (an unknown route, a wrong method): its status, a reason code.
- The foreign errors in FOREIGN: what a service's back end throws when it is away.
- Anything else: logged with its traceback, answered 500 internal. Starlette answers it from outside
  the request middleware (zeronode.api.middleware), so this handler adds the request's id itself.

Each body is zeronode.api.errors.ErrorBody, as every route declares (zeronode.api.openapi.ERRORS).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from zeronode.api.errors import ServiceError, problems
from zeronode.api.middleware import HEADER as REQUEST_ID_HEADER

# The foreign errors every service maps: what a back end raises when it is away, by qualified class
# name, so that this module names them without importing them at its own import: (status, reason, message).
FOREIGN: dict[str, tuple[int, str, str]] = {
    "redis.exceptions.RedisError": (503, "store_unavailable", "the service's Redis is unavailable; try again"),
    "sqlalchemy.exc.OperationalError": (503, "database_unavailable", "database unavailable"),
}
REASONS = {401: "unauthorized", 404: "not_found", 405: "method_not_allowed"}
# What a 503 tells a caller: try again, in this many seconds (a back end away comes back, or it does not).
RETRY_AFTER = {"Retry-After": "1"}


def error_response(status: int, reason: str, message: str, **detail) -> JSONResponse:
    headers = RETRY_AFTER if status == 503 else None
    return JSONResponse(status_code=status, content={"reason": reason, "message": message, **detail},
                        headers=headers)


def log_refusal(log: logging.Logger, path: str, exc: ServiceError) -> None:
    log.log(logging.INFO if (exc.status or 500) < 500 else logging.WARNING, "request refused",
            extra={"path": path, "status": exc.status, "reason": exc.reason, "error": str(exc)[:500]})


def refusal_headers(exc: ServiceError) -> dict[str, str] | None:
    return exc.headers or (RETRY_AFTER if exc.status == 503 else None)


def log_back_end_away(log: logging.Logger, path: str, exc: Exception, reason: str) -> None:
    # The driver's own error where there is one (SQLAlchemy's `orig`): SQLAlchemy's text adds the
    # statement, its parameters and a link, several lines for each failed request.
    error = getattr(exc, "orig", None) or exc
    log.warning("back end unavailable", extra={"path": path, "error": str(error), "reason": reason})


def foreign_answer(exc: Exception) -> tuple[int, str, str] | None:
    """(status, reason, message) for `exc` when it is one of FOREIGN's back ends away, else None."""
    return next((answer for cls, answer in foreign_classes().items() if isinstance(exc, cls)), None)


def foreign_classes() -> dict[type[BaseException], tuple[int, str, str]]:
    """FOREIGN's classes among the back ends this process has imported.

    A service's app factory is handed its back end (a Redis connection, a Database), so by the
    time it installs these handlers, the back end it uses is imported; the ones it does not use
    stay out of its process."""
    found = {}
    for name, answer in FOREIGN.items():
        module, _, cls = name.rpartition(".")
        if isinstance(getattr(sys.modules.get(module), cls, None), type):
            found[getattr(sys.modules[module], cls)] = answer
    return found


def install(
    app: FastAPI, log: logging.Logger, *, on_error: Callable[[ServiceError], None] | None = None, log_refusals: bool = True,
) -> None:
    """Answer every error of `app` as JSON; `on_error` sees each ServiceError (to count refusals). Each is
    logged with its reason, unless the service logs its refusals itself (`log_refusals=False`)."""

    @app.exception_handler(ServiceError)
    async def service_error(request: Request, exc: ServiceError) -> JSONResponse:
        if on_error is not None:
            on_error(exc)
        if log_refusals:
            log_refusal(log, request.url.path, exc)
        return JSONResponse(status_code=exc.status or 500, content=exc.body(), headers=refusal_headers(exc))

    @app.exception_handler(RequestValidationError)
    async def malformed(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(422, "malformed", problems(exc.errors()))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail
        if not isinstance(detail, dict):
            path = request.url.path[:200]
            message = {404: f"no route {path}", 405: f"{request.method} is not allowed on {path}"}
            detail = {"reason": REASONS.get(exc.status_code, "refused"), "message": message.get(exc.status_code, str(exc.detail))}
        return JSONResponse(status_code=exc.status_code, content=detail, headers=exc.headers)

    for cls, (status, reason, message) in foreign_classes().items():

        async def back_end_away(request: Request, exc: Exception, status=status, reason=reason, message=message):
            log_back_end_away(log, request.url.path, exc, reason)
            return error_response(status, reason, message)

        app.add_exception_handler(cls, back_end_away)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        request_id = getattr(request.state, "request_id", None)
        log.exception("request failed", extra={"path": request.url.path, "request_id": request_id})
        response = error_response(500, "internal", "internal error")
        if request_id is not None:
            response.headers[REQUEST_ID_HEADER] = request_id
        return response
