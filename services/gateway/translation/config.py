"""A Realtime translation session's configuration (OpenAI's ``realtime.translations``): the output
language, the optional source transcript's model and, as an extension, the voice the translation is
spoken in (``audio.output.voice``: ``speaker``, the speaker's own, or a voice name). Only fields present
are changed by ``session.update``; the session's ``model`` is fixed at the handshake."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from services.common.live_wire import LANGUAGE_CODE, Vad
from services.gateway.realtime.config import ConfigError, render_vad

SPEAKER = "speaker"  # the voice cloned from the session's own speech
NOISE_REDUCTION = ("near_field", "far_field")
MAX_VOICE_CHARS = 64


@dataclass(frozen=True)
class TranslationConfig:
    model: str  # the model the session was opened with
    whisper: str  # the transcription model that hears the speaker
    language: str = "en"  # audio.output.language
    transcription: str | None = None  # audio.input.transcription.model: source transcript deltas
    voice: str = SPEAKER
    delay: str = "low"  # partial source text, when a source transcript is asked for
    format: str = "audio/pcm"  # 24 kHz PCM16 mono: the only input translation sessions take
    turn_detection: Vad = field(default_factory=Vad)

    def wire(self) -> dict[str, Any]:
        """The ASR predictor's live session: every turn transcribed and translated; partial decodes only
        when the client reads the source transcript."""
        return {
            "format": self.format,
            "model": self.transcription or self.whisper,
            "delay": self.delay if self.transcription else "xhigh",
            "turn_detection": self.turn_detection.wire(),
            "translate_to": self.language,
            "transcript": self.transcription is not None,
        }

    def update(self, session: Any) -> TranslationConfig:
        if not isinstance(session, dict):
            raise ConfigError("session must be an object", "session")
        if session.get("type", "translation") != "translation":
            raise ConfigError("this is a translation session: session.type must be 'translation'", "session.type")
        if "model" in session and session["model"] != self.model:
            raise ConfigError("a translation session's model is set when it opens", "session.model")
        audio = _object(session, "audio", "session")
        if audio is None:
            return self
        new = self
        source = _object(audio, "input", "session.audio")
        if source is not None:
            if "transcription" in source:
                new = replace(new, transcription=_transcription(source["transcription"]))
            if "noise_reduction" in source:
                _noise_reduction(source["noise_reduction"])
        output = _object(audio, "output", "session.audio")
        if output is not None:
            if output.get("language") is not None:
                new = replace(new, language=_language(output["language"]))
            if output.get("voice") is not None:
                new = replace(new, voice=_voice(output["voice"]))
        return new

    def render(self, session_id: str, expires_at: int) -> dict:
        return {
            "id": session_id,
            "object": "realtime.translation_session",
            "type": "translation",
            "model": self.model,
            "expires_at": expires_at,
            "audio": {
                "input": {
                    "format": {"type": self.format, "rate": 24000},
                    "transcription": {"model": self.transcription} if self.transcription else None,
                    "noise_reduction": None,
                    "turn_detection": render_vad(self.turn_detection),
                },
                "output": {
                    "format": {"type": "audio/pcm", "rate": 24000},
                    "language": self.language,
                    "voice": self.voice,
                },
            },
        }


def _object(parent: dict, key: str, param: str) -> dict | None:
    value = parent.get(key)
    if value is not None and not isinstance(value, dict):
        raise ConfigError(f"{param}.{key} must be an object", f"{param}.{key}")
    return value


def _transcription(value: Any) -> str | None:
    param = "session.audio.input.transcription"
    if value is None:
        return None
    if not isinstance(value, dict) or not isinstance(value.get("model"), str) or not value["model"]:
        raise ConfigError(f"{param} must be an object with a 'model' (or null)", f"{param}.model")
    return str(value["model"])[:256]


def _noise_reduction(value: Any) -> None:
    """Accepted as OpenAI's clients send it; the predictor's VAD and Whisper take the audio as it is."""
    param = "session.audio.input.noise_reduction"
    if value is not None and (not isinstance(value, dict) or value.get("type") not in NOISE_REDUCTION):
        raise ConfigError(f"{param}.type must be one of {list(NOISE_REDUCTION)} (or noise_reduction null)", param)


def _language(value: Any) -> str:
    param = "session.audio.output.language"
    if not isinstance(value, str) or not LANGUAGE_CODE.fullmatch(value.lower()):
        raise ConfigError(f"{param} must be a language code such as 'en', 'fr' or 'de'", param)
    return value.lower()


def _voice(value: Any) -> str:
    param = "session.audio.output.voice"
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_VOICE_CHARS:
        raise ConfigError(f"{param} must be '{SPEAKER}' or a voice name", param)
    return value
