"""Coqui TTS work, free of KServe: load the configured model, pick a voice, synthesise PCM piece by
piece (a sentence, or a part of one that fits the model), whole or as it is made."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from services.common.device import resolve_device
from services.common.errors import BadRequest, PayloadTooLarge, echo
from services.common.lifecycle import ManagedModel
from services.common.owner import OWNER
from services.common.predictor_metrics import PredictorMetrics
from services.common.work import Cancelled
from services.tts import samples
from services.tts import text as texts
from services.tts.consents import Consent, check_fields
from services.tts.settings import TtsSettings
from services.tts.speaker_voice import SpeakerVoices, reference_speech
from services.tts.tempo import change_speed
from services.tts.voice_library import VoiceLibrary, VoiceUpload, condition
from services.tts.voice_store import ID_PREFIX, StoredVoice
from services.tts.voices import VoiceChoice, choose_voice

log = logging.getLogger(__name__)

MAX_INPUT_CHARS = 4096


class BadSpeechRequest(BadRequest):
    """The request cannot be synthesised as asked (empty text, speed out of range, ...)."""

    def __init__(self, message: str, param: str = "input", code: str = "invalid_value") -> None:
        super().__init__(message, param=param, code=code)


@dataclass(frozen=True)
class SpeechJob:
    text: str
    voice: str | None = None
    speed: float = 1.0
    language: str | None = None
    clone: StoredVoice | None = None  # a voice uploaded through the API
    reference: np.ndarray | None = None  # a live speaker's speech (``services.tts.speaker_voice``)


@dataclass(frozen=True)
class ModelFacts:
    """What the voice routes need to know about the configured model. ``clones`` (XTTS) and its
    languages are read from a local model directory's config without loading; the rest, and
    everything for a hub model, once the model has loaded."""

    clones: bool | None = None
    languages: list[str] | None = None
    fallback: str | None = None  # the voice an unknown name falls back to
    loaded: bool = False

    @classmethod
    def from_config(cls, model_dir: Path) -> ModelFacts:
        try:
            config = json.loads((model_dir / "config.json").read_text())
        except (OSError, ValueError):
            return cls()
        return cls(config.get("model") == "xtts", config.get("languages") or None)


@dataclass
class Audio:
    samples: np.ndarray  # mono float32 in [-1, 1]
    sample_rate: int
    language: str = ""  # what the piece was spoken as (word timings align in it)


@dataclass(frozen=True)
class Piece:
    text: str
    language: str


def coqui_cache_dir() -> Path:
    from trainer.io import get_user_data_dir

    return Path(get_user_data_dir("tts"))


class TtsEngine:
    def __init__(self, settings: TtsSettings, metrics: PredictorMetrics) -> None:
        self.settings, self.metrics = settings, metrics
        self.device = resolve_device(settings.device)
        self.waiting: Callable[[], int] = lambda: 0  # requests queued for a place (set by the predictor)
        self.coqui = ManagedModel(
            f"coqui:{settings.model}",
            self._load,
            settings.unload_policy,
            observer=metrics,
            keep_while=lambda: self.waiting() > 0,
        )
        self.voices = VoiceLibrary(settings, settings.voice_store or coqui_cache_dir() / "voice-store")
        self.speakers = SpeakerVoices(settings.speaker_latents_cached)
        self.streams_cancelled = 0
        self.facts = ModelFacts.from_config(Path(settings.model))  # completed by the first load

    @property
    def public_models(self) -> list[str]:
        return list(self.settings.public_models)

    @property
    def default_reference(self) -> Path:
        return self.settings.default_speaker_wav or coqui_cache_dir() / "default-speaker.flac"

    @property
    def voice_dir(self) -> Path:
        return self.settings.voice_dir or coqui_cache_dir() / "voices"

    def _load(self) -> Any:
        import torch
        from TTS.api import TTS

        torch.set_num_threads(self.settings.threads)
        allow_trusted_xtts_classes()
        source = Path(self.settings.model)
        if source.is_dir():
            tts = TTS(
                model_path=str(_checkpoint_path(source)), config_path=str(source / "config.json"), progress_bar=False
            )
        else:
            tts = TTS(self.settings.model, progress_bar=False)
        tts.to(self.device)
        if _clones(tts):
            self._ensure_default_reference()
        self.voices.builtin = list(tts.speakers or [])
        fallback = self.voice_for(tts, None)
        model = tts.synthesizer.tts_model
        self.facts = ModelFacts(
            _clones(tts),
            list(getattr(model.config, "languages", None) or [self.settings.language]),
            "default reference" if fallback.speaker_wav else fallback.speaker,
            loaded=True,
        )
        return tts

    def _ensure_default_reference(self) -> None:
        """Fetch the default XTTS reference once into the cache; offline, a configured file is used."""
        path, url = self.default_reference, self.settings.default_speaker_url
        if path.exists() or not url:
            return
        try:
            with httpx.stream("GET", url, follow_redirects=True, timeout=30) as resp:
                resp.raise_for_status()
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(resp.read())
            log.info("fetched the default speaker reference into %s", path)
        except (httpx.HTTPError, OSError) as exc:
            log.warning("no default speaker reference (%s): falling back to built-in speakers", exc)

    # -- requests --------------------------------------------------------------------------
    def job(self, params: dict[str, Any], text: str, reference: bytes | memoryview | None = None) -> SpeechJob:
        """The request checked once, before any model work. ``reference``: a recording of the speaker
        whose voice speaks it (instead of ``voice``)."""
        model = params.get("model")
        if model is not None and model not in self.settings.public_models:
            raise BadSpeechRequest(
                f"The model '{echo(model)}' does not exist or is not a speech model; use one of {self.public_models}",
                param="model",
                code="model_not_found",
            )
        if len(text) > MAX_INPUT_CHARS:
            raise BadSpeechRequest(f"input is longer than {MAX_INPUT_CHARS} characters")
        cleaned = texts.clean(text)
        if not cleaned:
            raise BadSpeechRequest("input must contain text")
        try:
            speed = float(params.get("speed", 1.0))
        except (TypeError, ValueError):
            raise BadSpeechRequest("speed must be a number", param="speed") from None
        if not 0.25 <= speed <= 4.0:
            raise BadSpeechRequest("speed must be between 0.25 and 4.0", param="speed")
        voice, language = params.get("voice"), params.get("language")
        voice = str(voice) if voice else None
        if reference is not None:
            if self.facts.clones is False:
                raise self._cannot_clone("reference")
            speech = reference_speech(reference)
            return SpeechJob(cleaned, None, speed, str(language) if language else None, None, speech)
        clone = self.voices.clone_for(voice, OWNER.get())
        return SpeechJob(cleaned, voice, speed, str(language) if language else None, clone)

    # -- voices ----------------------------------------------------------------------------------
    def learned(self) -> ModelFacts:
        """What only a load tells (built-in speakers, languages, the fallback voice): loads the model
        once, without taking its lock (synthesis goes on)."""
        if not self.facts.loaded:
            with self.coqui.use():
                pass
        return self.facts

    def list_voices(self) -> list[dict]:
        """Every voice a request can name (the model is loaded once, to learn its speakers)."""
        facts = self.learned()
        return self.voices.listing(facts.clones is True, facts.fallback, OWNER.get())

    def create_voice(self, upload: VoiceUpload, cancel: threading.Event | None = None) -> StoredVoice:
        """Check the upload, then store it with its conditioning latents, computed once here. Every
        400 and 409 is decided before the model's lock is taken (synthesis is not held up by a bad
        or duplicate upload), and a bad sample never loads the model."""
        if self.facts.clones is False:
            raise self._cannot_clone()
        speech = samples.prepare(
            upload.sample, self.settings.min_sample_seconds, self.settings.max_sample_seconds, cancel
        )
        facts = self.learned()
        if not facts.clones:
            raise self._cannot_clone()
        self.voices.check_new(upload, facts.languages)

        def condition_with_model(sample: Path, latents: Path) -> None:
            with self.coqui.exclusive() as tts:
                condition(tts.synthesizer.tts_model, sample, latents)

        return self.voices.create(upload, speech, condition_with_model)

    def delete_voice(self, voice_id: str) -> StoredVoice:
        """Only uploaded voices can go; the server's own names are a 403 (built-in speakers are known
        once the model has loaded, so a name that is not an upload's id waits for that)."""
        if not voice_id.startswith(ID_PREFIX):
            self.learned()
        return self.voices.delete(voice_id, OWNER.get())

    def create_consent(self, params: dict[str, Any], recording: memoryview, cancel: threading.Event | None) -> Consent:
        """A consent recording: its fields checked, then the audio (some speech, at most a minute)."""
        name, language = check_fields(params.get("name"), params.get("language"))
        if len(recording) > self.settings.max_sample_bytes:
            raise PayloadTooLarge(f"recording is larger than {self.settings.max_sample_bytes} bytes",
                                  param="recording", code="file_too_large")  # fmt: skip
        speech = samples.prepare(recording, 1.0, 60.0, cancel, param="recording")
        return self.voices.consents.create(name, language, speech, samples.RATE, OWNER.get() or None)

    def _cannot_clone(self, param: str = "audio_sample") -> BadRequest:
        return BadRequest(
            f"the speech model '{echo(self.settings.model)}' cannot clone voices (XTTS can)",
            param=param,
            code="voice_cloning_unsupported",
        )

    def voice_for(self, tts: Any, voice: str | None) -> VoiceChoice:
        return choose_voice(voice, list(tts.speakers or []), self.settings.voices, self.default_reference, _clones(tts))

    def synthesize(self, job: SpeechJob, cancel: threading.Event | None = None) -> Audio:
        """The whole utterance, made piece by piece."""
        chunks = list(self._pieces_audio(job, cancel, streaming=False))
        rate = chunks[0].sample_rate if chunks else 24000
        samples = np.concatenate([c.samples for c in chunks]) if chunks else np.zeros(0, np.float32)
        return Audio(samples, rate, chunks[0].language if chunks else self.language_of(job))

    def stream(self, job: SpeechJob, cancel: threading.Event | None = None) -> Iterator[Audio]:
        """Audio as it is made: XTTS's own streaming inference per piece, otherwise piece by piece.
        The model is held (it cannot unload) until the generator ends; ``cancel`` stops it between
        chunks, so a client that leaves does not leave GPU work behind."""
        try:
            yield from self._pieces_audio(job, cancel, streaming=True)
        except Cancelled:
            self.streams_cancelled += 1
            log.info("stream cancelled: the client disconnected")
            raise

    def _pieces_audio(self, job: SpeechJob, cancel: threading.Event | None, streaming: bool) -> Iterator[Audio]:
        started, produced = time.perf_counter(), 0.0
        with self.coqui.exclusive() as tts:
            if job.reference is not None and not _clones(tts):
                raise self._cannot_clone("reference")
            if job.clone is not None and not _clones(tts):
                raise BadSpeechRequest(
                    f"the speech model '{echo(self.settings.model)}' cannot use uploaded voices",
                    param="voice",
                    code="voice_cloning_unsupported",
                )
            pieces = self.plan(tts, job)  # every 400 is decided here, before the first audio
            make = self._xtts_audio if _clones(tts) else self._coqui_audio
            with self.metrics.stage.labels("synthesize").time():
                for chunk in make(tts, pieces, job, streaming):
                    if cancel is not None and cancel.is_set():
                        raise Cancelled("client disconnected")
                    produced += chunk.samples.size / chunk.sample_rate
                    yield chunk if chunk.language else replace(chunk, language=self.language_of(job))
        self.metrics.work_done(produced, time.perf_counter() - started)

    def language_of(self, job: SpeechJob) -> str:
        """The language the request is spoken in: asked for, the cloned voice's, or the configured one."""
        return job.language or (job.clone and job.clone.language) or self.settings.language

    def plan(self, tts: Any, job: SpeechJob) -> list[Piece]:
        """The pieces to synthesise, each within what the model takes; 400 when nothing is speakable."""
        default = self.language_of(job)
        segmenters = getattr(tts.synthesizer, "segmenter", None) or {}
        # pySBD's rules of the request's language (Coqui's default is the model's first language)
        sentences = tts.synthesizer.split_into_sentences(job.text, default if default in segmenters else None)
        if _clones(tts):
            model = tts.synthesizer.tts_model
            languages = list(getattr(model.config, "languages", None) or [default])
            default = _spoken_as(default, languages)
            pieces = []
            for sentence in sentences:
                language = texts.script_language(sentence, default, languages)
                pieces += [
                    Piece(p, language)
                    for p in texts.split_to_fit([sentence], _xtts_fits(model, language))
                    if _xtts_fits(model, language)(p)
                ]
        else:
            language = default if tts.is_multi_lingual else ""
            limit = self.settings.max_piece_chars
            pieces = [
                Piece(p, language)
                for p in texts.split_to_fit(sentences, lambda p: len(p) <= limit)
                if _speakable(tts, p)
            ]
        if not pieces:
            raise BadSpeechRequest(
                f"the model cannot speak this input{_unknown_characters(tts, job.text)}", code="unsupported_characters"
            )
        return pieces

    def _coqui_audio(self, tts: Any, pieces: list[Piece], job: SpeechJob, streaming: bool) -> Iterator[Audio]:
        rate = int(tts.synthesizer.output_sample_rate)
        speaker = self.voice_for(tts, job.voice).speaker  # a built-in speaker: these models do not clone
        kwargs = {"speaker": speaker} if speaker else {}
        for piece in pieces:
            extra = {"language": piece.language} if tts.is_multi_lingual else {}
            samples = np.asarray(tts.tts(piece.text, split_sentences=False, **kwargs, **extra), dtype=np.float32)
            yield Audio(change_speed(samples, rate, job.speed), rate, piece.language)

    def _xtts_audio(self, tts: Any, pieces: list[Piece], job: SpeechJob, streaming: bool) -> Iterator[Audio]:
        model = tts.synthesizer.tts_model
        if job.reference is not None:
            latent, embedding = self.speakers.latents(model, job.reference)
        elif job.clone is not None:
            latent, embedding = self.voices.latents(model, job.clone)
        else:
            latent, embedding = self._xtts_voice(model, self.voice_for(tts, job.voice))
        rate = int(tts.synthesizer.output_sample_rate)
        cfg = model.config
        sampling = {
            k: getattr(cfg, k)
            for k in ("temperature", "length_penalty", "repetition_penalty", "top_k", "top_p")
            if getattr(cfg, k, None) is not None
        }
        for piece in pieces:
            if streaming:
                for chunk in model.inference_stream(
                    piece.text,
                    piece.language,
                    latent,
                    embedding,
                    stream_chunk_size=self.settings.stream_chunk_size,
                    speed=job.speed,
                    enable_text_splitting=False,
                    **sampling,
                ):
                    yield Audio(chunk.detach().cpu().numpy().astype(np.float32).reshape(-1), rate, piece.language)
            else:
                out = model.inference(
                    piece.text,
                    piece.language,
                    latent,
                    embedding,
                    speed=job.speed,
                    enable_text_splitting=False,
                    **sampling,
                )
                yield Audio(np.asarray(out["wav"], dtype=np.float32).reshape(-1), rate, piece.language)

    def _xtts_voice(self, model: Any, choice: VoiceChoice) -> tuple[Any, Any]:
        """Conditioning latents: a built-in speaker's, or a reference's (cached in ``voice_dir``)."""
        speakers = getattr(model.speaker_manager, "speakers", None) or {}
        if choice.speaker_wav is None and choice.speaker in speakers:
            return tuple(speakers[choice.speaker].values())
        if choice.speaker_wav is None:
            raise BadSpeechRequest("this XTTS model has no built-in speakers and no default reference", param="voice")
        self.voice_dir.mkdir(parents=True, exist_ok=True)
        cached = (self.voice_dir / f"{choice.speaker}.pth").exists()
        cfg = model.config
        voice = model.clone_voice(
            None if cached else str(choice.speaker_wav),
            choice.speaker,
            str(self.voice_dir),
            gpt_cond_len=cfg.gpt_cond_len,
            gpt_cond_chunk_len=cfg.gpt_cond_chunk_len,
            max_ref_length=cfg.max_ref_len,
            sound_norm_refs=cfg.sound_norm_refs,
        )
        return voice["gpt_conditioning_latents"], voice["speaker_embedding"]


