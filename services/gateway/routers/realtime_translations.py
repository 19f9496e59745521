"""``WS /v1/realtime/translations?model=...``: OpenAI's Realtime translation sessions
(``services.gateway.translation``). Auth as on /v1 (or the ``openai-insecure-api-key.<key>``
subprotocol); ``model``, required, is a transcription model or one of ``GATEWAY_TRANSLATION_MODELS``.
Refused at the handshake while draining (503), when ``GATEWAY_TRANSLATION_MAX_SESSIONS`` sessions are
open (429, counted before the first await), or when no ASR predictor has room (its 429 or 503)."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, WebSocket

from services.common.asgi import deny_websocket
from services.common.errors import BadRequest, ServiceError, Unavailable, echo
from services.common.logs import REQUEST_ID
from services.gateway import websocket_sessions as sessions
from services.gateway.realtime.session import new_id
from services.gateway.settings import GatewaySettings
from services.gateway.translation.config import SPEAKER, TranslationConfig
from services.gateway.translation.session import TranslationSession

router = APIRouter(tags=["realtime"])
log = logging.getLogger(__name__)
FALLBACK_VOICE = "alloy"


@router.websocket("/v1/realtime/translations")
async def translations(websocket: WebSocket) -> None:
    state, settings = websocket.app.state, websocket.app.state.settings
    refusal = _refusal(state, settings)
    if refusal is not None:
        await deny_websocket(websocket.scope, websocket.send, refusal)
        return
    with sessions.counted(state, "translation_sessions"):
        await _serve(websocket, state, settings)


def _refusal(state: Any, settings: GatewaySettings) -> ServiceError | None:
    limit = settings.translation_max_sessions
    what = "realtime translation sessions"
    return sessions.refusal(state, state.translation_sessions, limit, what, settings.retry_after_seconds)


async def _models(state: Any, settings: GatewaySettings, model: str | None) -> tuple[str, str, str]:
    """The session's model, the transcription model that hears it, the speech model that speaks."""
    if not model:
        raise BadRequest("a translation session needs ?model=", param="model", code="missing_required_parameter")
    transcription = await state.catalog.ids("transcription") or []
    if model in transcription:
        whisper = model
    elif model in settings.translation_models and transcription:
        whisper = transcription[0]
    else:
        served = [*transcription, *settings.translation_models]
        raise BadRequest(
            f"The model '{echo(model)}' cannot translate speech; use one of {served}",
            param="model",
            code="model_not_found",
        )
    speech = settings.translation_speech_model or next(iter(await state.catalog.ids("speech") or []), None)
    if speech is None:
        raise Unavailable("the TTS backend lists no speech model", code="backend_unavailable")
    return model, whisper, speech


async def _serve(websocket: WebSocket, state: Any, settings: GatewaySettings) -> None:
    session_id = new_id("sess")
    REQUEST_ID.set(session_id)
    try:
        model, whisper, speech = await _models(state, settings, websocket.query_params.get("model"))
    except ServiceError as exc:
        await deny_websocket(websocket.scope, websocket.send, exc)
        return
    upstream = await sessions.open_live(websocket, state)
    if upstream is None:
        return
    config = TranslationConfig(
        model=model,
        whisper=whisper,
        language=settings.translation_language,
        voice=settings.translation_voice,
        delay=settings.realtime_delay,
    )
    session = TranslationSession(
        websocket,
        settings,
        upstream,
        state.catalog,
        state.tenancy,
        model=whisper,
        draining=lambda: state.drain.draining,
        session_id=session_id,
        config=config,
        tts=state.tts,
        metrics=state.metrics,
        speech_model=speech,
        fallback_voice=FALLBACK_VOICE if settings.translation_voice == SPEAKER else settings.translation_voice,
    )
    log.info("realtime translation session %s started", session.id)
    await session.run()
