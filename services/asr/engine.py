"""WhisperX work, free of KServe: models, decoding, alignment, diarization -> one rich result.

Every model (Whisper per backend, an aligner per language, the diarization pipeline) is a
``ManagedModel`` with the configured unload policy. A Whisper model's calls go through its segment
batcher, shared by the requests decoding at once (or, without cross-request batching, one request
decodes under the model's lock); aligners and the diarization pipeline serve one request at a time.
"""

from __future__ import annotations

import contextlib
import functools
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import numpy as np

from services.asr import alignment, decoding, diarization, text_alignment, text_translation
from services.asr.audio import SAMPLE_RATE, BadAudio, decode
from services.asr.batcher import SegmentBatcher
from services.asr.decoding import OnText, Sampling
from services.asr.job import TranscribeJob, TranscribeOptions, UnknownModel, UnsupportedOption, options_from
from services.asr.live.session import Decoded, LiveConfig
from services.asr.metrics import AsrMetrics
from services.asr.result import assemble
from services.asr.settings import AsrSettings
from services.common import logs
from services.common.device import resolve_device
from services.common.errors import BadRequest
from services.common.lifecycle import ManagedModel
from services.common.work import Cancelled

MAX_KNOWN_SPEAKERS = 4
MAX_ALIGN_CHARS = 4096  # the longest speech input


def _close(model: Any) -> None:
    if isinstance(model, decoding.LoadedWhisper):
        model.close()


@functools.cache
def supported_languages() -> frozenset[str]:
    from faster_whisper.tokenizer import _LANGUAGE_CODES

    return frozenset(_LANGUAGE_CODES)


