from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, WebSocket

from services.common.asgi import deny_websocket
from services.common.errors import BadRequest, ServiceError, echo
from services.common.logs import REQUEST_ID
from services.gateway import websocket_sessions as sessions
from services.gateway.realtime.session import RealtimeSession, new_id
from services.gateway.settings import GatewaySettings

router = APIRouter(tags=["realtime"])
log = logging.getLogger(__name__)


@router.websocket("/v1/realtime")
async def realtime(websocket: WebSocket) -> None:
    """OpenAI's Realtime transcription session (`?intent=transcription`; `model` optional: a
    transcription model to start with). Auth as on /v1, or the `openai-insecure-api-key.<key>`
    subprotocol from browsers. The session's place is taken before the first await, so concurrent
    handshakes cannot pass the limit; the ASR predictor's live session is opened before the
    handshake is answered, so a predictor that has no room is an HTTP error (429 or 503)."""
    state, settings = websocket.app.state, websocket.app.state.settings
    intent, model = websocket.query_params.get("intent"), websocket.query_params.get("model")
    refusal = _refusal(state, settings, intent)
    if refusal is not None:
        await deny_websocket(websocket.scope, websocket.send, refusal)
        return
    with sessions.counted(state, "realtime_sessions"):
        await _serve(websocket, state, settings, model)


def _refusal(state: Any, settings: GatewaySettings, intent: str | None) -> ServiceError | None:
    if intent not in (None, "transcription"):
        return BadRequest(
            f"intent '{echo(intent)}' is not served: this server runs transcription sessions (intent=transcription)",
            param="intent",
            code="invalid_value",
        )
    return sessions.refusal(
        state,
        state.realtime_sessions,
        settings.realtime_max_sessions,
        "realtime sessions",
        settings.retry_after_seconds,
    )


async def _serve(websocket: WebSocket, state: Any, settings: GatewaySettings, model: str | None) -> None:
    session_id = new_id("sess")
    REQUEST_ID.set(session_id)
    if model is not None and await state.catalog.knows("transcription", model) is False:
        refusal = BadRequest(
            f"The model '{echo(model)}' is not a transcription model", param="model", code="model_not_found"
        )
        await deny_websocket(websocket.scope, websocket.send, refusal)
        return
    upstream = await sessions.open_live(websocket, state)
    if upstream is None:
        return
    session = RealtimeSession(
        websocket,
        settings,
        upstream,
        state.catalog,
        state.tenancy,
        model=model,
        draining=lambda: state.drain.draining,
        session_id=session_id,
    )
    log.info("realtime session %s started", session.id)
    await session.run()
