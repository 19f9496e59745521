"""Transcription work without HTTP: check the request (once), ask the ASR backend, render the format.

The backend names every speaker (known names, then A, B, ...); the gateway only renders its result.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import struct
from collections.abc import AsyncGenerator, AsyncIterator, Callable

import httpx
from fastapi import UploadFile
from openai.types.audio import (
    Transcription,
    TranscriptionDiarized,
    TranscriptionTextDeltaEvent,
    TranscriptionTextDoneEvent,
    TranscriptionTextSegmentEvent,
    TranscriptionVerbose,
    Translation,
    TranslationVerbose,
)

from services.common.errors import echo
from services.gateway import sse
from services.gateway.backends import Backend, Blob, new_request
from services.gateway.catalog import ModelCatalog
from services.gateway.errors import BadRequest, PayloadTooLarge
from services.gateway.formats import to_srt, to_vtt
from services.gateway.protocol.transcriptions import TranscriptionRequest, TranslationRequest
from services.gateway.settings import GatewaySettings

log = logging.getLogger(__name__)
DATA_URL = re.compile(r"data:[^,]*;base64,(?P<payload>[A-Za-z0-9+/=\s]+)", re.ASCII)


async def check_model(catalog: ModelCatalog, model: str) -> None:
    if await catalog.knows("transcription", model) is False:
        served = await catalog.ids("transcription")
        raise BadRequest(
            f"The model '{echo(model)}' does not exist or is not a transcription model; use one of {served}",
            param="model",
            code="model_not_found",
        )


def check_upload(file: UploadFile, settings: GatewaySettings, param: str = "file") -> int:
    size = file.size or 0
    if size > settings.max_upload_bytes:
        raise PayloadTooLarge(
            f"Maximum content size limit ({settings.max_upload_bytes}) exceeded ({size} bytes read)",
            param=param,
            code="file_too_large",
        )
    if size == 0:
        raise BadRequest("The audio file is empty.", param=param, code="empty_file")
    return size


def wants_diarization(form: TranscriptionRequest) -> bool:
    return form.diarize or form.response_format == "diarized_json"


def check_transcription(form: TranscriptionRequest) -> list[bytes]:
    """The combinations OpenAI refuses and the seed's fields used without what they need; returns the
    known-speaker references, decoded (the one place they are parsed)."""
    if "word" in form.timestamp_granularities and form.response_format != "verbose_json":
        raise BadRequest(
            "timestamp_granularities[]=word requires response_format=verbose_json",
            param="timestamp_granularities[]",
            code="invalid_value",
        )
    if (form.min_speakers or form.max_speakers) and not wants_diarization(form):
        raise BadRequest(
            "min_speakers/max_speakers need diarize=true or response_format=diarized_json",
            param="min_speakers" if form.min_speakers else "max_speakers",
            code="invalid_value",
        )
    if form.min_speakers and form.max_speakers and form.min_speakers > form.max_speakers:
        raise BadRequest("min_speakers must not exceed max_speakers", param="min_speakers", code="invalid_value")
    if form.wants_logprobs and (form.response_format != "json" or form.advanced):
        raise BadRequest(
            "include[]=logprobs requires response_format=json (without advanced)",
            param="include[]",
            code="invalid_value",
        )
    return known_speaker_references(form)


def known_speaker_references(form: TranscriptionRequest) -> list[bytes]:
    names, references = form.known_speaker_names, form.known_speaker_references
    if not names and not references:
        return []
    if len(names) != len(references):
        raise BadRequest(
            "known_speaker_names[] and known_speaker_references[] must pair up one to one",
            param="known_speaker_references[]",
            code="invalid_value",
        )
    if not wants_diarization(form):
        raise BadRequest(
            "known speakers need response_format=diarized_json or diarize=true",
            param="known_speaker_names[]",
            code="invalid_value",
        )
    if len(set(names)) != len(names) or not all(name.strip() for name in names):
        raise BadRequest(
            "known_speaker_names[] must be distinct and not empty", param="known_speaker_names[]", code="invalid_value"
        )
    return [_decode_data_url(i, reference) for i, reference in enumerate(references)]


def _decode_data_url(i: int, data_url: str) -> bytes:
    match = DATA_URL.fullmatch(data_url)
    try:
        if match is None:
            raise ValueError
        return base64.b64decode("".join(match["payload"].split()), validate=True)
    except (ValueError, binascii.Error):
        raise BadRequest(
            f"known_speaker_references[{i}] must be a base64 data URL such as data:audio/wav;base64,...",
            param="known_speaker_references[]",
            code="invalid_value",
        ) from None


def transcription_parameters(form: TranscriptionRequest) -> dict:
    return {
        "model": form.model,
        "task": "transcribe",
        "language": form.language,
        "prompt": form.prompt,
        "temperature": form.temperature,
        "word_timestamps": form.advanced or "word" in form.timestamp_granularities,
        "diarize": wants_diarization(form),
        "min_speakers": form.min_speakers,
        "max_speakers": form.max_speakers,
        "logprobs": form.wants_logprobs,
        "known_speaker_names": form.known_speaker_names or None,
    }


def translation_parameters(form: TranslationRequest) -> dict:
    return {"model": form.model, "task": "translate", "prompt": form.prompt, "temperature": form.temperature}


def _blobs(file: UploadFile, size: int, references: list[bytes]) -> list[Blob]:
    known = [Blob.of("known_speaker_references", references)] if references else []
    return [Blob.upload("audio", file, size), *known]


async def run_asr(
    backend: Backend, file: UploadFile, size: int, parameters: dict, references: list[bytes] | None = None
) -> dict:
    output = await backend.infer(new_request(parameters), _blobs(file, size, references or []), "result")
    raw = output.raw or b""
    try:
        (length,) = struct.unpack_from("<I", raw)
        return json.loads(raw[4 : 4 + length])
    except (ValueError, TypeError, struct.error) as exc:
        raise backend.malformed(exc) from exc


def render_transcription(result: dict, form: TranscriptionRequest) -> str | dict:
    fmt = "verbose_json" if form.advanced and form.response_format == "json" else form.response_format
    if fmt == "diarized_json":
        return diarized(result)
    if fmt == "verbose_json":
        return verbose_transcription(result, set(form.timestamp_granularities), form.advanced)
    if fmt == "json":
        usage = duration_usage(result)
        return Transcription(text=result["text"], logprobs=_logprobs(result, form), usage=usage).model_dump(
            exclude_none=True
        )
    return render_text(result, fmt)


def _logprobs(result: dict, form: TranscriptionRequest) -> list[dict] | None:
    return result.get("logprobs", []) if form.wants_logprobs else None


def render_translation(result: dict, form: TranslationRequest) -> str | dict:
    common = {"duration": result["duration"], "text": result["text"], "segments": result["segments"]}
    if form.response_format == "verbose_json":
        return TranslationVerbose(language="english", **common).model_dump(exclude_none=True)
    if form.response_format == "json":
        return Translation(text=result["text"]).model_dump()
    return render_text(result, form.response_format)


def render_text(result: dict, fmt: str) -> str:
    return {
        "text": lambda: result["text"] + "\n",
        "srt": lambda: to_srt(result["segments"]),
        "vtt": lambda: to_vtt(result["segments"]),
    }[fmt]()


def verbose_transcription(result: dict, granularities: set[str], advanced: bool) -> dict:
    """OpenAI's verbose_json; ``advanced`` adds WhisperX's per-segment aligned words (with scores)."""
    segments = [
        {k: v for k, v in s.items() if k != "logprobs" and (k != "words" or advanced)} for s in result["segments"]
    ]
    body = TranscriptionVerbose(
        language=result["language_name"],
        duration=result["duration"],
        text=result["text"],
        segments=segments if ("segment" in granularities or advanced) else None,
        words=result.get("words") if ("word" in granularities or advanced) else None,
        usage=duration_usage(result),
    )
    return {"task": "transcribe", **body.model_dump(exclude_none=True)}


def diarized_segments(result: dict) -> list[dict]:
    return [
        TranscriptionTextSegmentEvent(
            type="transcript.text.segment",
            id=f"seg_{s['id']}",
            start=s["start"],
            end=s["end"],
            text=s["text"].strip(),
            speaker=s.get("speaker", "A"),
        ).model_dump()
        for s in result["segments"]
    ]


def diarized(result: dict) -> dict:
    segments = diarized_segments(result)
    text = "\n".join(f"{s['speaker']}: {s['text']}" for s in segments)
    return TranscriptionDiarized(
        task="transcribe",
        duration=result["duration"],
        text=text,
        segments=segments,
        usage=duration_usage(result),
    ).model_dump()


async def stream_transcription(
    backend: Backend,
    file: UploadFile,
    size: int,
    form: TranscriptionRequest,
    *,
    references: list[bytes],
    on_result: Callable[[dict], None],
) -> AsyncIterator[bytes]:
    """Open the backend stream now (its errors are HTTP errors); return the SSE body to send."""
    header = new_request(transcription_parameters(form))
    response = await backend.open_stream(header, _blobs(file, size, references))
    return _sse(response, form, on_result)


async def asr_events(response: httpx.Response) -> AsyncGenerator[dict, None]:
    """The ASR predictor's NDJSON stream (``text``, then ``result`` or ``error``), one event at a time;
    the response is closed when the caller stops."""
    try:
        async for line in response.aiter_lines():
            if line:
                yield json.loads(line)
    finally:
        await response.aclose()


async def _sse(
    response: httpx.Response, form: TranscriptionRequest, on_result: Callable[[dict], None]
) -> AsyncIterator[bytes]:
    started = False
    events = asr_events(response)
    try:
        async for item in events:
            if item["type"] == "text":
                delta = item["text"] if started else item["text"].lstrip()
                started = started or bool(delta)
                if delta:
                    delta_event = TranscriptionTextDeltaEvent.model_validate(
                        {"type": "transcript.text.delta", "delta": delta, "logprobs": item.get("logprobs")}
                    )
                    yield sse.event(delta_event.model_dump(exclude_none=True))
            elif item["type"] == "result":
                on_result(item["result"])
                for final in final_events(item["result"], form):
                    yield final
                return
            else:
                yield sse.error_event(f"ASR backend failed: {item.get('message')}", item.get("code"))
                return
        yield sse.error_event("ASR backend stream ended without a result", "backend_stream_failed")
    except (httpx.HTTPError, ValueError, KeyError) as exc:
        log.warning("ASR backend stream broke off: %s: %s", type(exc).__name__, exc)
        yield sse.error_event("ASR backend stream broke off", "backend_stream_failed")
    finally:
        await events.aclose()


def final_events(result: dict, form: TranscriptionRequest) -> list[bytes]:
    events = []
    if form.response_format == "diarized_json":
        events = [sse.event(seg) for seg in diarized_segments(result)]
    done = TranscriptionTextDoneEvent.model_validate(
        {"type": "transcript.text.done", "text": result["text"], "logprobs": _logprobs(result, form)}
    )
    # usage as the JSON answer gives it (the SDK's done event types only token usage; it parses this too)
    return [*events, sse.event(done.model_dump(exclude_none=True) | {"usage": duration_usage(result)})]


def duration_usage(result: dict) -> dict:
    """Whisper's usage, as OpenAI reports it for whisper-1: the seconds of audio."""
    return {"type": "duration", "seconds": result["duration"]}
