from __future__ import annotations

import logging

from fastapi import APIRouter, WebSocket

from services.common.errors import BadRequest, Overloaded, ServiceError, Unavailable, echo
from services.gateway.auth import deny_websocket
from services.gateway.realtime.session import RealtimeSession

router = APIRouter(tags=["realtime"])
log = logging.getLogger(__name__)
SUBPROTOCOL = "realtime"


@router.websocket("/v1/realtime")
async def realtime(websocket: WebSocket) -> None:
    """OpenAI's Realtime transcription session (`?intent=transcription`; `model` optional: a
    transcription model to start with). Auth as on /v1, or the `openai-insecure-api-key.<key>`
    subprotocol from browsers."""
    state, settings = websocket.app.state, websocket.app.state.settings
    intent, model = websocket.query_params.get("intent"), websocket.query_params.get("model")
    refusal: ServiceError | None = None
    if intent not in (None, "transcription"):
        refusal = BadRequest(
            f"intent '{echo(intent)}' is not served: this server runs transcription sessions (intent=transcription)",
            param="intent",
            code="invalid_value",
        )
    elif model is not None and await state.catalog.knows("transcription", model) is False:
        refusal = BadRequest(
            f"The model '{echo(model)}' is not a transcription model", param="model", code="model_not_found"
        )
    elif state.drain.draining:
        refusal = Unavailable(
            "the gateway is shutting down; reconnect shortly", code="shutting_down", headers={"Retry-After": "1"}
        )
    elif state.realtime_sessions >= settings.realtime_max_sessions:
        refusal = Overloaded(
            f"all {settings.realtime_max_sessions} realtime sessions are in use; retry shortly",
            code="server_busy",
            headers={"Retry-After": str(settings.retry_after_seconds)},
        )
    if refusal is not None:
        await deny_websocket(websocket.scope, websocket.send, refusal)
        return
    offered = websocket.scope.get("subprotocols", [])
    await websocket.accept(subprotocol=SUBPROTOCOL if SUBPROTOCOL in offered else None)
    session = RealtimeSession(
        websocket, settings, state.asr, state.catalog, model=model, draining=lambda: state.drain.draining
    )
    state.realtime_sessions += 1
    state.drain.in_flight += 1  # a drain waits for sessions to close
    log.info("realtime session %s started", session.id)
    try:
        await session.run()
    finally:
        state.realtime_sessions -= 1
        state.drain.in_flight -= 1
