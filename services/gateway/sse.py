"""Server-sent events framed as the official SDKs parse them: data-only lines of compact JSON, no
``id:`` lines, no ``[DONE]``, comment keep-alives; errors as an ``error`` event with the envelope."""

from __future__ import annotations

import json

HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def event(payload: dict) -> bytes:
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


def error_event(message: str, code: str | None = None) -> bytes:
    body = {"type": "error", "error": {"message": message, "type": "server_error", "param": None, "code": code}}
    return b"event: error\n" + event(body)
