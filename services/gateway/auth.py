"""API keys: an ASGI middleware on /v1 comparing SHA-256 digests in constant time."""

from __future__ import annotations

import hashlib
import secrets

from starlette.types import ASGIApp, Receive, Scope, Send

from services.gateway.errors import Unauthorized, error_response


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode()).digest()


class ApiKeyMiddleware:
    def __init__(self, app: ASGIApp, keys: list[str]) -> None:
        self.app = app
        self.digests = [_digest(k) for k in keys]

    def allowed(self, header: str | None) -> bool:
        if not header or not header.lower().startswith("bearer "):
            return False
        given = _digest(header[7:].strip())
        return any(secrets.compare_digest(given, d) for d in self.digests)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.digests or not scope["path"].startswith("/v1"):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        if self.allowed(headers.get("authorization")):
            await self.app(scope, receive, send)
            return
        response = error_response(Unauthorized("Incorrect API key provided.", code="invalid_api_key"))
        await response(scope, receive, send)
