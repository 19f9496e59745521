"""Transcription work without HTTP: check the request, ask the ASR backend, render the format."""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import AsyncIterator

from fastapi import UploadFile
from openai.types.audio import (Transcription, TranscriptionDiarized, TranscriptionVerbose, Translation,
                                TranslationVerbose)

from services.gateway import sse
from services.gateway.backends import Backend, blob_body, new_request
from services.gateway.errors import BackendFailed, InvalidRequest, PayloadTooLarge
from services.gateway.formats import to_srt, to_vtt
from services.gateway.protocol.transcriptions import TranscriptionRequest, TranslationRequest
from services.gateway.settings import GatewaySettings

CHUNK = 1 << 16


def check_model(model: str, settings: GatewaySettings) -> None:
    if model not in settings.transcription_models:
        raise InvalidRequest(f"The model '{model}' does not exist or is not a transcription model; "
                             f"use one of {settings.transcription_models}", param="model", code="model_not_found")


def check_upload(file: UploadFile, settings: GatewaySettings) -> int:
    size = file.size or 0
    if size > settings.max_upload_bytes:
        raise PayloadTooLarge(f"Maximum content size limit ({settings.max_upload_bytes}) exceeded "
                              f"({size} bytes read)", param="file")
    if size == 0:
        raise InvalidRequest("The audio file is empty.", param="file", code="empty_file")
    return size


def wants_diarization(form: TranscriptionRequest) -> bool:
    return form.diarize or form.response_format == "diarized_json"


def check_transcription(form: TranscriptionRequest) -> None:
    """The combinations OpenAI refuses, and the seed's fields used without what they need."""
    if "word" in form.timestamp_granularities and form.response_format != "verbose_json":
        raise InvalidRequest("timestamp_granularities[]=word requires response_format=verbose_json",
                             param="timestamp_granularities[]", code="invalid_value")
    if (form.min_speakers or form.max_speakers) and not wants_diarization(form):
        raise InvalidRequest("min_speakers/max_speakers need diarize=true or response_format=diarized_json",
                             param="min_speakers" if form.min_speakers else "max_speakers", code="invalid_value")
    if form.wants_logprobs and (form.response_format != "json" or form.advanced):
        raise InvalidRequest("include[]=logprobs requires response_format=json (without advanced)",
                             param="include[]", code="invalid_value")
    check_known_speakers(form)
    if form.min_speakers and form.max_speakers and form.min_speakers > form.max_speakers:
        raise InvalidRequest("min_speakers must not exceed max_speakers", param="min_speakers",
                             code="invalid_value")


DATA_URL = re.compile(r"data:[^,]*;base64,(?P<payload>[A-Za-z0-9+/=\s]+)", re.ASCII)


def check_known_speakers(form: TranscriptionRequest) -> None:
    names, references = form.known_speaker_names, form.known_speaker_references
    if not names and not references:
        return
    if len(names) != len(references):
        raise InvalidRequest("known_speaker_names[] and known_speaker_references[] must pair up one to one",
                             param="known_speaker_references[]", code="invalid_value")
    if not wants_diarization(form):
        raise InvalidRequest("known speakers need response_format=diarized_json or diarize=true",
                             param="known_speaker_names[]", code="invalid_value")
    if len(set(names)) != len(names) or not all(name.strip() for name in names):
        raise InvalidRequest("known_speaker_names[] must be distinct and not empty",
                             param="known_speaker_names[]", code="invalid_value")
    for i, reference in enumerate(references):
        payload = _payload(reference)
        if payload is None or not _is_base64(payload):
            raise InvalidRequest(f"known_speaker_references[{i}] must be a base64 data URL "
                                 "such as data:audio/wav;base64,...", param="known_speaker_references[]",
                                 code="invalid_value")


def _is_base64(payload: str) -> bool:
    try:
        base64.b64decode(payload, validate=True)
    except binascii.Error:
        return False
    return True


def _payload(data_url: str) -> str | None:
    """The base64 part of a data URL, whitespace removed (None if it is not one)."""
    match = DATA_URL.fullmatch(data_url)
    return "".join(match["payload"].split()) if match else None


def known_speakers(form: TranscriptionRequest) -> str | None:
    """The pairs for the predictor; the base64 payloads go as they came (no re-encoding)."""
    if not form.known_speaker_names:
        return None
    return json.dumps([{"name": name, "reference": _payload(ref)}
                       for name, ref in zip(form.known_speaker_names, form.known_speaker_references)])


def transcription_parameters(form: TranscriptionRequest) -> dict:
    return {"model": form.model, "task": "transcribe", "language": form.language, "prompt": form.prompt,
            "temperature": form.temperature,
            "word_timestamps": form.advanced or "word" in form.timestamp_granularities,
            "diarize": wants_diarization(form), "min_speakers": form.min_speakers,
            "max_speakers": form.max_speakers, "logprobs": form.wants_logprobs,
            "known_speakers": known_speakers(form)}


def translation_parameters(form: TranslationRequest) -> dict:
    return {"model": form.model, "task": "translate", "prompt": form.prompt, "temperature": form.temperature}


