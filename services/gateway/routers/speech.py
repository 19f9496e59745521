from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from services.common.asgi import annotate
from services.gateway import sse
from services.gateway.audio_encoding import content_type
from services.gateway.openapi import AUDIO_RESPONSE, ERROR_RESPONSES
from services.gateway.protocol.speech import SpeechRequest
from services.gateway.settings import GatewaySettings
from services.gateway.synthesis import check_request, encoded, open_stream, sse_events, streamed, synthesize
from services.gateway.timed_speech import check_timed, first_of, timed_json, timed_pieces, timed_sse

router = APIRouter(prefix="/v1/audio", tags=["audio"], responses=ERROR_RESPONSES)


@router.post("/speech", response_class=Response, responses=AUDIO_RESPONSE)
async def create_speech(body: SpeechRequest, request: Request) -> Response:
    """OpenAI's speech: whole files, chunked audio as it is synthesised, or `stream_format=sse` events."""
    stream = streamed(body)
    annotate(request.scope, model=body.model, response_format=body.response_format, stream=stream)
    settings, state = request.app.state.settings, request.app.state
    await check_request(body, state.catalog)
    await state.tenancy.characters(request.scope, len(body.input))
    headers = {"X-Sample-Rate": str(settings.speech_sample_rate)}

    def done(seconds: float) -> None:
        annotate(request.scope, audio_seconds=seconds)

    if body.word_timestamps:
        return await _timed(body, state, settings, headers)
    if not stream:
        audio, seconds = await synthesize(state.tts, body, settings)
        done(seconds)
        return Response(audio, media_type=content_type(body.response_format), headers=headers)
    pcm = await open_stream(state.tts, body)  # backend errors are still HTTP errors here
    if body.stream_format == "sse":
        return StreamingResponse(
            sse_events(pcm, body, settings, done), media_type="text/event-stream", headers=sse.HEADERS | headers
        )
    return StreamingResponse(
        encoded(pcm, body, settings, done), media_type=content_type(body.response_format), headers=headers
    )


async def _timed(body: SpeechRequest, state: Any, settings: GatewaySettings, headers: dict[str, str]) -> Response:
    """Speech with word timings: JSON (the file and the words) or SSE (each sentence's audio and words)."""
    check_timed(body)
    pieces = timed_pieces(state.tts, state.asr, body, settings)
    first = await first_of(pieces)  # the first sentence's errors are HTTP errors
    if body.stream_format == "sse":
        events = timed_sse(first, pieces, body, settings.speech_sample_rate)
        return StreamingResponse(events, media_type="text/event-stream", headers=sse.HEADERS | headers)
    return JSONResponse(await timed_json(first, pieces, body, settings.speech_sample_rate), headers=headers)
