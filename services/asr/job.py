"""One transcription request as the ASR engine takes it: typed options plus the audio and the
known-speaker references, still compressed, as slices of the request body."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from services.common.errors import BadRequest, echo


class UnknownModel(BadRequest):
    """The public model id is not configured."""

    def __init__(self, model: str, served: list[str]) -> None:
        super().__init__(
            f"The model '{echo(model)}' does not exist or is not a transcription model; use one of {served}",
            param="model",
            code="model_not_found",
        )


class UnsupportedOption(BadRequest):
    """A request option the engine cannot honour (unknown language, bad speaker bounds, ...)."""

    def __init__(self, message: str, param: str) -> None:
        super().__init__(message, param=param, code="invalid_value")


@dataclass(frozen=True)
class TranscribeOptions:
    model: str
    task: str = "transcribe"  # or "translate" (to English)
    language: str | None = None
    prompt: str | None = None
    temperature: float = 0.0
    word_timestamps: bool = False
    diarize: bool = False
    min_speakers: int | None = None
    max_speakers: int | None = None
    logprobs: bool = False  # each token's log-probability (greedy decoding)
    known_speaker_names: tuple[str, ...] = ()  # paired one to one with the job's references
    greedy: bool = False  # beam size 1 (a live session's partial decodes)
    text: str | None = None  # task "align": the text whose words are timed in the audio


@dataclass(frozen=True)
class TranscribeJob:
    options: TranscribeOptions
    audio: memoryview
    references: tuple[memoryview, ...] = ()


def _typed(params: dict[str, Any], name: str, kind: type, default: Any = None) -> Any:
    value = params.get(name, default)
    if value is None or value == "":
        return default
    if (kind is bool and isinstance(value, bool)) or (
        kind is not bool and isinstance(value, kind) and not isinstance(value, bool)
    ):
        return value
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    raise UnsupportedOption(f"parameter '{name}' must be a {kind.__name__}", param=name)


# Whisper reads at most the last 223 tokens of a prompt (half its 448-token context); 2000 characters
# hold more than that in any script, so keeping only them changes no decode and bounds the cost of
# tokenising a prompt (a 100 KB prompt cost 6.6 times the decode itself).
PROMPT_CHARS = 2000


def options_from(params: dict[str, Any]) -> TranscribeOptions:
    """The v2 request's parameters, typed (the gateway has already checked the OpenAI contract)."""
    names = params.get("known_speaker_names") or []
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise UnsupportedOption("known_speaker_names must be a list of strings", param="known_speaker_names[]")
    return TranscribeOptions(
        model=_typed(params, "model", str, ""),
        task=_typed(params, "task", str, "transcribe"),
        language=_typed(params, "language", str),
        prompt=_last(_typed(params, "prompt", str), PROMPT_CHARS),
        temperature=_typed(params, "temperature", float, 0.0),
        word_timestamps=_typed(params, "word_timestamps", bool, False),
        diarize=_typed(params, "diarize", bool, False),
        min_speakers=_typed(params, "min_speakers", int),
        max_speakers=_typed(params, "max_speakers", int),
        logprobs=_typed(params, "logprobs", bool, False),
        known_speaker_names=tuple(names),
        text=_typed(params, "text", str),
    )


def _last(text: str | None, limit: int) -> str | None:
    return text if text is None or len(text) <= limit else text[-limit:]
