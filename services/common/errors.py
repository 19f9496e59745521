"""Errors every service answers in OpenAI's envelope ``{"error": {message, type, param, code}}``.

Each service raises these (or its own subclasses) and maps them to a response in one place. Public
messages name the service and the kind of failure; exception text goes to the log, not the body.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

MAX_ECHO = 64  # characters of a client's value quoted back in an error message


class ServiceError(Exception):
    status = 500
    type = "server_error"

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message, self.param, self.code = message, param, code
        self.headers = dict(headers or {})

    def body(self) -> dict:
        return error_body(self.message, self.type, self.param, self.code)


class BadRequest(ServiceError):
    status, type = 400, "invalid_request_error"


class Unauthorized(ServiceError):
    status, type = 401, "invalid_request_error"

    def __init__(self, message: str = "Incorrect API key provided.", **kwargs: Any) -> None:
        kwargs.setdefault("code", "invalid_api_key")
        kwargs.setdefault("headers", {"WWW-Authenticate": 'Bearer realm="speech-stack"'})
        super().__init__(message, **kwargs)


class NotFound(ServiceError):
    status, type = 404, "invalid_request_error"


class Forbidden(ServiceError):
    status, type = 403, "invalid_request_error"


class Conflict(ServiceError):
    """409: the request clashes with what exists (a voice name already taken)."""

    status, type = 409, "invalid_request_error"


class PayloadTooLarge(ServiceError):
    status, type = 413, "invalid_request_error"


class Overloaded(ServiceError):
    """429: every slot and queue place is taken; the SDKs wait ``Retry-After`` and retry."""

    status, type = 429, "rate_limit_error"


class Unavailable(ServiceError):
    """503: cannot serve now (draining, or a model that cannot load)."""

    status = 503


class InternalError(ServiceError):
    status = 500


class MethodNotAllowed(ServiceError):
    status, type = 405, "invalid_request_error"


def route_error(status: int, method: str, path: str, headers: Mapping[str, str] | None = None) -> ServiceError:
    """A route-level refusal as OpenAI words it: an unknown route names the method and the path
    (``Invalid URL (POST /v1/foo)``); a known route with another method keeps its ``Allow``."""
    where = f"{method} {echo(path)}"
    if status == 405:
        return MethodNotAllowed(f"Method not allowed ({where})", code="method_not_allowed", headers=headers)
    if status == 404:
        return NotFound(f"Invalid URL ({where})", headers=headers)
    err = BadRequest(f"Invalid request ({where})", headers=headers)
    err.status = status
    return err


def error_body(message: str, type_: str, param: str | None = None, code: str | None = None) -> dict:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def error_bytes(exc: ServiceError) -> bytes:
    return json.dumps(exc.body(), separators=(",", ":")).encode()


def echo(value: object) -> str:
    """A client's value quoted in a message, cut to a bounded length."""
    text = str(value)
    return text if len(text) <= MAX_ECHO else text[:MAX_ECHO] + f"... ({len(text)} characters)"


def no_retry(headers: dict[str, str] | None = None) -> dict[str, str]:
    """Headers telling the OpenAI SDKs not to retry (a retry cannot help)."""
    return {**(headers or {}), "x-should-retry": "false"}