class AsrEngine:
    def __init__(self, settings: AsrSettings, metrics: AsrMetrics) -> None:
        self.settings, self.metrics = settings, metrics
        self.waiting: Callable[[], int] = lambda: 0  # requests queued for a place (set by the predictor)
        self.device = resolve_device(settings.device)
        self.compute_type = settings.compute_type or ("float16" if self.device == "cuda" else "int8")
        self.token = settings.hf_token.get_secret_value() if settings.hf_token else None
        self._whisper = {
            backend: self._managed(f"whisper:{backend}", self._whisper_loader(backend))
            for backend in dict.fromkeys(settings.models.values())
        }
        self._aligners: OrderedDict[str, ManagedModel] = OrderedDict()  # least recently used first
        self._aligners_lock = threading.Lock()
        self._diarizer = self._managed(f"diarization:{settings.diarization_model}", self._load_diarizer)
        self.translator = text_translation.Translator(
            self._managed(f"translation:{settings.translation_model}", self._load_translator),
            settings.translation_max_new_tokens,
        )

    def _managed(self, name: str, loader: Callable[[], Any]) -> ManagedModel:
        return ManagedModel(
            name,
            loader,
            self.settings.unload_policy,
            observer=self.metrics,
            on_unload=_close,
            keep_while=lambda: self.waiting() > 0,
        )

    @property
    def public_models(self) -> list[str]:
        """``ASR_MODELS``' ids, then the aliases of those (``ASR_MODEL_ALIASES``)."""
        models = self.settings.models
        return [*models, *(alias for alias, target in self.settings.model_aliases.items() if target in models)]

    def _whisper_for(self, public_id: str) -> ManagedModel:
        models = self.settings.models
        target = public_id if public_id in models else self.settings.model_aliases.get(public_id, public_id)
        try:
            return self._whisper[models[target]]
        except KeyError:
            raise UnknownModel(public_id, self.public_models) from None

    def models_status(self) -> dict:
        out = {f"model:{p}": self._whisper_for(p).status() for p in self.settings.models}
        with self._aligners_lock:
            aligners = list(self._aligners.items())
        out |= {f"alignment:{lang}": a.status() for lang, a in aligners}
        return out | {"diarization": self._diarizer.status(), "translation": self.translator.model.status()}

    # -- loaders ---------------------------------------------------------------------------
    def _whisper_loader(self, backend: str) -> Callable[[], decoding.LoadedWhisper]:
        def load() -> decoding.LoadedWhisper:
            import torch
            import whisperx

            logs.adopt("whisperx")
            pipe = whisperx.load_model(
                backend,
                self.device,
                compute_type=self.compute_type,
                download_root=self.settings.download_root,
                threads=self.settings.threads,
                vad_method=self.settings.vad_method,
                vad_options={"vad_onset": decoding.VAD_ONSET, "vad_offset": decoding.VAD_OFFSET},
                use_auth_token=self.token,
            )
            torch.set_num_threads(self.settings.threads)
            decoding.seed_sampling()
            batcher = SegmentBatcher(
                pipe.model.encode,
                pipe.model.model.generate,
                batch_size=self.settings.batch_size,
                max_wait=self.settings.batch_wait_ms / 1000,
                share=self.settings.batch_share,
                on_dispatch=self.metrics.dispatched,
            )
            return decoding.LoadedWhisper(pipe, batcher)

        return load

    def _aligner(self, language: str) -> ManagedModel:
        """The language's aligner, most recently used; beyond ``max_aligners`` the least recently
        used idle ones are dropped (unloaded)."""
        with self._aligners_lock:
            if language not in self._aligners:
                name = self.settings.align_models.get(language)

                def loader() -> tuple[Any, Any]:
                    return alignment.load_aligner(language, self.device, name, self.settings.align_model_dir)

                self._aligners[language] = self._managed(f"alignment:{name or 'whisperx-default'}:{language}", loader)
            self._aligners.move_to_end(language)
            for lang in list(self._aligners)[:-1]:
                if len(self._aligners) <= self.settings.max_aligners:
                    break
                if self._aligners[lang].unload():  # refused while a request uses it
                    del self._aligners[lang]
            return self._aligners[language]

    def _load_diarizer(self) -> Any:
        return diarization.load_diarizer(
            self.settings.diarization_model, self.device, self.token, self.settings.download_root
        )

    def _load_translator(self) -> text_translation.LoadedTranslator:
        return text_translation.load(
            self.settings.translation_model,
            cache_dir=self.settings.translation_model_dir,
            token=self.token,
            device=self.device,
        )

    # -- requests --------------------------------------------------------------------------
    def job(self, params: dict[str, Any], audio: memoryview, references: list[memoryview]) -> TranscribeJob:
        """The request checked once, before any model work: everything here is a client error."""
        options = options_from(params)
        self._whisper_for(options.model)
        if options.task not in ("transcribe", "translate", "align"):
            raise UnsupportedOption(f"unknown task '{options.task[:32]}'", param="task")
        if options.task == "align":
            self._check_alignable(options)
        if options.language is not None and options.language not in supported_languages():
            raise UnsupportedOption(
                f"language '{options.language[:32]}' is not supported; use an ISO-639-1 code such as 'en'",
                param="language",
            )
        if options.logprobs and options.word_timestamps and self.settings.word_timestamps == "whisper":
            raise UnsupportedOption(
                "logprobs are not available together with Whisper's own word timestamps (ASR_WORD_TIMESTAMPS=whisper)",
                param="include[]",
            )
        if not 0.0 <= options.temperature <= 1.0:
            raise UnsupportedOption("temperature must be between 0 and 1", param="temperature")
        lo, hi = options.min_speakers, options.max_speakers
        if (lo is not None and lo < 1) or (hi is not None and hi < 1) or (lo and hi and lo > hi):
            raise UnsupportedOption(
                "speaker bounds must be >= 1 and min_speakers <= max_speakers", param="min_speakers"
            )
        if len(references) != len(options.known_speaker_names) or len(references) > MAX_KNOWN_SPEAKERS:
            raise UnsupportedOption(
                "known_speaker_names[] and known_speaker_references[] must pair up "
                f"one to one, at most {MAX_KNOWN_SPEAKERS}",
                param="known_speaker_references[]",
            )
        if references and not options.diarize:
            raise UnsupportedOption("known speakers need diarization", param="known_speaker_names[]")
        return TranscribeJob(options, audio, tuple(references))

    def _check_alignable(self, options: TranscribeOptions) -> None:
        """Word timings of a known text: a text, a language, and an aligner that serves the language."""
        if not options.text or not options.text.strip() or len(options.text) > MAX_ALIGN_CHARS:
            raise UnsupportedOption(f"align needs 'text': 1 to {MAX_ALIGN_CHARS} characters", param="text")
        if options.language is None or options.language not in supported_languages():
            raise UnsupportedOption("align needs the text's 'language' (an ISO-639-1 code)", param="language")
        if self.settings.word_timestamps == "alignment" and not alignment.serves(
            options.language, self.settings.align_models
        ):
            raise UnsupportedOption(
                f"no alignment model serves language '{options.language}' (set one in ASR_ALIGN_MODELS)",
                param="language",
            )

    def align_text(self, audio: np.ndarray, options: TranscribeOptions, cancel: threading.Event | None) -> dict:
        """The times of the words of ``options.text`` in the audio (``services.asr.text_alignment``)."""
        text, language = str(options.text), str(options.language)
        duration = round(audio.size / SAMPLE_RATE, 3)
        if self.settings.word_timestamps == "whisper":
            if duration > text_alignment.WINDOW_SECONDS:
                raise UnsupportedOption(
                    f"Whisper aligns at most {text_alignment.WINDOW_SECONDS:.0f} s of audio; this is {duration} s",
                    param="audio",
                )
            with self._stage("align", cancel), self._whisper_for(options.model).exclusive() as loaded:
                words = text_alignment.by_whisper(loaded, text, audio, language)
        else:
            with self._stage("align", cancel), self._aligner(language).exclusive() as model:
                words = text_alignment.by_aligner(model, text, audio, self.device)
        return {"task": "align", "language": language, "duration": duration, "words": words}

    @contextlib.contextmanager
    def _stage(self, name: str, cancel: threading.Event | None) -> Iterator[None]:
        if cancel is not None and cancel.is_set():
            raise Cancelled("client disconnected")
        with self.metrics.stage.labels(name).time():
            yield

    def _known_speakers(self, job: TranscribeJob, cancel: threading.Event | None) -> list[tuple[str, np.ndarray]]:
        """Each known speaker's reference decoded; OpenAI asks for 2 to 10 seconds of speech."""
        out = []
        for i, (name, data) in enumerate(zip(job.options.known_speaker_names, job.references, strict=False)):
            try:
                audio = decode(data, 60.0, param="known_speaker_references[]", cancel=cancel)
            except BadRequest as exc:
                exc.message = f"known_speaker_references[{i}] ({name[:32]}): {exc.message}"
                raise
            seconds = len(audio) / SAMPLE_RATE
            if not 2.0 <= seconds <= 10.0:
                raise UnsupportedOption(
                    f"known_speaker_references[{i}] ({name[:32]}) is {seconds:.1f} s long; "
                    "references must be 2 to 10 seconds",
                    param="known_speaker_references[]",
                )
            out.append((name, audio))
        return out

    def decode_audio(
        self, data: memoryview, cancel: threading.Event | None = None, *, silent_ok: bool = False
    ) -> np.ndarray:
        """The upload as 16 kHz float32; silence is a 400 (nothing to transcribe) unless ``silent_ok``."""
        audio = decode(data, self.settings.max_audio_seconds, cancel=cancel)
        if not silent_ok and float(np.max(np.abs(audio))) < self.settings.silence_threshold:
            raise BadAudio("the audio is silent (no signal above the silence threshold)")
        return audio

    def sampling(self, job: TranscribeJob, pipe: Any) -> Sampling:
        o = pipe.options
        return Sampling(
            job.options.temperature,
            self.settings.temperature_fallback,
            job.options.logprobs,
            o.compression_ratio_threshold or 2.4,
            o.log_prob_threshold or -1.0,
            o.no_speech_threshold or 0.6,
            self.metrics.redecoded,
        )

    def run(self, job: TranscribeJob, on_text: OnText | None = None, cancel: threading.Event | None = None) -> dict:
        started = time.perf_counter()
        options = job.options
        with self._stage("audio_decode", cancel):
            audio = self.decode_audio(job.audio, cancel, silent_ok=options.task == "align")
            known = self._known_speakers(job, cancel)  # bad references fail before any model work
        if options.task == "align":
            result = self.align_text(audio, options, cancel)
            self.metrics.work_done(result["duration"], time.perf_counter() - started)
            return result
        with self._stage("transcribe", cancel):
            language, segments = self._decode(audio, job, on_text, cancel)
        if segments and options.word_timestamps and self.settings.word_timestamps == "alignment":
            with self._stage("align", cancel), self._aligner(language).exclusive() as model:
                alignment.align(model, segments, audio, self.device, cancel)
        if segments and options.diarize:
            with self._stage("diarize", cancel), self._diarizer.exclusive() as model:
                diarization.diarize(
                    model,
                    segments,
                    audio,
                    min_speakers=options.min_speakers,
                    max_speakers=options.max_speakers,
                    known=known,
                    min_similarity=self.settings.known_speaker_min_similarity,
                    cancel=cancel,
                )
        result = assemble(language, audio, options.task, segments)
        self.metrics.work_done(result["duration"], time.perf_counter() - started)
        return result

    def live(
        self,
        audio: np.ndarray,
        config: LiveConfig,
        *,
        final: bool,
        language: str | None,
        cancel: threading.Event,
        task: str = "transcribe",
    ) -> Decoded:
        """One decode of a live session's turn (``services.asr.live``): the usual decoding (beam search) for
        partial text too, so the words two partial decodes agree on are what the final decode would say;
        the temperature fallback and logprobs only for the final one."""
        options = TranscribeOptions(
            model=config.model,
            task=task,
            language=language or config.language,
            prompt=config.prompt,
            logprobs=config.logprobs and final,
        )
        whisper = self._whisper_for(config.model)
        hold = whisper.use if self.settings.cross_request_batching else whisper.exclusive
        with hold() as loaded:
            sampling = self.sampling(TranscribeJob(options, memoryview(b"")), loaded.pipe)
            if not final:
                sampling = replace(sampling, fallback=False)
            text, detected, logprobs = decoding.decode_live(loaded, audio, options, sampling=sampling, cancel=cancel)
        self.metrics.live_decoded("final" if final else "partial", audio.size / SAMPLE_RATE)
        return Decoded(text, detected, logprobs)

    def _decode(
        self, audio: np.ndarray, job: TranscribeJob, on_text: OnText | None, cancel: threading.Event | None
    ) -> tuple[str, list[dict]]:
        whisper = self._whisper_for(job.options.model)
        if job.options.word_timestamps and self.settings.word_timestamps == "whisper":
            with whisper.exclusive() as loaded:
                sampling = self.sampling(job, loaded.pipe)
                return decoding.sequential(
                    loaded, audio, job.options, sampling=sampling, on_text=on_text, cancel=cancel
                )
        # with cross-request batching the batcher shares the model's calls; without it, the model's
        # lock makes the same path decode one request at a time
        hold = whisper.use if self.settings.cross_request_batching else whisper.exclusive
        with hold() as loaded:
            return decoding.transcribe(
                loaded,
                audio,
                job.options,
                sampling=self.sampling(job, loaded.pipe),
                window=self.settings.batch_size,
                on_text=on_text,
                cancel=cancel,
            )
