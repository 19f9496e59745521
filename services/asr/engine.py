"""WhisperX work, free of KServe: load models, decode audio, transcribe or translate."""

from __future__ import annotations

import logging
import threading
import zlib
from dataclasses import dataclass, replace

import numpy as np

from services.asr.audio import SAMPLE_RATE, decode
from services.asr.settings import AsrSettings
from services.common.lifecycle import ManagedModel

log = logging.getLogger(__name__)


class UnknownModel(ValueError):
    """The public model id is not configured."""


class UnsupportedOption(ValueError):
    """A request option the engine cannot honour (unknown language, ...)."""


@dataclass(frozen=True)
class TranscribeOptions:
    model: str
    task: str = "transcribe"  # or "translate" (to English)
    language: str | None = None
    prompt: str | None = None
    temperature: float = 0.0


def resolve_device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def supported_languages() -> set[str]:
    from faster_whisper.tokenizer import _LANGUAGE_CODES

    return set(_LANGUAGE_CODES)


class AsrEngine:
    """One ``ManagedModel`` per backend WhisperX model; one decode at a time per model (a lock)."""

    def __init__(self, settings: AsrSettings) -> None:
        self.settings = settings
        self.device = resolve_device(settings.device)
        self.compute_type = settings.compute_type or ("float16" if self.device == "cuda" else "int8")
        self._models: dict[str, ManagedModel] = {}
        self._locks: dict[str, threading.Lock] = {}
        for backend in dict.fromkeys(settings.models.values()):
            self._models[backend] = ManagedModel(f"whisper:{backend}", self._loader(backend),
                                                 settings.unload_policy)
            self._locks[backend] = threading.Lock()

    @property
    def public_models(self) -> list[str]:
        return list(self.settings.models)

    def managed(self, public_id: str) -> ManagedModel:
        try:
            return self._models[self.settings.models[public_id]]
        except KeyError:
            raise UnknownModel(
                f"model '{public_id}' is not served; choose one of {self.public_models}") from None

    def _loader(self, backend: str):
        def load():
            import torch
            import whisperx

            token = self.settings.hf_token.get_secret_value() if self.settings.hf_token else None
            pipe = whisperx.load_model(
                backend, self.device, compute_type=self.compute_type,
                download_root=self.settings.download_root, threads=self.settings.threads,
                vad_method=self.settings.vad_method, use_auth_token=token)
            torch.set_num_threads(self.settings.threads)
            pipe.model.model = NoSpeechRecorder(pipe.model.model)
            return pipe
        return load

    def validate(self, options: TranscribeOptions) -> None:
        """Everything that can be a client error, checked before any model work."""
        self.managed(options.model)
        if options.language is not None and options.language not in supported_languages():
            raise UnsupportedOption(f"language '{options.language}' is not supported; "
                                    "use an ISO-639-1 code such as 'en'")
        if not 0.0 <= options.temperature <= 1.0:
            raise UnsupportedOption("temperature must be between 0 and 1")

    def run(self, audio_bytes: bytes, options: TranscribeOptions) -> dict:
        self.validate(options)
        audio = decode(audio_bytes)
        managed = self.managed(options.model)
        with managed.use() as pipe, self._locks[self.settings.models[options.model]]:
            return self._transcribe(pipe, audio, options)

    def _transcribe(self, pipe, audio: np.ndarray, options: TranscribeOptions) -> dict:
        recorder: NoSpeechRecorder = pipe.model.model
        recorder.probs.clear()
        saved = pipe.options
        pipe.options = replace(saved, initial_prompt=options.prompt,
                               temperatures=[options.temperature])
        try:
            raw = pipe.transcribe(audio, batch_size=self.settings.batch_size,
                                  language=options.language, task=options.task)
        finally:
            pipe.options = saved
        return build_result(raw, audio, options, _tokenizer(pipe, raw["language"], options.task),
                            recorder.probs)


class NoSpeechRecorder:
    """Wraps the CTranslate2 Whisper model so WhisperX's batched decoding also reports each
    segment's no-speech probability (OpenAI's ``no_speech_prob``), in decoding order."""

    def __init__(self, model) -> None:
        self._model = model
        self.probs: list[float] = []

    def __getattr__(self, name: str):
        return getattr(self._model, name)

    def generate(self, *args, **kwargs):
        results = self._model.generate(*args, return_no_speech_prob=True, **kwargs)
        self.probs.extend(float(r.no_speech_prob) for r in results)
        return results


def _tokenizer(pipe, language: str, task: str):
    from faster_whisper.tokenizer import Tokenizer

    return Tokenizer(pipe.model.hf_tokenizer, pipe.model.model.is_multilingual, task=task, language=language)


def compression_ratio(text: str) -> float:
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


def language_name(code: str) -> str:
    from whisperx.utils import LANGUAGES

    return LANGUAGES.get(code, code)


def build_result(raw: dict, audio: np.ndarray, options: TranscribeOptions, tokenizer,
                 no_speech: list[float]) -> dict:
    """WhisperX output -> the one rich result the gateway renders into every response format."""
    segments = []
    for idx, seg in enumerate(raw["segments"]):
        text = seg["text"]
        segments.append({
            "id": idx,
            "seek": int(round(seg["start"] * 100)),  # Whisper's seek is in 10 ms frames
            "start": float(seg["start"]),
            "end": float(seg["end"]),
            "text": text,
            "tokens": tokenizer.encode(text),
            "temperature": options.temperature,
            "avg_logprob": float(seg.get("avg_logprob", 0.0)),
            "compression_ratio": compression_ratio(text),
            "no_speech_prob": no_speech[idx],
        })
    return {
        "task": options.task,
        "language": raw["language"],
        "language_name": language_name(raw["language"]),
        "duration": round(len(audio) / SAMPLE_RATE, 3),
        "text": "".join(s["text"] for s in segments).strip(),
        "segments": segments,
    }
