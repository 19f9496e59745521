"""The public OpenAI-compatible API: ``create_app(settings)`` builds it; nothing happens at import.

Around the routes, outermost first: request id, error envelope and one access record per request
(``RequestContext``); the drain gate (503 while shutting down); API keys; the body limit (413 while
reading); cancellation of the work of a client that left.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI
from pydantic import SecretStr
from starlette.types import Scope

from services.common.asgi import BodyLimit, RequestContext, RequestRecord, header
from services.common.draining import Drain, DrainGate
from services.gateway import openapi
from services.gateway.auth import ApiKeyMiddleware
from services.gateway.backends import Backend
from services.gateway.cancellation import CancelOnDisconnect
from services.gateway.catalog import ModelCatalog
from services.gateway.errors import install_error_handlers
from services.gateway.metrics import GatewayMetrics
from services.gateway.readiness import Readiness
from services.gateway.routers import (
    admin,
    health,
    models,
    playground,
    realtime,
    realtime_translations,
    speech,
    speech_stream,
    transcriptions,
    voices,
)
from services.gateway.settings import GatewaySettings
from services.gateway.tenants import audit
from services.gateway.tenants.audit import WebSocketAudit
from services.gateway.tenants.gate import TenantGate
from services.gateway.tenants.tenancy import Tenancy

OPEN_PATHS = ("/healthz", "/readyz", "/metrics")


def body_limit(settings: GatewaySettings) -> Callable[[Scope], int | None]:
    """Multipart bodies: the file limit plus room for the other fields; anything else: the JSON limit."""

    def limit_for(scope: Scope) -> int | None:
        if scope["method"] not in ("POST", "PUT", "PATCH"):
            return None
        kind = (header(scope, b"content-type") or "").lower()
        if kind.startswith("multipart/"):
            return settings.max_upload_bytes + settings.max_form_overhead_bytes
        return settings.max_json_bytes

    return limit_for


def body_param(scope: Scope) -> str | None:
    """The field an oversized body is blamed on: the upload of a multipart form."""
    if not (header(scope, b"content-type") or "").lower().startswith("multipart/"):
        return None
    path = scope["path"]
    if path.startswith("/v1/audio/voice_consents"):
        return "recording"
    return "audio_sample" if path.startswith("/v1/audio/voices") else "file"


def _secret(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value else None


def create_app(settings: GatewaySettings, transports: dict[str, httpx.AsyncBaseTransport] | None = None) -> FastAPI:
    """``transports`` replaces the network to a backend (in-process tests put a fake there)."""
    transports = transports or {}
    metrics = GatewayMetrics()
    drain = Drain("gateway", settings.shutdown_grace_seconds, exempt=OPEN_PATHS)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.asr = Backend(
            "ASR",
            settings.asr_url,
            settings.asr_model_name,
            token=_secret(settings.asr_token),
            settings=settings,
            transport=transports.get("asr"),
            discovery=settings.asr_replicas_url,
            on_reroute=metrics.rerouted_request,
        )
        app.state.tts = Backend(
            "TTS",
            settings.tts_url,
            settings.tts_model_name,
            token=_secret(settings.tts_token),
            settings=settings,
            transport=transports.get("tts"),
            discovery=settings.tts_replicas_url,
            on_reroute=metrics.rerouted_request,
        )
        backends = (app.state.asr, app.state.tts)
        app.state.readiness = Readiness({"asr": app.state.asr, "tts": app.state.tts})
        app.state.catalog = ModelCatalog(
            {"transcription": app.state.asr, "speech": app.state.tts},
            settings.models_ttl_seconds,
            metrics.known_models.update,
        )
        watching = [asyncio.create_task(b.replicas.keep_current(b.client)) for b in backends if b.replicas.discovery]
        metrics.watch_replicas({b.label: b.replicas for b in backends})
        yield
        for task in watching:
            task.cancel()
        for backend in backends:
            await backend.close()
        await tenancy.counters.close()

    app = FastAPI(
        title="speech-stack",
        version="0.1.0",
        lifespan=lifespan,
        description="OpenAI-compatible speech API on WhisperX and Coqui TTS.",
    )
    tenancy = Tenancy.from_settings(settings, metrics.registry)
    app.state.settings, app.state.metrics, app.state.drain = settings, metrics, drain
    app.state.tenancy = tenancy
    app.state.started = int(time.time())
    app.state.realtime_sessions = app.state.speech_streams = app.state.translation_sessions = 0
    metrics.in_flight.set_function(lambda: drain.in_flight)
    metrics.sessions.labels("/v1/realtime").set_function(lambda: app.state.realtime_sessions)
    metrics.sessions.labels("/v1/audio/speech/stream").set_function(lambda: app.state.speech_streams)
    metrics.sessions.labels("/v1/realtime/translations").set_function(lambda: app.state.translation_sessions)
    routers = (health, models, transcriptions, speech, speech_stream, voices, realtime, realtime_translations, admin)
    for module in routers:
        app.include_router(module.router)
    if settings.playground:
        app.include_router(playground.router)
    install_error_handlers(app)
    openapi.install(app)
    app.add_middleware(CancelOnDisconnect)
    app.add_middleware(BodyLimit, limit_for=body_limit(settings), param_for=body_param)
    app.add_middleware(TenantGate, quotas=tenancy.quotas)
    app.add_middleware(
        ApiKeyMiddleware,
        ring=tenancy.ring,
        protect_metrics=settings.metrics_need_key,
        protect_lists=settings.voices_need_key,
    )
    app.add_middleware(WebSocketAudit)
    app.add_middleware(DrainGate, drain=drain)
    app.add_middleware(RequestContext, on_complete=functools.partial(_finished, metrics, tenancy))
    return app


def _finished(metrics: GatewayMetrics, tenancy: Tenancy, record: RequestRecord) -> None:
    """One finished request: the metrics, the access log, usage by key, the audit line."""
    metrics.observe(record)
    tenancy.usage.observe(record)
    audit.record(record)
