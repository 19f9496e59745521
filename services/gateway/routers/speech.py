from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from services.gateway.audio_encoding import content_type
from services.gateway.protocol.speech import SpeechRequest
from services.gateway.speech import check_request, synthesize

router = APIRouter(prefix="/v1/audio", tags=["audio"])


@router.post("/speech", response_class=Response)
async def create_speech(body: SpeechRequest, request: Request) -> Response:
    settings = request.app.state.settings
    check_request(body, settings)
    audio = await synthesize(request.app.state.tts, body, settings)
    headers = {"X-Sample-Rate": str(settings.speech_sample_rate)}
    return Response(audio, media_type=content_type(body.response_format), headers=headers)
