"""``WS /v1/audio/speech/stream``: speech fed by a text stream, in vLLM-Omni's protocol
(``services.gateway.speech_stream``). Auth as on /v1 (or the ``openai-insecure-api-key.<key>``
subprotocol); refused at the handshake while draining (503) or when
``GATEWAY_SPEECH_STREAM_MAX_SESSIONS`` sessions are open (429), counted before the first await."""

from __future__ import annotations

import logging

from fastapi import APIRouter, WebSocket

from services.common.asgi import deny_websocket
from services.common.errors import Overloaded, Unavailable
from services.common.logs import REQUEST_ID
from services.gateway.realtime.session import new_id
from services.gateway.speech_stream.session import SpeechStreamSession

router = APIRouter(tags=["audio"])
log = logging.getLogger(__name__)


@router.websocket("/v1/audio/speech/stream")
async def speech_stream(websocket: WebSocket) -> None:
    state, settings = websocket.app.state, websocket.app.state.settings
    if state.drain.draining:
        refusal = Unavailable("the gateway is shutting down; reconnect shortly", code="shutting_down",
                              headers={"Retry-After": "1"})  # fmt: skip
        await deny_websocket(websocket.scope, websocket.send, refusal)
        return
    if state.speech_streams >= settings.speech_stream_max_sessions:
        busy = Overloaded(
            f"all {settings.speech_stream_max_sessions} speech stream sessions are in use; retry shortly",
            code="server_busy",
            headers={"Retry-After": str(settings.retry_after_seconds)},
        )
        await deny_websocket(websocket.scope, websocket.send, busy)
        return
    state.speech_streams += 1
    state.drain.in_flight += 1
    try:
        REQUEST_ID.set(new_id("speech"))
        offered = websocket.scope.get("subprotocols", [])
        await websocket.accept(subprotocol="realtime" if "realtime" in offered else None)
        log.info("speech stream session %s started", REQUEST_ID.get())
        await SpeechStreamSession(websocket, settings, state.catalog, (state.tts, state.asr), state.tenancy).run()
        log.info("speech stream session %s ended", REQUEST_ID.get())
    finally:
        state.speech_streams -= 1
        state.drain.in_flight -= 1
