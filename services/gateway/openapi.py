"""The OpenAPI document shows the statuses really sent: OpenAI's error envelope for each of them,
and no FastAPI 422 (validation failures are 400s here)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    """OpenAI's error envelope."""

    error: ErrorDetail


def _error(description: str) -> dict[str, Any]:
    return {"model": ErrorResponse, "description": description}


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: _error("Invalid request (the field is named in `param`)"),
    401: _error("Missing or wrong API key"),
    413: _error("Body or file over the size limit"),
    429: _error("The backend is at capacity; retry after `Retry-After` seconds"),
    502: _error("The backend failed or could not be reached"),
    503: _error("The backend cannot serve now (shutting down, or its model cannot load)"),
    504: _error("The backend did not answer in time"),
}
AUDIO_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Audio in the requested format, or server-sent events",
        "content": {
            "audio/mpeg": {},
            "audio/ogg": {},
            "audio/aac": {},
            "audio/flac": {},
            "audio/wav": {},
            "audio/pcm": {},
            "text/event-stream": {},
        },
    }
}


def install(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            for operations in schema.get("paths", {}).values():
                for operation in operations.values():
                    operation.get("responses", {}).pop("422", None)
            for name in ("HTTPValidationError", "ValidationError"):
                schema.get("components", {}).get("schemas", {}).pop(name, None)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
