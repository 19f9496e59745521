"""API keys: an ASGI middleware on /v1 (and /metrics when asked) comparing SHA-256 digests in
constant time; a refusal is a 401 with ``WWW-Authenticate``. The voice and speech-model lists may
be left open (they show names only, and Open WebUI asks for them without a key)."""

from __future__ import annotations

import hashlib
import secrets

from starlette.types import ASGIApp, Receive, Scope, Send

from services.common.asgi import deny_websocket, header, send_error
from services.common.errors import Unauthorized

OPEN_LISTS = ("/v1/audio/voices", "/v1/audio/models")
INSECURE_KEY_PROTOCOL = "openai-insecure-api-key."


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode()).digest()


def websocket_key(scope: Scope) -> str | None:
    """A WebSocket's key: ``Authorization: Bearer``, or for browsers (which cannot set headers) the
    subprotocol ``openai-insecure-api-key.<key>``, as OpenAI's Realtime API takes it."""
    given = header(scope, b"authorization")
    if given:
        return given
    for protocol in scope.get("subprotocols", []):
        if protocol.startswith(INSECURE_KEY_PROTOCOL):
            return f"Bearer {protocol[len(INSECURE_KEY_PROTOCOL) :]}"
    return None


class ApiKeyMiddleware:
    def __init__(
        self, app: ASGIApp, keys: list[str], protect_metrics: bool = False, protect_lists: bool = True
    ) -> None:
        self.app = app
        self.digests = [_digest(k) for k in keys if k]
        self.protect_metrics, self.protect_lists = protect_metrics, protect_lists

    def allowed(self, value: str | None) -> bool:
        scheme, _, given = (value or "").partition(" ")
        given = given.strip()
        if scheme.lower() != "bearer" or not given:
            return False
        digest = _digest(given)
        return any(secrets.compare_digest(digest, d) for d in self.digests)

    def protects(self, method: str, path: str) -> bool:
        if path in OPEN_LISTS and method == "GET":
            return self.protect_lists
        return path.startswith("/v1") or (self.protect_metrics and path == "/metrics")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "websocket"
            and self.digests
            and scope["path"].startswith("/v1")
            and not self.allowed(websocket_key(scope))
        ):
            await deny_websocket(scope, send, Unauthorized("Incorrect API key provided."))
            return
        if (
            scope["type"] != "http"
            or not self.digests
            or not self.protects(scope["method"], scope["path"])
            or self.allowed(header(scope, b"authorization"))
        ):
            await self.app(scope, receive, send)
            return
        await send_error(send, Unauthorized("Incorrect API key provided."))
