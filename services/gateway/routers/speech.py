from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse

from services.gateway import sse
from services.gateway.audio_encoding import content_type
from services.gateway.protocol.speech import SpeechRequest
from services.gateway.speech import check_request, encoded, open_stream, sse_events, streamed, synthesize

router = APIRouter(prefix="/v1/audio", tags=["audio"])


@router.post("/speech", response_class=Response)
async def create_speech(body: SpeechRequest, request: Request) -> Response:
    """OpenAI's speech: whole files, chunked audio as it is synthesised, or `stream_format=sse` events."""
    settings = request.app.state.settings
    check_request(body, settings)
    headers = {"X-Sample-Rate": str(settings.speech_sample_rate)}
    backend = request.app.state.tts
    if not streamed(body):
        audio = await synthesize(backend, body, settings)
        return Response(audio, media_type=content_type(body.response_format), headers=headers)
    pcm = await open_stream(backend, body)  # backend errors are still HTTP errors here
    if body.stream_format == "sse":
        return StreamingResponse(sse_events(pcm, body, settings), media_type="text/event-stream",
                                 headers=sse.HEADERS | headers)
    return StreamingResponse(encoded(pcm, body, settings), media_type=content_type(body.response_format),
                             headers=headers)
