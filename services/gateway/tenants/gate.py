"""The per-key gate, inside the API key check: one more request on the key's count (429 before any
work when over), the key's ``x-ratelimit-*`` headers on the answer (with those the handlers add for
characters and audio: ``add_headers``), and a realtime session's slot held while the session lives."""

from __future__ import annotations

import asyncio
import contextlib
import secrets

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.common.asgi import annotate, deny_websocket, send_error
from services.common.errors import ServiceError
from services.gateway.tenants.keys import ApiKey
from services.gateway.tenants.quotas import RENEW_SECONDS, Quotas

SESSION_ROUTES = ("/v1/realtime",)  # WebSockets whose sessions at once are limited per key


def key_of(scope: Scope) -> ApiKey | None:
    """The caller's key, set by the API key check (None with auth off or on an open route)."""
    return (scope.get("state") or {}).get("api_key")


def add_headers(scope: Scope, headers: dict[str, str]) -> None:
    scope.setdefault("state", {}).setdefault("ratelimit", {}).update(headers)


class TenantGate:
    def __init__(self, app: ASGIApp, quotas: Quotas) -> None:
        self.app, self.quotas = app, quotas

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        key = key_of(scope) if scope["type"] in ("http", "websocket") else None
        if key is None:
            await self.app(scope, receive, send)
            return
        if scope["type"] == "http":
            annotate(scope, key=key.name)
        try:
            add_headers(scope, await self.quotas.request(key))
            if scope["type"] == "websocket" and scope["path"] in SESSION_ROUTES:
                await self._session(key, scope, receive, send)
                return
        except ServiceError as exc:
            if scope["type"] == "websocket":
                await deny_websocket(scope, send, exc)
            else:
                await send_error(send, exc)
            return
        await self.app(scope, receive, self._with_headers(scope, send))

    @staticmethod
    def _with_headers(scope: Scope, send: Send) -> Send:
        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                extra = (scope.get("state") or {}).get("ratelimit", {})
                message["headers"] = [*message.get("headers", []),
                                      *((k.encode(), v.encode()) for k, v in extra.items())]  # fmt: skip
            await send(message)

        return sending

    async def _session(self, key: ApiKey, scope: Scope, receive: Receive, send: Send) -> None:
        """The key's slot for a session, renewed while it lives and freed when it ends."""
        session = secrets.token_hex(8)
        await self.quotas.enter_session(key, session)

        async def renew() -> None:
            while True:
                await asyncio.sleep(RENEW_SECONDS)
                await self.quotas.renew_session(key, session)

        renewing = asyncio.create_task(renew())
        try:
            await self.app(scope, receive, send)
        finally:
            renewing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewing
            await self.quotas.leave_session(key, session)