def _spoken_as(language: str, languages: list[str]) -> str:
    """XTTS's name for ``language`` (``zh`` is its ``zh-cn``); a 400 when it cannot speak it."""
    if language in languages:
        return language
    named = [known for known in languages if known.split("-")[0] == language]
    if not named:
        raise BadSpeechRequest(
            f"the speech model cannot speak '{echo(language)}'; it speaks {', '.join(languages)}",
            param="language",
            code="unsupported_language",
        )
    return named[0]


def _xtts_fits(model: Any, language: str) -> Callable[[str], bool]:
    """XTTS takes a piece within its per-language character budget and under its text-token limit."""
    tokenizer = model.tokenizer
    char_limit = getattr(tokenizer, "char_limits", {}).get(language.split("-", maxsplit=1)[0], 250)
    token_limit = int(model.args.gpt_max_text_tokens) - 2

    def fits(piece: str) -> bool:
        if len(piece) > char_limit:
            return False
        try:
            return len(tokenizer.encode(piece, language)) < token_limit
        except Exception:  # noqa: BLE001 - a number too long to spell out, a missing language package
            return False

    return fits


def _special_ids(tokenizer: Any) -> set[int]:
    chars = tokenizer.characters
    names = (
        getattr(chars, "pad", None),
        getattr(chars, "blank", None),
        getattr(chars, "bos", None),
        getattr(chars, "eos", None),
    )
    return {chars.char_to_id(n) for n in names if n and n in chars.vocab}


