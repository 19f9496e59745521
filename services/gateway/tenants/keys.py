"""API keys with names and limits. Two sources: the plain list (``GATEWAY_API_KEYS``: unnamed keys
without limits, named ``key-1``, ``key-2``, ... by position) and a JSON file (``GATEWAY_API_KEYS_FILE``,
the chart mounts it from a Secret), read again when it changes, so a key added, rotated or removed
takes effect without a restart:

    {"keys": [{"name": "research", "key": "sk-...", "owner": "lab", "admin": false,
               "limits": {"requests_per_minute": 60, "audio_seconds_per_hour": 3600,
                          "characters_per_hour": 200000, "realtime_sessions": 2}}]}

``sha256`` (hex) may stand for ``key``, so the Secret need not hold the key itself. A key is known
by its name everywhere (logs, metrics, usage); the key is never written anywhere. Auth is on when
either source is configured: a key file that cannot be read refuses everyone (never opens the API).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
CHECK_SECONDS = 1.0  # the key file is looked at (stat) at most this often
NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


@dataclass(frozen=True)
class Limits:
    requests_per_minute: int | None = None
    audio_seconds_per_hour: float | None = None
    characters_per_hour: int | None = None
    realtime_sessions: int | None = None

    @classmethod
    def parse(cls, value: Any) -> Limits:
        if value is None:
            return cls()
        if not isinstance(value, dict) or set(value) - set(cls.__dataclass_fields__):
            raise ValueError(f"limits takes {sorted(cls.__dataclass_fields__)}")
        for name, number in value.items():
            if number is not None and (isinstance(number, bool) or not isinstance(number, int | float) or number < 0):
                raise ValueError(f"limits.{name} must be a number >= 0 or null")
        return cls(**value)


@dataclass(frozen=True)
class ApiKey:
    name: str
    limits: Limits = field(default_factory=Limits)
    owner: str = ""  # who the key's uploaded voices belong to: its group, or its own name
    admin: bool = False  # may read every key's usage


def digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def parse_file(text: str) -> dict[bytes, ApiKey]:
    doc = json.loads(text)
    entries = doc.get("keys") if isinstance(doc, dict) else None
    if not isinstance(entries, list):
        raise ValueError('the key file is {"keys": [...]}')
    ring: dict[bytes, ApiKey] = {}
    names: set[str] = set()
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise ValueError(f"keys[{i}] is not an object")
        name = entry.get("name")
        if not isinstance(name, str) or not name or len(name) > 64 or not set(name) <= NAME_CHARS or name in names:
            raise ValueError(f"keys[{i}].name must be a unique name of 1-64 letters, digits, '-', '_', '.'")
        secret, hashed = entry.get("key"), entry.get("sha256")
        if isinstance(secret, str) and secret:
            key_digest = digest(secret)
        elif isinstance(hashed, str) and len(hashed) == 64:
            key_digest = bytes.fromhex(hashed)
        else:
            raise ValueError(f"keys[{i}] ({name}) needs 'key' or 'sha256'")
        owner = entry.get("owner") or name
        if not isinstance(owner, str) or not set(owner) <= NAME_CHARS:
            raise ValueError(f"keys[{i}].owner must be a name")
        names.add(name)
        ring[key_digest] = ApiKey(name, Limits.parse(entry.get("limits")), owner, bool(entry.get("admin", False)))
    return ring


class KeyRing:
    def __init__(self, plain: list[str], path: Path | None) -> None:
        self.plain = {digest(k): ApiKey(f"key-{i + 1}", owner=f"key-{i + 1}") for i, k in enumerate(plain) if k}
        self.path = path
        self.from_file: dict[bytes, ApiKey] = {}
        self._seen: tuple[int, int, int] | None = None  # the file's (inode, size, mtime) when read
        self._checked = 0.0
        self._lock = threading.Lock()
        self.reload_failures = 0
        if path is not None:
            self._reload()

    @property
    def enabled(self) -> bool:
        return bool(self.plain) or self.path is not None

    def lookup(self, secret: str) -> ApiKey | None:
        self._maybe_reload()
        key_digest = digest(secret)
        return self.from_file.get(key_digest) or self.plain.get(key_digest)

    def names(self) -> list[str]:
        self._maybe_reload()
        return sorted({k.name for k in (*self.from_file.values(), *self.plain.values())})

    def all(self) -> list[ApiKey]:
        self._maybe_reload()
        return sorted({*self.from_file.values(), *self.plain.values()}, key=lambda k: k.name)

    def _maybe_reload(self) -> None:
        if self.path is None or time.monotonic() - self._checked < CHECK_SECONDS:
            return
        with self._lock:
            if time.monotonic() - self._checked >= CHECK_SECONDS:
                self._reload()

    def _reload(self) -> None:
        """Read the file again when it changed; a file that cannot be read or parsed keeps the keys read
        before (none at first: everyone is refused) and says so in the log."""
        assert self.path is not None  # noqa: S101
        self._checked = time.monotonic()
        seen = None
        try:
            stat = os.stat(self.path)  # follows the Secret volume's ..data link
            seen = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
            if seen == self._seen:
                return
            self.from_file = parse_file(self.path.read_text())
            log.info("API keys read from the key file: %d keys", len(self.from_file))
        except (OSError, ValueError) as exc:  # a JSONDecodeError is a ValueError
            self.reload_failures += 1
            if seen != self._seen or (seen is None and self.reload_failures == 1):
                log.error("the API key file cannot be used (%s): keeping the %d keys read before",
                          type(exc).__name__, len(self.from_file))  # fmt: skip
        self._seen = seen  # one log line per change of the file
