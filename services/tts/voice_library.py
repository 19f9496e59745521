"""Every voice a request can name, in one place: the model's built-in speakers, operator voices
(``TTS_VOICES``), voices uploaded through the API (the ``VoiceStore``), and OpenAI's voice names,
which resolve to one of those. Also the upload itself: the sample checked, the conditioning latents
computed once and stored with it."""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from services.common.errors import BadRequest, Conflict, Forbidden, NotFound, PayloadTooLarge, echo
from services.tts import samples
from services.tts.consents import ConsentStore
from services.tts.settings import TtsSettings
from services.tts.voice_store import ID_PREFIX, StoredVoice, VoiceStore, check_name, write_wav

# OpenAI's speech voices: a request naming one that is not also a voice here gets the fallback voice
OPENAI_VOICES = (
    "alloy",
    "ash",
    "ballad",
    "cedar",
    "coral",
    "echo",
    "fable",
    "marin",
    "nova",
    "onyx",
    "sage",
    "shimmer",
    "verse",
)
LATENTS_CACHED = 32


@dataclass(frozen=True)
class VoiceUpload:
    name: str
    sample: memoryview
    language: str | None
    consent: str | None
    owner: str | None = None  # who the voice will belong to (None: no keys, everyone's)


class UnknownVoice(BadRequest):
    def __init__(self, voice: str) -> None:
        super().__init__(
            f"No voice with id '{echo(voice)}' (list the voices with GET /v1/audio/voices)",
            param="voice",
            code="voice_not_found",
        )


