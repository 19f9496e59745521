"""Whose uploaded voices a request may see: the gateway sends the caller's owner (its key's ``owner``,
or the key's name) in ``x-speech-owner``, empty for a caller without a key on an open route, and no
header at all when the server has no API keys (then everyone sees every voice, as before keys). The
predictors read it into a context variable (it follows the request into worker threads); only the
gateway sets it, never a client: the gateway's own requests are the predictors' only callers."""

from __future__ import annotations

from contextvars import ContextVar

from starlette.types import ASGIApp, Receive, Scope, Send

from services.common.asgi import header

OWNER_HEADER = "x-speech-owner"
OWNER: ContextVar[str | None] = ContextVar("owner", default=None)


class OwnerContext:
    """On a predictor: the gateway's ``x-speech-owner`` for the request's duration."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        token = OWNER.set(header(scope, OWNER_HEADER.encode()))
        try:
            await self.app(scope, receive, send)
        finally:
            OWNER.reset(token)