async def _chunks(file: UploadFile) -> AsyncIterator[bytes]:
    await file.seek(0)
    while chunk := await file.read(CHUNK):
        yield chunk


async def run_asr(backend: Backend, file: UploadFile, size: int, parameters: dict) -> dict:
    output = await backend.infer_with_blob(new_request(parameters), _chunks(file), size, "result")
    try:
        return json.loads(output.single_bytes())
    except ValueError as exc:
        raise BackendFailed(f"ASR backend returned a malformed result: {exc}") from exc


def letter_speakers(result: dict, known: list[str]) -> None:
    """pyannote's SPEAKER_00, SPEAKER_01, ... -> OpenAI's A, B, ... in order of first appearance;
    speakers matched to ``known`` names keep them."""
    names: dict[str, str] = {name: name for name in known}
    letters = (letter for i in range(10_000) if (letter := _letter(i)) not in names)
    labelled = [item for item in [*result["segments"], *result.get("words", [])] if "speaker" in item]
    for item in labelled:
        if item["speaker"] not in names:
            names[item["speaker"]] = next(letters)
        item["speaker"] = names[item["speaker"]]
    if "speakers" in result:
        result["speakers"] = list(dict.fromkeys(item["speaker"] for item in labelled))


def _letter(i: int) -> str:
    return chr(ord("A") + i) if i < 26 else f"S{i}"


def render_transcription(result: dict, form: TranscriptionRequest) -> str | dict:
    letter_speakers(result, form.known_speaker_names)
    fmt = "verbose_json" if form.advanced and form.response_format == "json" else form.response_format
    if fmt == "diarized_json":
        return diarized(result)
    if fmt == "verbose_json":
        return verbose_transcription(result, set(form.timestamp_granularities), form.advanced)
    if fmt == "json":
        usage = {"type": "duration", "seconds": result["duration"]}
        return Transcription(text=result["text"], logprobs=_logprobs(result, form),
                             usage=usage).model_dump(exclude_none=True)
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
    return {"text": lambda: result["text"] + "\n", "srt": lambda: to_srt(result["segments"]),
            "vtt": lambda: to_vtt(result["segments"])}[fmt]()


def verbose_transcription(result: dict, granularities: set[str], advanced: bool) -> dict:
    """OpenAI's verbose_json; ``advanced`` adds WhisperX's per-segment aligned words (with scores)."""
    segments = [{k: v for k, v in s.items() if k != "logprobs" and (k != "words" or advanced)}
                for s in result["segments"]]
    body = TranscriptionVerbose(
        language=result["language_name"], duration=result["duration"], text=result["text"],
        segments=segments if ("segment" in granularities or advanced) else None,
        words=result.get("words") if ("word" in granularities or advanced) else None,
        usage={"type": "duration", "seconds": result["duration"]})
    return {"task": "transcribe", **body.model_dump(exclude_none=True)}


def diarized_segments(result: dict) -> list[dict]:
    return [{"type": "transcript.text.segment", "id": f"seg_{s['id']}", "start": s["start"], "end": s["end"],
             "text": s["text"].strip(), "speaker": s.get("speaker", "A")} for s in result["segments"]]


def diarized(result: dict) -> dict:
    segments = diarized_segments(result)
    text = "\n".join(f"{s['speaker']}: {s['text']}" for s in segments)
    return TranscriptionDiarized(task="transcribe", duration=result["duration"], text=text, segments=segments,
                                 usage={"type": "duration", "seconds": result["duration"]}).model_dump()


async def stream_transcription(backend: Backend, file: UploadFile, size: int,
                               form: TranscriptionRequest) -> AsyncIterator[bytes]:
    """Open the backend stream now (its errors are HTTP errors); return the SSE body to send."""
    body, headers = blob_body(new_request(transcription_parameters(form)), _chunks(file), size)
    response = await backend.open_stream(body, headers)
    return _sse(response, form)


async def _sse(response, form: TranscriptionRequest) -> AsyncIterator[bytes]:
    started = False
    try:
        async for line in response.aiter_lines():
            if not line:
                continue
            item = json.loads(line)
            if item["type"] == "text":
                delta = item["text"] if started else item["text"].lstrip()
                started = started or bool(delta)
                if delta:
                    logprobs = {"logprobs": item["logprobs"]} if "logprobs" in item else {}
                    yield sse.event({"type": "transcript.text.delta", "delta": delta, **logprobs})
            elif item["type"] == "result":
                for event in final_events(item["result"], form):
                    yield event
            else:
                yield sse.error_event(f"ASR backend failed: {item.get('message')}", item.get("kind"))
    finally:
        await response.aclose()


def final_events(result: dict, form: TranscriptionRequest) -> list[bytes]:
    letter_speakers(result, form.known_speaker_names)
    events = []
    if form.response_format == "diarized_json":
        events = [sse.event(seg) for seg in diarized_segments(result)]
    done = {"type": "transcript.text.done", "text": result["text"], "logprobs": _logprobs(result, form)}
    return events + [sse.event({k: v for k, v in done.items() if v is not None})]