def _speakable(tts: Any, piece: str) -> bool:
    """Whether the model's tokenizer keeps any of the piece's characters (an empty sequence crashes
    Coqui's models). Models without a tokenizer of this kind are trusted."""
    tokenizer = getattr(tts.synthesizer.tts_model, "tokenizer", None)
    if tokenizer is None or not hasattr(tokenizer, "text_to_ids"):
        return True
    ids = tokenizer.text_to_ids(piece)
    return any(i not in _special_ids(tokenizer) for i in ids)


def _unknown_characters(tts: Any, text: str) -> str:
    tokenizer = getattr(tts.synthesizer.tts_model, "tokenizer", None)
    vocab = set(getattr(getattr(tokenizer, "characters", None), "vocab", None) or [])
    if not vocab or getattr(tokenizer, "use_phonemes", False):
        return ""
    unknown = list(dict.fromkeys(c for c in text if not c.isspace() and c not in vocab and c.lower() not in vocab))
    shown = ", ".join(f"'{c}' (U+{ord(c):04X})" for c in unknown[:10])
    return f": it has none of the characters used ({shown}{', ...' if len(unknown) > 10 else ''})" if shown else ""


def allow_trusted_xtts_classes() -> None:
    """PyTorch >= 2.6 loads checkpoints with ``weights_only=True``. Released XTTS v2 checkpoints pickle
    their config objects; allowlisting exactly those trusted Coqui classes lets them load as they are.
    (Without it coqui-tts retries and rewrites ``model.pth`` in place, which fails on a read-only
    model volume.) The check itself stays on for everything else."""
    import torch
    from TTS.config.shared_configs import BaseDatasetConfig
    from TTS.tts.configs.xtts_config import XttsConfig
    from TTS.tts.models.xtts import XttsArgs, XttsAudioConfig

    torch.serialization.add_safe_globals([XttsConfig, XttsAudioConfig, XttsArgs, BaseDatasetConfig])


def _checkpoint_path(model_dir: Path) -> Path:
    """Coqui loads XTTS from its directory and every other model from its checkpoint file."""
    config = json.loads((model_dir / "config.json").read_text())
    return model_dir if config.get("model") == "xtts" else model_dir / "model.pth"


def _clones(tts: Any) -> bool:
    """XTTS conditions on a reference recording (and takes ``speed`` natively)."""
    return getattr(tts.synthesizer.tts_config, "model", "") == "xtts"