class VoiceLibrary:
    def __init__(self, settings: TtsSettings, store_root: Path) -> None:
        self.settings = settings
        self.store = VoiceStore(store_root, settings.max_voices)
        self.consents = ConsentStore(store_root)
        self.shared = set(settings.shared_voices)
        self.builtin: list[str] | None = None  # the model's speakers, known once it has loaded
        self._latents: OrderedDict[tuple[str, str], Any] = OrderedDict()
        self._latents_lock = threading.Lock()

    @property
    def operator(self) -> list[str]:
        return list(self.settings.voices)

    # -- owners -----------------------------------------------------------------------------------
    def visible(self, voice: StoredVoice, viewer: str | None) -> bool:
        """Whose uploads a caller sees and may speak with: every one without keys (viewer None);
        otherwise its owner's, the ones the operator shares (``TTS_SHARED_VOICES``) and those uploaded
        before keys. A caller without a key on the open list (viewer "") sees the shared ones only."""
        if viewer is None or voice.owner is None or voice.id in self.shared:
            return True
        return bool(viewer) and voice.owner == viewer

    # -- speech -----------------------------------------------------------------------------------
    def clone_for(self, voice: str | None, viewer: str | None = None) -> StoredVoice | None:
        """The uploaded voice a request names (by id, or by name unless the server answers to that
        name itself: an operator voice, a built-in speaker, or one of OpenAI's names, which an upload
        can never take over); an unknown ``voice_...`` id, or another owner's, is a 400 here, before
        any audio."""
        if not voice:
            return None
        if voice.startswith(ID_PREFIX):
            stored = self.store.get(voice)
            if stored is None or not self.visible(stored, viewer):
                raise UnknownVoice(voice)
            return stored
        if voice.casefold() in self.reserved_names():
            return None
        named = self.store.named(voice)
        return named if named is not None and self.visible(named, viewer) else None

    def reserved_names(self) -> set[str]:
        """Names the server itself answers to (case-insensitive): never an uploaded voice's."""
        return {n.casefold() for n in (*self.operator, *(self.builtin or []), *OPENAI_VOICES)}

    def latents(self, model: Any, voice: StoredVoice) -> tuple[Any, Any]:
        """The clone's XTTS conditioning latents: from memory, from its directory, or (a voice made
        with another model) computed again from its sample and stored."""
        import torch

        key = (voice.id, _model_key(self.settings.model))
        with self._latents_lock:
            if key in self._latents:
                self._latents.move_to_end(key)
                return self._latents[key]
        path = self.store.directory(voice) / f"latents-{key[1]}.pth"
        try:
            saved = torch.load(path, map_location=model.device, weights_only=True)
            found = saved["gpt_cond_latent"], saved["speaker_embedding"]
        except FileNotFoundError:
            found = condition(model, self.store.directory(voice) / "sample.wav", path)
        with self._latents_lock:
            self._latents[key] = found
            while len(self._latents) > LATENTS_CACHED:
                self._latents.popitem(last=False)
        return found

    # -- listing ----------------------------------------------------------------------------------
    def listing(self, clones: bool, fallback: str | None, viewer: str | None = None) -> list[dict]:
        """Built-in speakers, operator voices (cloning models), uploaded voices, then OpenAI's names
        that are none of these, each with the voice it falls back to."""
        entries: list[dict[str, Any]] = [{"id": s, "name": s, "type": "builtin"} for s in self.builtin or []]
        if clones:
            entries += [{"id": v, "name": v, "type": "operator"} for v in self.operator]
            entries += [
                {"id": v.id, "name": v.name, "type": "audio_sample", "created_at": v.created_at, "language": v.language}
                for v in self.store.all()
                if self.visible(v, viewer)
            ]
        taken = {e["name"].casefold() for e in entries}
        entries += [{"id": v, "name": v, "type": "alias", "maps_to": fallback} for v in OPENAI_VOICES if v not in taken]
        return entries

    # -- uploads ----------------------------------------------------------------------------------
    def upload(self, params: dict[str, Any], sample: memoryview, viewer: str | None = None) -> VoiceUpload:
        """The upload's fields checked, before any decoding or model work."""
        if self.settings.max_voices == 0:
            raise Forbidden(
                "voice uploads are turned off on this server (TTS_MAX_VOICES=0)", code="voice_uploads_disabled"
            )
        if params.get("type") not in (None, "audio_sample"):
            raise BadRequest(
                f"voice type '{echo(params.get('type'))}' is not supported: only 'audio_sample' (a recording to clone)",
                param="type",
                code="unsupported_value",
            )
        name = check_name(str(params.get("name") or ""))
        consent = str(params["consent"]) if params.get("consent") else None
        if self.settings.require_consent and not consent:
            raise BadRequest(
                "this server requires 'consent' (the id of the speaker's consent recording)",
                param="consent",
                code="consent_required",
            )
        if consent is not None and len(consent) > 128:
            raise BadRequest("consent must be at most 128 characters", param="consent", code="invalid_value")
        if self.settings.require_consent and consent is not None:
            self._check_consent(consent, viewer)
        if len(sample) > self.settings.max_sample_bytes:
            raise PayloadTooLarge(
                f"audio_sample is larger than {self.settings.max_sample_bytes} bytes",
                param="audio_sample",
                code="file_too_large",
            )
        if len(sample) == 0:
            raise BadRequest("audio_sample is empty", param="audio_sample", code="empty_file")
        language = str(params["language"]) if params.get("language") else None
        return VoiceUpload(name, sample, language, consent, viewer or None)

    def _check_consent(self, consent: str, viewer: str | None) -> None:
        """A real consent record (made through the consent routes) of the uploader's own."""
        try:
            self.consents.get(consent, viewer)
        except NotFound:
            raise BadRequest(
                f"consent '{echo(consent)}' is not a consent recording of yours: make one with "
                "POST /v1/audio/voice_consents",
                param="consent",
                code="consent_not_found",
            ) from None

    def check_new(self, upload: VoiceUpload, languages: list[str] | None) -> None:
        """The upload's name and language against the server's own (the store decides duplicates
        between uploads and the limit, when it claims the name)."""
        if upload.name.casefold() in self.reserved_names():
            raise Conflict(
                f"'{echo(upload.name)}' is already a voice of this server", param="name", code="voice_name_taken"
            )
        if self.store.named(upload.name) is not None:  # (the claim also decides races between uploads)
            raise Conflict(f"a voice named '{echo(upload.name)}' already exists", param="name", code="voice_name_taken")
        if upload.language is not None and languages is not None and upload.language not in languages:
            raise BadRequest(
                f"language '{echo(upload.language)}' is not one of the model's: {languages}",
                param="language",
                code="unsupported_language",
            )

    def create(
        self, upload: VoiceUpload, speech: np.ndarray, condition_with: Callable[[Path, Path], None]
    ) -> StoredVoice:
        """Claim the name, store the trimmed sample and the latents ``condition_with(sample, out)``
        computes; the voice appears whole or not at all."""
        seconds = speech.size / samples.RATE
        with self.store.creating(upload.name, seconds, upload.language, upload.consent, upload.owner) as draft:
            write_wav(draft.sample, speech, samples.RATE)
            condition_with(draft.sample, draft.directory / f"latents-{_model_key(self.settings.model)}.pth")
        return draft.voice

    def delete(self, voice_id: str, viewer: str | None = None) -> StoredVoice:
        """The uploader's own voice (any, without keys); another owner's is a 404, as if not there, and
        a shared one of another owner a 403."""
        if voice_id.casefold() in self.reserved_names():
            raise Forbidden(
                f"'{echo(voice_id)}' is a voice of the server, not an uploaded one; it cannot be deleted",
                param="voice_id",
                code="voice_not_deletable",
            )
        stored = self.store.get(voice_id)
        if stored is not None and not self.visible(stored, viewer):
            raise NotFound(f"No voice with id '{echo(voice_id)}'", param="voice_id", code="voice_not_found")
        if stored is not None and viewer is not None and stored.owner not in (None, viewer):
            raise Forbidden("a shared voice can be deleted by its owner only", param="voice_id",
                            code="voice_not_deletable")  # fmt: skip
        return self.store.delete(voice_id)


def conditioning(model: Any, sample: Path) -> tuple[Any, Any]:
    """XTTS conditioning latents of a recording, with the model's own reference settings."""
    cfg = model.config
    return model.get_conditioning_latents(
        audio_path=str(sample),
        max_ref_length=cfg.max_ref_len,
        gpt_cond_len=cfg.gpt_cond_len,
        gpt_cond_chunk_len=cfg.gpt_cond_chunk_len,
        sound_norm_refs=cfg.sound_norm_refs,
    )


def condition(model: Any, sample: Path, out: Path) -> tuple[Any, Any]:
    """XTTS conditioning latents of a recording, saved to ``out`` (written whole, then renamed)."""
    import torch

    gpt, embedding = conditioning(model, sample)
    partial = out.with_name(f".{out.name}.partial")
    torch.save({"gpt_cond_latent": gpt.cpu(), "speaker_embedding": embedding.cpu()}, partial)
    partial.replace(out)
    return gpt, embedding


def _model_key(model: str) -> str:
    """Latents belong to a model: a voice used with another one is conditioned again."""
    return hashlib.sha256(model.encode()).hexdigest()[:12]
