"""Text arriving piece by piece (an LLM's tokens) cut into what is spoken as one unit, as soon as the
unit is complete. ``sentence``: after ``.``, ``!``, ``?`` or ``…`` followed by whitespace (so "3.5",
"e.g." inside a sentence and a full stop not yet followed by anything wait), or after CJK full-width
terminators at once; ``clause`` also after ``,``, ``;``, ``:`` and their full-width forms, once the
clause has ``MIN_CLAUSE`` characters; ``none``: only ``flush`` (the client's ``input.done``) ends a
unit. Any unit is cut at ``max_chars`` (at the last space before it when there is one), so the text
held per session is bounded."""

from __future__ import annotations

import re
from typing import Literal

Granularity = Literal["none", "sentence", "clause"]
MIN_CLAUSE = 12  # characters a clause needs before a comma ends it ("Well," is no unit of its own)
ABBREVIATIONS = frozenset(
    [
        "mr",
        "mrs",
        "ms",
        "dr",
        "prof",
        "sr",
        "jr",
        "st",
        "vs",
        "etc",
        "e.g",
        "i.e",
        "cf",
        "fig",
        "vol",
        "approx",
        "dept",
        "inc",
        "ltd",
        "co",
        "corp",
        "jan",
        "feb",
        "mar",
        "apr",
        "jun",
        "jul",
        "aug",
        "sep",
        "sept",
        "oct",
        "nov",
        "dec",
        "mt",
        "ft",
        "al",
        "a.m",
        "p.m",
        "u.s",
        "u.k",
    ]
)
_SENTENCE = re.compile(r"(?:[.!?…]+[\"'”’)\]]*)(?=\s)|[。！？]+[」』”’）]*")
_CLAUSE = re.compile(r"[,;:](?=\s)|[，；：、]")


class TextSplitter:
    def __init__(self, granularity: Granularity, max_chars: int) -> None:
        self.granularity, self.max_chars = granularity, max_chars
        self.pending = ""

    def feed(self, text: str) -> list[str]:
        """The units this text completes (the rest waits for more text or ``flush``)."""
        self.pending += text
        units: list[str] = []
        while (cut := self._cut()) is not None:
            unit, self.pending = self.pending[:cut].strip(), self.pending[cut:].lstrip()
            if unit:
                units.append(unit)
        return units

    def flush(self) -> list[str]:
        unit, self.pending = self.pending.strip(), ""
        return [unit] if unit else []

    def _cut(self) -> int | None:
        if self.granularity != "none":
            for match in _SENTENCE.finditer(self.pending):
                if not self._abbreviation(match.start()):
                    return match.end()
        if self.granularity == "clause":
            for match in _CLAUSE.finditer(self.pending):
                if len(self.pending[: match.start()].strip()) >= MIN_CLAUSE:
                    return match.end()
        if len(self.pending) > self.max_chars:
            space = self.pending.rfind(" ", 0, self.max_chars)
            return space if space > 0 else self.max_chars
        return None

    def _abbreviation(self, at: int) -> bool:
        """A full stop after an abbreviation, an initial ("J. Smith") or inside a number ends nothing."""
        if self.pending[at] != ".":
            return False
        word = re.search(r"(\S+)$", self.pending[:at])
        if word is None:
            return False
        token = word.group(1).lstrip("\"'(“‘[").lower()
        return token in ABBREVIATIONS or (len(token) == 1 and token.isalpha())
