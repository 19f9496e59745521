"""Consent recordings (OpenAI's ``voice_consents``): the speaker saying they agree to their voice being
cloned, kept next to the uploaded voices (``<voice store>/.consents/<id>/``: ``recording.wav`` and
``meta.json``), each belonging to the owner that made it. A voice upload on a server that requires
consent names one of its owner's records. Written into a hidden directory and renamed into place, so
a record appears whole or not at all; replicas on a shared volume see the same records."""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import shutil
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from services.common.errors import BadRequest, NotFound, echo
from services.tts.voice_store import write_wav

log = logging.getLogger(__name__)
CONSENT_ID = re.compile(r"cons_[0-9a-f]{24}")
META, RECORDING = "meta.json", "recording.wav"


@dataclass(frozen=True)
class Consent:
    id: str
    name: str
    language: str
    created_at: int
    owner: str | None = None

    def public(self) -> dict:
        return {"id": self.id, "object": "audio.voice_consent", "name": self.name, "language": self.language,
                "created_at": self.created_at}  # fmt: skip


def visible(owner: str | None, viewer: str | None) -> bool:
    """No keys (viewer None): every record; otherwise the viewer's own (or a record from before keys)."""
    return viewer is None or owner is None or owner == viewer


def check_fields(name: object, language: object) -> tuple[str, str]:
    if not isinstance(name, str) or not name.strip() or len(name) > 128:
        raise BadRequest("name must be 1-128 characters", param="name", code="invalid_value")
    if not isinstance(language, str) or not re.fullmatch(r"[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*", language):
        raise BadRequest(f"language '{echo(language)}' is not a BCP 47 tag such as en-US", param="language",
                         code="invalid_value")  # fmt: skip
    return name.strip(), language


class ConsentStore:
    def __init__(self, root: Path) -> None:
        self.root = root / ".consents"

    def create(self, name: str, language: str, speech: np.ndarray, rate: int, owner: str | None) -> Consent:
        self.root.mkdir(parents=True, exist_ok=True)
        consent = Consent(f"cons_{int(time.time() * 1000):012x}{secrets.token_hex(6)}", name, language,
                          int(time.time()), owner)  # fmt: skip
        draft = self.root / f".tmp-{consent.id}"
        try:
            draft.mkdir()
            write_wav(draft / RECORDING, speech, rate)
            (draft / META).write_text(json.dumps(asdict(consent)))
            os.rename(draft, self.root / consent.id)
        except BaseException:
            shutil.rmtree(draft, ignore_errors=True)
            raise
        log.info("consent %s stored", consent.id)
        return consent

    def all(self, viewer: str | None) -> list[Consent]:
        if not self.root.is_dir():
            return []
        found = [c for p in self.root.iterdir() if CONSENT_ID.fullmatch(p.name) and (c := self._read(p))]
        return sorted((c for c in found if visible(c.owner, viewer)), key=lambda c: c.id)

    def get(self, consent_id: str, viewer: str | None) -> Consent:
        consent = self._read(self.root / consent_id) if CONSENT_ID.fullmatch(consent_id) else None
        if consent is None or not visible(consent.owner, viewer):
            raise NotFound(f"No voice consent with id '{echo(consent_id)}'", param="consent_id",
                           code="voice_consent_not_found")  # fmt: skip
        return consent

    def rename(self, consent_id: str, name: str, viewer: str | None) -> Consent:
        consent = replace(self.get(consent_id, viewer), name=name)
        partial = self.root / consent.id / f".{META}.partial"
        partial.write_text(json.dumps(asdict(consent)))
        partial.replace(self.root / consent.id / META)
        return consent

    def delete(self, consent_id: str, viewer: str | None) -> Consent:
        consent = self.get(consent_id, viewer)
        trash = self.root / f".trash-{consent.id}-{secrets.token_hex(4)}"
        try:
            os.rename(self.root / consent.id, trash)
        except FileNotFoundError:  # a concurrent delete won
            raise NotFound(f"No voice consent with id '{echo(consent_id)}'", param="consent_id",
                           code="voice_consent_not_found") from None  # fmt: skip
        shutil.rmtree(trash, ignore_errors=True)
        return consent

    @staticmethod
    def _read(directory: Path) -> Consent | None:
        try:
            return Consent(**json.loads((directory / META).read_text()))
        except FileNotFoundError:
            return None
        except (ValueError, TypeError) as exc:
            log.warning("ignoring consent %s: unreadable metadata (%s)", directory.name, exc)
            return None
