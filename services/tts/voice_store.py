"""Voices uploaded through the API, on disk: one directory per voice, named by its id (never by
anything a client sent), holding ``sample.wav``, the model's conditioning latents and ``meta.json``.

Every change is all-or-nothing: a voice is written into a hidden temporary directory and appears by
one ``rename``; a deleted voice disappears by one ``rename`` before its files are removed. Names are
claimed by ``mkdir`` (atomic, also between replicas sharing a volume), so two uploads of one name
cannot both succeed. Readers scan the directory each time: replicas on a shared volume agree.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import secrets
import shutil
import threading
import time
import wave
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from services.common.errors import BadRequest, Conflict, NotFound, echo

log = logging.getLogger(__name__)

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 _.\-]{0,63}")
VOICE_ID = re.compile(r"voice_[0-9a-f]{24}")
ID_PREFIX = "voice_"
SAMPLE, META, OWNER_FILE = "sample.wav", "meta.json", "owner"
SETTLED_NS = 2_000_000_000  # a directory unchanged this long can be cached by its mtime


@dataclass(frozen=True)
class StoredVoice:
    id: str
    name: str
    created_at: int
    seconds: float  # speech in the stored sample
    language: str | None = None
    consent: str | None = None
    owner: str | None = None  # the uploader's owner (tenants); None: uploaded without keys, everyone's


@dataclass(frozen=True)
class Draft:
    """A voice being written: files go into ``directory`` until the store commits it."""

    voice: StoredVoice
    directory: Path

    @property
    def sample(self) -> Path:
        return self.directory / SAMPLE


def check_name(name: str) -> str:
    """1-64 characters of ``A-Z a-z 0-9 space _ . -``, starting with a letter or digit, not an id."""
    if not NAME.fullmatch(name) or name != name.strip():
        raise BadRequest(
            f"invalid voice name '{echo(name)}': use 1-64 letters, digits, spaces, '_', '.' or '-', "
            "starting with a letter or digit",
            param="name",
            code="invalid_voice_name",
        )
    if name.lower().startswith(ID_PREFIX):
        raise BadRequest(
            f"a voice name cannot start with '{ID_PREFIX}' (voice ids do)", param="name", code="invalid_voice_name"
        )
    return name


def new_id() -> str:
    """``voice_`` + 24 hex digits: milliseconds since the epoch, then randomness (ids sort by age)."""
    return f"{ID_PREFIX}{int(time.time() * 1000):012x}{secrets.token_hex(6)}"


def write_wav(path: Path, samples: np.ndarray, rate: int) -> None:
    pcm = (np.clip(samples, -1.0, 1.0) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(pcm.tobytes())


class VoiceStore:
    def __init__(self, root: Path, max_voices: int, stale_seconds: float = 3600.0) -> None:
        self.root, self.max_voices, self.stale_seconds = root, max_voices, stale_seconds
        self._lock = threading.Lock()  # claim checks within this process; mkdir decides between processes
        self._ready = False
        self._scanned: tuple[int, list[StoredVoice]] | None = None  # (root mtime, the voices then)
        self._scan_lock = threading.Lock()

    @property
    def names_dir(self) -> Path:
        return self.root / ".names"

    def _prepare(self) -> None:
        """Create the layout and remove what an interrupted upload or delete left (older than the
        stale age, so a replica's upload in progress is never touched)."""
        if self._ready:
            return
        self.names_dir.mkdir(parents=True, exist_ok=True)
        for leftover in [*self.root.glob(".tmp-*"), *self.root.glob(".trash-*")]:
            if self._stale(leftover):
                shutil.rmtree(leftover, ignore_errors=True)
                log.info("removed an interrupted voice write: %s", leftover.name)
        self._ready = True

    def _stale(self, path: Path) -> bool:
        try:
            return time.time() - path.stat().st_mtime > self.stale_seconds
        except FileNotFoundError:
            return False

    # -- reading ------------------------------------------------------------------------------
    def all(self) -> list[StoredVoice]:
        """Every stored voice. The scan is kept until the root directory changes (a voice appears or
        disappears by a rename in it, which changes its mtime, on a shared volume too); a directory
        changed in the last two seconds is scanned every time (timestamps are coarse)."""
        try:
            changed = self.root.stat().st_mtime_ns
        except FileNotFoundError:
            return []
        with self._scan_lock:
            if self._scanned is not None and self._scanned[0] == changed:
                return self._scanned[1]
        voices = [v for p in self.root.iterdir() if VOICE_ID.fullmatch(p.name) and (v := self._read(p))]
        voices.sort(key=lambda v: v.id)
        if time.time_ns() - changed > SETTLED_NS:  # a change within the clock's tick would share the mtime
            with self._scan_lock:
                self._scanned = (changed, voices)
        return voices

    def _read(self, directory: Path) -> StoredVoice | None:
        try:
            return StoredVoice(**json.loads((directory / META).read_text()))
        except FileNotFoundError:
            return None  # deleted while listing
        except (ValueError, TypeError) as exc:
            log.warning("ignoring voice %s: unreadable metadata (%s)", directory.name, exc)
            return None

    def get(self, voice_id: str) -> StoredVoice | None:
        if not VOICE_ID.fullmatch(voice_id):
            return None
        return self._read(self.root / voice_id)

    def named(self, name: str) -> StoredVoice | None:
        key = name.casefold()
        return next((v for v in self.all() if v.name.casefold() == key), None)

    def directory(self, voice: StoredVoice) -> Path:
        return self.root / voice.id

    # -- writing ------------------------------------------------------------------------------
    def _claim_path(self, name: str) -> Path:
        return self.names_dir / hashlib.sha256(name.casefold().encode()).hexdigest()[:32]

    def _claim(self, name: str, owner: str | None) -> Path:
        """Take the name (409 when a voice or an upload in progress has it), then check the owner's
        limit (its voices and uploads in progress: each claim records its owner)."""
        claim = self._claim_path(name)
        with self._lock:
            try:
                claim.mkdir()
            except FileExistsError:
                if not (self._stale(claim) and self.named(name) is None):
                    raise Conflict(
                        f"a voice named '{echo(name)}' already exists", param="name", code="voice_name_taken"
                    ) from None
                shutil.rmtree(claim, ignore_errors=True)  # an upload that died long ago: take its name over
                claim.mkdir(exist_ok=True)
            (claim / OWNER_FILE).write_text(owner or "")
            if sum(1 for c in self.names_dir.iterdir() if _claim_owner(c) == (owner or "")) > self.max_voices:
                shutil.rmtree(claim, ignore_errors=True)
                raise Conflict(
                    f"the voice limit ({self.max_voices} per owner) is reached: delete a voice first",
                    param="name",
                    code="voice_limit_reached",
                )
        return claim

    @contextmanager
    def creating(
        self, name: str, seconds: float, language: str | None, consent: str | None, owner: str | None
    ) -> Iterator[Draft]:
        """Claim the name and yield a draft to write into; the voice appears when the block ends
        without error, and nothing is left behind when it does not."""
        self._prepare()
        claim = self._claim(check_name(name), owner)
        voice = StoredVoice(new_id(), name, int(time.time()), round(seconds, 3), language, consent, owner)
        draft = Draft(voice, self.root / f".tmp-{voice.id}")
        try:
            draft.directory.mkdir()
            yield draft
            (draft.directory / META).write_text(json.dumps(asdict(voice)))
            os.rename(draft.directory, self.directory(voice))
        except BaseException:
            shutil.rmtree(draft.directory, ignore_errors=True)
            shutil.rmtree(claim, ignore_errors=True)
            raise
        log.info("voice %s (%s) stored", voice.id, voice.name)

    def delete(self, voice_id: str) -> StoredVoice:
        self._prepare()
        voice = self.get(voice_id)
        if voice is None:
            raise NotFound(f"No voice with id '{echo(voice_id)}'", param="voice_id", code="voice_not_found")
        trash = self.root / f".trash-{voice.id}-{secrets.token_hex(4)}"
        try:
            os.rename(self.directory(voice), trash)
        except FileNotFoundError:  # a concurrent delete won
            raise NotFound(f"No voice with id '{echo(voice_id)}'", param="voice_id", code="voice_not_found") from None
        shutil.rmtree(self._claim_path(voice.name), ignore_errors=True)
        shutil.rmtree(trash, ignore_errors=True)
        log.info("voice %s (%s) deleted", voice.id, voice.name)
        return voice


def _claim_owner(claim: Path) -> str:
    """The owner a name claim records (a claim from before owners: everyone's, "")."""
    try:
        return (claim / OWNER_FILE).read_text()
    except OSError:
        return ""
