"""Input text made safe to synthesise: normalised, control characters removed, and cut into pieces a
model can take (sentences first, then at the best break inside a sentence that is still too long:
punctuation, then a space, then anywhere). Synthesising piece by piece also bounds the memory of a
4096-character request to one piece's worth."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable

_BREAKS = (re.compile(r"[,;:\u3001\uff0c\uff1b\uff1a]\s*"), re.compile(r"\s+"))
_SCRIPTS = (
    ("ja", re.compile(r"[\u3040-\u30ff]")),
    ("ko", re.compile(r"[\uac00-\ud7af\u1100-\u11ff]")),
    ("zh-cn", re.compile(r"[\u4e00-\u9fff\u3400-\u4dbf]")),
)  # kana first: Japanese also uses Han


def clean(text: str) -> str:
    """NFC, control and format characters (C0/C1 controls, zero-width marks) -> spaces, collapsed."""
    text = unicodedata.normalize("NFC", text)
    kept = "".join(" " if unicodedata.category(c) in ("Cc", "Cf", "Cs", "Co", "Cn") else c for c in text)
    return re.sub(r"\s+", " ", kept).strip()


def split_to_fit(pieces: Iterable[str], fits: Callable[[str], bool]) -> list[str]:
    """Every piece that does not ``fit`` is halved at its best break until it does; a single
    character that still does not fit is returned as it is: the caller decides (the TTS engine
    drops what its model cannot take, and answers 400 when nothing speakable is left)."""
    out: list[str] = []
    pending = [p.strip() for p in pieces if p.strip()]
    while pending:
        piece = pending.pop(0)
        if len(piece) <= 1 or fits(piece):
            out.append(piece)
            continue
        left, right = _halve(piece)
        pending[:0] = [p for p in (left.strip(), right.strip()) if p]
    return out


def _halve(piece: str) -> tuple[str, str]:
    middle = len(piece) // 2
    for pattern in _BREAKS:
        cuts = [m.end() for m in pattern.finditer(piece) if 0 < m.end() < len(piece)]
        if cuts:
            cut = min(cuts, key=lambda c: abs(c - middle))
            return piece[:cut], piece[cut:]
    return piece[:middle], piece[middle:]


def script_language(piece: str, default: str, available: Iterable[str]) -> str:
    """For a multilingual model: a piece written only in a script the configured language cannot
    read (Han, kana, Hangul) goes to the language of that script, when the model has it."""
    if re.search(r"[A-Za-z\u00c0-\u024f\u0400-\u04ff]", piece):
        return default
    languages = set(available)
    for language, pattern in _SCRIPTS:
        if pattern.search(piece) and language in languages and not default.startswith(language[:2]):
            return language
    return default
