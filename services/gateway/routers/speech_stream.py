"""``WS /v1/audio/speech/stream``: speech fed by a text stream, in vLLM-Omni's protocol
(``services.gateway.speech_stream``). Auth as on /v1 (or the ``openai-insecure-api-key.<key>``
subprotocol); refused at the handshake while draining (503) or when
``GATEWAY_SPEECH_STREAM_MAX_SESSIONS`` sessions are open (429), counted before the first await."""

from __future__ import annotations

import logging

from fastapi import APIRouter, WebSocket

from services.common.asgi import deny_websocket
from services.common.logs import REQUEST_ID
from services.gateway import websocket_sessions as sessions
from services.gateway.realtime.session import new_id
from services.gateway.speech_stream.session import SpeechStreamSession

router = APIRouter(tags=["audio"])
log = logging.getLogger(__name__)


@router.websocket("/v1/audio/speech/stream")
async def speech_stream(websocket: WebSocket) -> None:
    state, settings = websocket.app.state, websocket.app.state.settings
    limit = settings.speech_stream_max_sessions
    what = "speech stream sessions"
    refusal = sessions.refusal(state, state.speech_streams, limit, what, settings.retry_after_seconds)
    if refusal is not None:
        await deny_websocket(websocket.scope, websocket.send, refusal)
        return
    with sessions.counted(state, "speech_streams"):
        REQUEST_ID.set(new_id("speech"))
        await sessions.accept(websocket)
        log.info("speech stream session %s started", REQUEST_ID.get())
        await SpeechStreamSession(websocket, settings, state.catalog, (state.tts, state.asr), state.tenancy).run()
        log.info("speech stream session %s ended", REQUEST_ID.get())
