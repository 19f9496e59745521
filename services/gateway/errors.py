"""Errors as exception types, rendered in OpenAI's envelope by handlers registered in one place."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from services.common.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    NotFound,
    Overloaded,
    PayloadTooLarge,
    ServiceError,
    Unauthorized,
    Unavailable,
    route_error,
)

log = logging.getLogger(__name__)
__all__ = [
    "BackendBusy",
    "BackendFailed",
    "BackendTimeout",
    "BackendUnavailable",
    "BadRequest",
    "Conflict",
    "Forbidden",
    "NotFound",
    "PayloadTooLarge",
    "ServiceError",
    "Unauthorized",
    "error_response",
    "install_error_handlers",
]


class BackendFailed(ServiceError):
    """502: the backend could not be reached or failed on this request."""

    status = 502


class BackendUnavailable(Unavailable):
    """503: the backend is up but cannot serve (draining, or a model that cannot load)."""


class BackendTimeout(ServiceError):
    status = 504


class BackendBusy(Overloaded):
    """429: the backend's queue is full."""


def error_response(exc: ServiceError) -> JSONResponse:
    return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)


def _validation_error(exc: RequestValidationError) -> BadRequest:
    first = exc.errors()[0] if exc.errors() else {}
    if first.get("type") == "json_invalid":
        return BadRequest(
            "We could not parse the JSON body of your request: it is not valid JSON.", code="invalid_json"
        )
    loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path", "form")]
    param = loc[0] if loc else None  # the request field, as OpenAI names it
    msg = first.get("msg", "invalid request")
    return BadRequest(f"{param}: {msg}" if param else msg, param=param, code="invalid_value")


def install_error_handlers(app: FastAPI) -> None:
    """Anything unhandled becomes a 500 in ``RequestContext`` (it carries the request id there)."""

    @app.exception_handler(ServiceError)
    async def api_error(_: Request, exc: ServiceError) -> JSONResponse:
        if exc.status >= 500:
            log.warning("%d %s: %s", exc.status, type(exc).__name__, exc.message)
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(_validation_error(exc))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code in (404, 405):  # routing: the path or the method is not served
            return error_response(route_error(exc.status_code, request.method, request.url.path, exc.headers))
        cls: type[ServiceError] = {401: Unauthorized, 413: PayloadTooLarge}.get(exc.status_code, BadRequest)
        err = cls(str(exc.detail), headers=exc.headers)
        err.status = exc.status_code
        return error_response(err)
