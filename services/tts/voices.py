"""Which speaker a request's ``voice`` resolves to. An unknown voice falls back, never errors."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class VoiceChoice:
    speaker: str | None = None  # built-in speaker name, or the latent-cache key of a reference
    speaker_wav: Path | None = None  # reference recording (cloning models only)


def reference_key(voice: str, path: Path) -> str:
    """Latent-cache key: the voice name plus a digest of the file, so a new recording is re-conditioned."""
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    return f"{voice}-{digest}"


def choose_voice(
    voice: str | None, builtin: list[str], mapped: dict[str, Path], default_reference: Path | None, clones: bool
) -> VoiceChoice:
    """Operator-mapped reference > built-in speaker of that name > default reference (cloning
    models, as XTTS) > first built-in speaker (the seed's fallback) > the model's only voice."""
    if voice and clones and voice in mapped:
        return VoiceChoice(reference_key(voice, mapped[voice]), mapped[voice])
    if voice and voice in builtin:
        return VoiceChoice(voice)
    if clones and default_reference is not None and default_reference.exists():
        return VoiceChoice(reference_key("default", default_reference), default_reference)
    if builtin:
        return VoiceChoice(builtin[0])
    return VoiceChoice()
