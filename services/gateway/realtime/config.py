"""A transcription session's configuration: one internal form, updated from OpenAI's GA
``session.update`` (``session.type: "transcription"``) or the beta ``transcription_session.update``,
and rendered back in the shape that was asked. Only fields present are changed; ``null`` clears."""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any

from services.common.live_wire import DELAYS, Vad

FORMATS = {"audio/pcm": "pcm16", "audio/pcmu": "g711_ulaw", "audio/pcma": "g711_alaw"}  # GA -> beta names
BETA_FORMATS = {v: k for k, v in FORMATS.items()}
LOGPROBS = "item.input_audio_transcription.logprobs"
MAX_PROMPT_CHARS = 2000  # Whisper reads the last 223 tokens of a prompt at most
EAGERNESS_SILENCE_MS = {"low": 1000, "medium": 500, "auto": 500, "high": 250}


class ConfigError(ValueError):
    def __init__(self, message: str, param: str) -> None:
        super().__init__(message)
        self.message, self.param = message, param


def render_vad(vad: Vad) -> dict:
    rendered = {
        "type": "server_vad",
        "threshold": vad.threshold,
        "prefix_padding_ms": vad.prefix_padding_ms,
        "silence_duration_ms": vad.silence_duration_ms,
    }
    return rendered | ({"idle_timeout_ms": vad.idle_timeout_ms} if vad.idle_timeout_ms is not None else {})


@dataclass(frozen=True)
class SessionConfig:
    format: str = "audio/pcm"
    model: str = "whisper-1"
    language: str | None = None
    prompt: str | None = None
    turn_detection: Vad | None = field(default_factory=Vad)
    include: tuple[str, ...] = ()
    delay: str = "low"  # OpenAI's audio.input.transcription.delay (live_wire.DELAYS)

    @property
    def logprobs(self) -> bool:
        return LOGPROBS in self.include

    def wire(self) -> dict[str, Any]:
        """The predictor's live session configuration (``services.common.live_wire``)."""
        return {
            "format": self.format,
            "model": self.model,
            "language": self.language,
            "prompt": self.prompt,
            "logprobs": self.logprobs,
            "delay": self.delay,
            "turn_detection": self.turn_detection.wire() if self.turn_detection else None,
        }

    # -- updates ----------------------------------------------------------------------------------
    def update_ga(self, session: Any) -> SessionConfig:
        if not isinstance(session, dict):
            raise ConfigError("session must be an object", "session")
        if session.get("type", "transcription") != "transcription":
            raise ConfigError(
                "this server serves transcription sessions only: session.type must be "
                "'transcription' (connect with ?intent=transcription)",
                "session.type",
            )
        new = self
        audio = _object(session, "audio", "session")
        source = _object(audio, "input", "session.audio") if audio is not None else None
        if source is not None:
            if "format" in source:
                new = replace(new, format=_format(source["format"]))
            if "transcription" in source:
                new = new._transcription(source["transcription"], "session.audio.input.transcription")
            if "turn_detection" in source:
                new = replace(
                    new,
                    turn_detection=_turns(
                        source["turn_detection"], "session.audio.input.turn_detection", self.turn_detection
                    ),
                )
        if "include" in session:
            new = replace(new, include=_include(session["include"], "session.include"))
        return new

    def update_beta(self, session: Any) -> SessionConfig:
        if not isinstance(session, dict):
            raise ConfigError("session must be an object", "session")
        new = self
        if "input_audio_format" in session:
            name = session["input_audio_format"]
            if name not in BETA_FORMATS:
                raise ConfigError(
                    f"input_audio_format must be one of {sorted(BETA_FORMATS)}", "session.input_audio_format"
                )
            new = replace(new, format=BETA_FORMATS[name])
        if "input_audio_transcription" in session:
            new = new._transcription(session["input_audio_transcription"], "session.input_audio_transcription")
        if "turn_detection" in session:
            new = replace(
                new, turn_detection=_turns(session["turn_detection"], "session.turn_detection", self.turn_detection)
            )
        if "include" in session:
            new = replace(new, include=_include(session["include"], "session.include"))
        return new

    def _transcription(self, value: Any, param: str) -> SessionConfig:
        if value is None:
            return replace(self, model=SessionConfig.model, language=None, prompt=None)
        if not isinstance(value, dict):
            raise ConfigError(f"{param} must be an object", param)
        changes: dict[str, Any] = {}
        for key in ("model", "language", "prompt", "delay"):
            if key not in value:
                continue
            if value[key] is not None and not isinstance(value[key], str):
                raise ConfigError(f"{param}.{key} must be a string", f"{param}.{key}")
            changes[key] = value[key]
        if changes.get("model", "") is None:
            changes["model"] = SessionConfig.model
        if changes.get("delay", "") is None:
            changes.pop("delay")
        if "delay" in changes and changes["delay"] not in DELAYS:
            raise ConfigError(f"{param}.delay must be one of {list(DELAYS)}", f"{param}.delay")
        if len(changes.get("prompt") or "") > MAX_PROMPT_CHARS:  # it is echoed in every session.updated
            raise ConfigError(f"{param}.prompt is longer than {MAX_PROMPT_CHARS} characters", f"{param}.prompt")
        return replace(self, **changes)

    # -- rendering --------------------------------------------------------------------------------
    def _transcription_object(self) -> dict:
        return {"model": self.model, "language": self.language, "prompt": self.prompt, "delay": self.delay}

    def render_ga(self, session_id: str, expires_at: int) -> dict:
        fmt: dict[str, Any] = {"type": self.format} | ({"rate": 24000} if self.format == "audio/pcm" else {})
        return {
            "id": session_id,
            "object": "realtime.transcription_session",
            "type": "transcription",
            "expires_at": expires_at,
            "include": list(self.include),
            "audio": {
                "input": {
                    "format": fmt,
                    "transcription": self._transcription_object(),
                    "noise_reduction": None,
                    "turn_detection": render_vad(self.turn_detection) if self.turn_detection else None,
                }
            },
        }

    def render_beta(self, session_id: str, expires_at: int) -> dict:
        return {
            "id": session_id,
            "object": "realtime.transcription_session",
            "expires_at": expires_at,
            "input_audio_format": FORMATS[self.format],
            "input_audio_transcription": self._transcription_object(),
            "turn_detection": render_vad(self.turn_detection) if self.turn_detection else None,
            "input_audio_noise_reduction": None,
            "include": list(self.include),
        }


