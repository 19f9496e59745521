"""Coqui TTS work, free of KServe: load the configured model, pick a voice, synthesise PCM."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np

from services.common.lifecycle import ManagedModel, resolve_device
from services.tts.settings import TtsSettings
from services.tts.tempo import change_speed
from services.tts.voices import VoiceChoice, choose_voice

log = logging.getLogger(__name__)

MAX_INPUT_CHARS = 4096


class BadSpeechRequest(ValueError):
    """The request cannot be synthesised as asked (empty text, speed out of range, ...)."""


@dataclass(frozen=True)
class SpeechOptions:
    text: str
    voice: str | None = None
    speed: float = 1.0
    language: str | None = None


@dataclass
class Audio:
    samples: np.ndarray  # mono float32 in [-1, 1]
    sample_rate: int


def coqui_cache_dir() -> Path:
    from trainer.io import get_user_data_dir

    return Path(get_user_data_dir("tts"))


class TtsEngine:
    def __init__(self, settings: TtsSettings) -> None:
        self.settings = settings
        self.device = resolve_device(settings.device)
        self.model = ManagedModel(f"coqui:{settings.model}", self._load, settings.unload_policy)
        self._lock = threading.Lock()  # one synthesis at a time per loaded model
        self.streams_cancelled = 0

    @property
    def default_reference(self) -> Path:
        return self.settings.default_speaker_wav or coqui_cache_dir() / "default-speaker.flac"

    @property
    def voice_dir(self) -> Path:
        return self.settings.voice_dir or coqui_cache_dir() / "voices"

    def _load(self):
        import torch
        from TTS.api import TTS

        torch.set_num_threads(self.settings.threads)
        allow_trusted_xtts_classes()
        source = Path(self.settings.model)
        if source.is_dir():
            tts = TTS(model_path=str(_checkpoint_path(source)), config_path=str(source / "config.json"),
                      progress_bar=False)
        else:
            tts = TTS(self.settings.model, progress_bar=False)
        tts.to(self.device)
        if _clones(tts):
            self._ensure_default_reference()
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

    def validate(self, options: SpeechOptions) -> None:
        if not options.text.strip():
            raise BadSpeechRequest("input must not be empty")
        if len(options.text) > MAX_INPUT_CHARS:
            raise BadSpeechRequest(f"input is longer than {MAX_INPUT_CHARS} characters")
        if not 0.25 <= options.speed <= 4.0:
            raise BadSpeechRequest("speed must be between 0.25 and 4.0")

    def voice_for(self, tts, voice: str | None) -> VoiceChoice:
        return choose_voice(voice, list(tts.speakers or []), self.settings.voices,
                            self.default_reference, _clones(tts))

    def synthesize(self, options: SpeechOptions) -> Audio:
        """The whole utterance at once (Coqui splits sentences itself)."""
        self.validate(options)
        with self.model.use() as tts, self._lock:
            choice = self.voice_for(tts, options.voice)
            kwargs = self._voice_kwargs(tts, choice)
            if tts.is_multi_lingual:
                kwargs["language"] = self._language(options)
            native_speed = _clones(tts)
            if native_speed:
                kwargs["speed"] = options.speed
            samples = np.asarray(tts.tts(options.text, split_sentences=True, **kwargs), dtype=np.float32)
            rate = int(tts.synthesizer.output_sample_rate)
        if not native_speed:
            samples = change_speed(samples, rate, options.speed)
        return Audio(samples, rate)

    def stream(self, options: SpeechOptions, cancel: threading.Event | None = None) -> Iterator[Audio]:
        """Audio as it is made: XTTS's own streaming inference, otherwise sentence by sentence.
        The model is held (and cannot unload) until the generator ends; ``cancel`` stops it between
        chunks, so a client that leaves does not leave GPU work behind."""
        self.validate(options)
        with self.model.use() as tts, self._lock:
            chunks = self._xtts_chunks(tts, options) if _clones(tts) else self._sentence_chunks(tts, options)
            for chunk in chunks:
                if cancel is not None and cancel.is_set():
                    self.streams_cancelled += 1
                    log.info("stream cancelled: the client disconnected")
                    return
                yield chunk

    def _language(self, options: SpeechOptions) -> str:
        return options.language or self.settings.language

    def _sentence_chunks(self, tts, options: SpeechOptions) -> Iterator[Audio]:
        rate = int(tts.synthesizer.output_sample_rate)
        kwargs = self._voice_kwargs(tts, self.voice_for(tts, options.voice))
        if tts.is_multi_lingual:
            kwargs["language"] = self._language(options)
        for sentence in tts.synthesizer.split_into_sentences(options.text):
            samples = np.asarray(tts.tts(sentence, split_sentences=False, **kwargs), dtype=np.float32)
            yield Audio(change_speed(samples, rate, options.speed), rate)

    def _xtts_chunks(self, tts, options: SpeechOptions) -> Iterator[Audio]:
        model = tts.synthesizer.tts_model
        latent, embedding = self._xtts_voice(model, self.voice_for(tts, options.voice))
        rate = int(tts.synthesizer.output_sample_rate)
        # Coqui's own sentence splitter (pysbd) here too: XTTS's built-in splitting needs spaCy.
        for sentence in tts.synthesizer.split_into_sentences(options.text):
            for chunk in model.inference_stream(sentence, self._language(options), latent, embedding,
                                                stream_chunk_size=self.settings.stream_chunk_size,
                                                speed=options.speed, enable_text_splitting=False):
                yield Audio(chunk.detach().cpu().numpy().astype(np.float32).reshape(-1), rate)

    def _xtts_voice(self, model, choice: VoiceChoice):
        """Conditioning latents: a built-in speaker's, or a reference's (cached in ``voice_dir``)."""
        speakers = getattr(model.speaker_manager, "speakers", None) or {}
        if choice.speaker_wav is None and choice.speaker in speakers:
            return tuple(speakers[choice.speaker].values())
        if choice.speaker_wav is None:
            raise BadSpeechRequest("this XTTS model has no built-in speakers and no default reference")
        self.voice_dir.mkdir(parents=True, exist_ok=True)
        cached = (self.voice_dir / f"{choice.speaker}.pth").exists()
        cfg = model.config
        voice = model.clone_voice(None if cached else str(choice.speaker_wav), choice.speaker, str(self.voice_dir),
                                  gpt_cond_len=cfg.gpt_cond_len, gpt_cond_chunk_len=cfg.gpt_cond_chunk_len,
                                  max_ref_length=cfg.max_ref_len, sound_norm_refs=cfg.sound_norm_refs)
        return voice["gpt_conditioning_latents"], voice["speaker_embedding"]

    def _voice_kwargs(self, tts, choice: VoiceChoice) -> dict:
        if choice.speaker_wav is None:
            return {"speaker": choice.speaker} if choice.speaker else {}
        self.voice_dir.mkdir(parents=True, exist_ok=True)
        kwargs = {"speaker": choice.speaker, "voice_dir": str(self.voice_dir)}
        if not (self.voice_dir / f"{choice.speaker}.pth").exists():
            kwargs["speaker_wav"] = str(choice.speaker_wav)  # first use: compute and cache the latents
        return kwargs


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


def _clones(tts) -> bool:
    """XTTS conditions on a reference recording (and takes ``speed`` natively)."""
    return getattr(tts.synthesizer.tts_config, "model", "") == "xtts"
