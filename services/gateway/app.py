"""The public OpenAI-compatible API: ``create_app(settings)`` builds it; nothing happens at import."""

from __future__ import annotations

import time
import uuid
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.gateway.auth import ApiKeyMiddleware
from services.gateway.backends import Backend
from services.gateway.errors import install_error_handlers
from services.gateway.routers import health, models, speech, transcriptions
from services.gateway.settings import GatewaySettings


def create_app(settings: GatewaySettings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.asr = Backend("ASR", settings.asr_url, settings.asr_model_name, settings)
        app.state.tts = Backend("TTS", settings.tts_url, settings.tts_model_name, settings)
        yield
        await app.state.asr.close()
        await app.state.tts.close()

    app = FastAPI(title="speech-stack", version="0.1.0", lifespan=lifespan,
                  description="OpenAI-compatible speech API on WhisperX and Coqui TTS.")
    app.state.settings = settings
    app.state.started = int(time.time())
    for router in (health.router, models.router, transcriptions.router, speech.router):
        app.include_router(router)
    install_error_handlers(app)
    app.add_middleware(ApiKeyMiddleware, keys=[k.get_secret_value() for k in settings.api_keys])
    app.add_middleware(RequestIdMiddleware)
    return app


class RequestIdMiddleware:
    """``x-request-id`` on every response (the SDKs surface it as ``request_id``). Plain ASGI, so
    streamed bodies pass through untouched and a stream that breaks off stays broken."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(b"x-request-id")
        rid = given or f"req_{uuid.uuid4().hex}".encode()

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"x-request-id", rid)]
            await send(message)

        await self.app(scope, receive, send_with_id)