def expires(max_seconds: float) -> int:
    return int(time.time() + max_seconds)


def _object(parent: dict, key: str, param: str) -> dict | None:
    value = parent.get(key)
    if value is not None and not isinstance(value, dict):
        raise ConfigError(f"{param}.{key} must be an object", f"{param}.{key}")
    return value


def _format(value: Any) -> str:
    param = "session.audio.input.format"
    if not isinstance(value, dict) or value.get("type") not in FORMATS:
        raise ConfigError(f"{param}.type must be one of {sorted(FORMATS)}", f"{param}.type")
    if value["type"] == "audio/pcm" and value.get("rate", 24000) != 24000:
        raise ConfigError("audio/pcm is taken at a rate of 24000 only", f"{param}.rate")
    return str(value["type"])


def _turns(value: Any, param: str, current: Vad | None) -> Vad | None:
    if value is None:
        return None
    if not isinstance(value, dict) or value.get("type", "server_vad") not in ("server_vad", "semantic_vad"):
        raise ConfigError(
            f"{param}.type must be 'server_vad' or 'semantic_vad' (or turn_detection null)", f"{param}.type"
        )
    base = current or Vad()
    if value.get("type") == "semantic_vad":
        eagerness = value.get("eagerness", "auto")
        if eagerness not in EAGERNESS_SILENCE_MS:
            raise ConfigError(f"{param}.eagerness must be one of {sorted(EAGERNESS_SILENCE_MS)}", f"{param}.eagerness")
        return replace(base, silence_duration_ms=EAGERNESS_SILENCE_MS[eagerness])
    checks = {
        "threshold": (float, 0.0, 1.0),
        "prefix_padding_ms": (int, 0, 5000),
        "silence_duration_ms": (int, 100, 10000),
        "idle_timeout_ms": (int, 1000, 600000),
    }
    changes = {}
    for key, (kind, low, high) in checks.items():
        if value.get(key) is None:
            continue
        number = value[key]
        if isinstance(number, bool) or not isinstance(number, (int, float)) or not low <= number <= high:
            raise ConfigError(f"{param}.{key} must be a number from {low} to {high}", f"{param}.{key}")
        changes[key] = kind(number)
    return replace(base, **changes)


def _include(value: Any, param: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or any(v != LOGPROBS for v in value):
        raise ConfigError(f"{param} may only hold '{LOGPROBS}'", param)
    return tuple(dict.fromkeys(value))
