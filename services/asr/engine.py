"""WhisperX work, free of KServe: models, decoding, alignment, diarization -> one rich result.

Every model (Whisper per backend, an aligner per language, the diarization pipeline) is a
``ManagedModel`` with the configured unload policy, and has its own lock: one decode per model at
a time, while another request may be aligning or diarizing.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from services.asr import alignment, decoding, diarization
from services.asr.audio import SAMPLE_RATE, BadAudio, decode
from services.asr.decoding import OnText
from services.asr.result import assemble
from services.asr.settings import AsrSettings
from services.common.lifecycle import ManagedModel, resolve_device



class UnknownModel(ValueError):
    """The public model id is not configured."""


class UnsupportedOption(ValueError):
    """A request option the engine cannot honour (unknown language, bad speaker bounds, ...)."""


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
    known_speakers: tuple[tuple[str, bytes], ...] = ()  # (name, reference recording) for diarization


def supported_languages() -> set[str]:
    from faster_whisper.tokenizer import _LANGUAGE_CODES

    return set(_LANGUAGE_CODES)


class Locked:
    """A ManagedModel with the lock that serialises its use."""

    def __init__(self, managed: ManagedModel) -> None:
        self.managed, self.lock = managed, threading.Lock()


class AsrEngine:
    def __init__(self, settings: AsrSettings) -> None:
        self.settings = settings
        self.device = resolve_device(settings.device)
        self.compute_type = settings.compute_type or ("float16" if self.device == "cuda" else "int8")
        self.token = settings.hf_token.get_secret_value() if settings.hf_token else None
        self._whisper = {backend: self._managed(f"whisper:{backend}", self._whisper_loader(backend))
                         for backend in dict.fromkeys(settings.models.values())}
        self._aligners: dict[str, Locked] = {}
        self._aligners_lock = threading.Lock()
        self._diarizer = self._managed(f"diarization:{settings.diarization_model}", self._load_diarizer)

    def _managed(self, name: str, loader) -> Locked:
        return Locked(ManagedModel(name, loader, self.settings.unload_policy))

    @property
    def public_models(self) -> list[str]:
        return list(self.settings.models)

    def managed(self, public_id: str) -> ManagedModel:
        return self._whisper_for(public_id).managed

    def _whisper_for(self, public_id: str) -> Locked:
        try:
            return self._whisper[self.settings.models[public_id]]
        except KeyError:
            raise UnknownModel(
                f"model '{public_id}' is not served; choose one of {self.public_models}") from None

    def models_status(self) -> dict:
        out = {f"model:{p}": self.managed(p).status() for p in self.public_models}
        out |= {f"alignment:{lang}": a.managed.status() for lang, a in self._aligners.items()}
        return out | {"diarization": self._diarizer.managed.status()}

    # -- loaders ---------------------------------------------------------------------------
    def _whisper_loader(self, backend: str):
        def load():
            import torch
            import whisperx

            pipe = whisperx.load_model(
                backend, self.device, compute_type=self.compute_type,
                download_root=self.settings.download_root, threads=self.settings.threads,
                vad_method=self.settings.vad_method, use_auth_token=self.token)
            torch.set_num_threads(self.settings.threads)
            decoding.install_hooks(pipe)
            return pipe
        return load

    def _aligner(self, language: str) -> Locked:
        with self._aligners_lock:
            if language not in self._aligners:
                name = self.settings.align_models.get(language)
                loader = lambda: alignment.load_aligner(language, self.device, name, self.settings.align_model_dir)
                self._aligners[language] = self._managed(f"alignment:{name or 'whisperx-default'}:{language}", loader)
            return self._aligners[language]

    def _load_diarizer(self):
        return diarization.load_diarizer(self.settings.diarization_model, self.device, self.token,
                                         self.settings.download_root)

    # -- requests --------------------------------------------------------------------------
    def validate(self, options: TranscribeOptions) -> None:
        """Everything that can be a client error, checked before any model work."""
        self._whisper_for(options.model)
        if options.task not in ("transcribe", "translate"):
            raise UnsupportedOption(f"unknown task '{options.task}'")
        if options.language is not None and options.language not in supported_languages():
            raise UnsupportedOption(f"language '{options.language}' is not supported; "
                                    "use an ISO-639-1 code such as 'en'")
        if options.logprobs and options.word_timestamps and self.settings.word_timestamps == "whisper":
            raise UnsupportedOption("logprobs are not available together with Whisper's own word timestamps "
                                    "(ASR_WORD_TIMESTAMPS=whisper)")
        if not 0.0 <= options.temperature <= 1.0:
            raise UnsupportedOption("temperature must be between 0 and 1")
        lo, hi = options.min_speakers, options.max_speakers
        if (lo is not None and lo < 1) or (hi is not None and hi < 1) or (lo and hi and lo > hi):
            raise UnsupportedOption("speaker bounds must be >= 1 and min_speakers <= max_speakers")
        if options.known_speakers and not options.diarize:
            raise UnsupportedOption("known speakers need diarization")

    def known_speaker_audio(self, options: TranscribeOptions) -> list[tuple[str, np.ndarray]]:
        """Each known speaker's reference decoded; OpenAI asks for 2 to 10 seconds of speech."""
        out = []
        for i, (name, data) in enumerate(options.known_speakers):
            try:
                audio = decode(data)
            except BadAudio as exc:
                raise UnsupportedOption(f"known_speaker_references[{i}] ({name}): {exc}") from exc
            seconds = len(audio) / SAMPLE_RATE
            if not 2.0 <= seconds <= 10.0:
                raise UnsupportedOption(f"known_speaker_references[{i}] ({name}) is {seconds:.1f} s long; "
                                        "references must be 2 to 10 seconds")
            out.append((name, audio))
        return out

    def decode_audio(self, audio_bytes: bytes) -> np.ndarray:
        audio = decode(audio_bytes)
        if float(np.max(np.abs(audio))) < self.settings.silence_threshold:
            raise BadAudio("the audio is silent (no signal above the silence threshold)")
        return audio

    def run(self, audio_bytes: bytes, options: TranscribeOptions, on_text: OnText | None = None,
            cancel: threading.Event | None = None) -> dict:
        self.validate(options)
        audio = self.decode_audio(audio_bytes)
        known = self.known_speaker_audio(options)  # bad references fail before any model work
        language, segments = self._decode(audio, options, on_text, cancel)
        if segments and options.word_timestamps and self.settings.word_timestamps == "alignment":
            aligner = self._aligner(language)
            with aligner.managed.use() as model, aligner.lock:
                alignment.align(model, segments, audio, self.device)
        if segments and options.diarize:
            with self._diarizer.managed.use() as model, self._diarizer.lock:
                diarization.diarize(model, segments, audio, options.min_speakers, options.max_speakers,
                                    known, self.settings.known_speaker_min_similarity)
        return assemble(language, audio, options.task, segments)

    def _decode(self, audio, options, on_text, cancel) -> tuple[str, list[dict]]:
        whisper = self._whisper_for(options.model)
        with whisper.managed.use() as pipe, whisper.lock:
            if options.word_timestamps and self.settings.word_timestamps == "whisper":
                return decoding.sequential(pipe, audio, options, on_text, cancel)
            return decoding.batched(pipe, audio, options, self.settings.batch_size, on_text, cancel)
