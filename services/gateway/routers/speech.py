from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse

from services.common.asgi import annotate
from services.gateway import sse
from services.gateway.audio_encoding import content_type
from services.gateway.openapi import AUDIO_RESPONSE, ERROR_RESPONSES
from services.gateway.protocol.speech import SpeechRequest
from services.gateway.synthesis import check_request, encoded, open_stream, sse_events, streamed, synthesize

router = APIRouter(prefix="/v1/audio", tags=["audio"], responses=ERROR_RESPONSES)


@router.post("/speech", response_class=Response, responses=AUDIO_RESPONSE)
async def create_speech(body: SpeechRequest, request: Request) -> Response:
    """OpenAI's speech: whole files, chunked audio as it is synthesised, or `stream_format=sse` events."""
    stream = streamed(body)
    annotate(request.scope, model=body.model, response_format=body.response_format, stream=stream)
    settings, state = request.app.state.settings, request.app.state
    await check_request(body, state.catalog)
    headers = {"X-Sample-Rate": str(settings.speech_sample_rate)}

    def done(seconds: float) -> None:
        annotate(request.scope, audio_seconds=seconds)

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
