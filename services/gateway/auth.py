"""API keys: an ASGI middleware on /v1 (and /metrics when asked) finding the caller's named key by
its SHA-256 digest (``tenants.keys``); a refusal is a 401 with ``WWW-Authenticate``. The voice and
speech-model lists may be left open (they show names only, and Open WebUI asks for them without a
key)."""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from services.common.asgi import deny_websocket, header, send_error
from services.common.errors import Unauthorized
from services.common.owner import OWNER
from services.gateway.tenants.keys import ApiKey, KeyRing

OPEN_LISTS = ("/v1/audio/voices", "/v1/audio/models")
INSECURE_KEY_PROTOCOL = "openai-insecure-api-key."


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
    """The caller's key (``KeyRing``) checked on protected routes; the key found is left in
    ``scope["state"]["api_key"]`` for the per-key gate, the handlers and the logs."""

    def __init__(self, app: ASGIApp, ring: KeyRing, protect_metrics: bool = False, protect_lists: bool = True) -> None:
        self.app, self.ring = app, ring
        self.protect_metrics, self.protect_lists = protect_metrics, protect_lists

    def identify(self, value: str | None) -> ApiKey | None:
        scheme, _, given = (value or "").partition(" ")
        given = given.strip()
        if scheme.lower() != "bearer" or not given:
            return None
        return self.ring.lookup(given)

    def protects(self, method: str, path: str) -> bool:
        if path in OPEN_LISTS and method == "GET":
            return self.protect_lists
        return path.startswith("/v1") or (self.protect_metrics and path == "/metrics")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or not self.ring.enabled:
            await self.app(scope, receive, send)
            return
        websocket = scope["type"] == "websocket"
        given = websocket_key(scope) if websocket else header(scope, b"authorization")
        key = self.identify(given)
        if key is not None:
            scope.setdefault("state", {})["api_key"] = key
        protected = scope["path"].startswith("/v1") if websocket else self.protects(scope["method"], scope["path"])
        if key is not None or not protected:
            token = OWNER.set(key.owner if key is not None else "")  # the TTS predictor shows this owner's voices
            try:
                await self.app(scope, receive, send)
            finally:
                OWNER.reset(token)
        elif websocket:
            await deny_websocket(scope, send, Unauthorized("Incorrect API key provided."))
        else:
            await send_error(send, Unauthorized("Incorrect API key provided."))
