"""Which words of a growing turn are stable enough to send: LocalAgreement-2 (Macháček et al., 2023,
the policy of whisper_streaming and WhisperLiveKit). The turn's audio is decoded again as it grows;
a word is sent once two consecutive decodes agree on it and on every word before it, and it is not
the last word of the newer decode (Whisper closes a clip with a full stop that the next words undo). Sent words are
never taken back (OpenAI's deltas are append-only), so when the turn ends its final decode only
adds what follows them: the transcript is the sent text plus the rest of the final decode after the
point where the sent words meet it."""

from __future__ import annotations

from difflib import SequenceMatcher


def words(text: str) -> list[str]:
    return text.split()


def _key(word: str) -> str:
    """Words agree regardless of case and surrounding punctuation ("dog," and "dog")."""
    return word.strip(".,!?;:\"'()[]").casefold()


class LocalAgreement:
    def __init__(self) -> None:
        self.sent: list[str] = []  # words already sent as deltas
        self._previous: list[str] = []

    def update(self, hypothesis: str) -> list[str]:
        """The words newly agreed on by this decode and the one before (the next delta's words)."""
        current = words(hypothesis)
        agreed = 0
        # a decode's last word is held back: Whisper ends a clip with a full stop, right or not
        for a, b in zip(self._previous, current[:-1], strict=False):
            if _key(a) != _key(b):
                break
            agreed += 1
        self._previous = current
        if agreed <= len(self.sent) or [_key(w) for w in current[: len(self.sent)]] != [_key(w) for w in self.sent]:
            return []  # nothing new, or the decodes moved away from what was sent: wait
        new = current[len(self.sent) : agreed]
        self.sent += new
        return new

    def finish(self, final: str) -> list[str]:
        """The words of the final decode that come after the sent ones (the last delta's words)."""
        final_words = words(final)
        if not self.sent:
            return final_words
        matcher = SequenceMatcher(None, [_key(w) for w in self.sent], [_key(w) for w in final_words], autojunk=False)
        blocks = [b for b in matcher.get_matching_blocks() if b.size]
        if not blocks:
            return final_words[len(self.sent) :] if len(final_words) > len(self.sent) else []
        last = blocks[-1]
        return final_words[last.b + last.size :]


def joined(new: list[str], first: bool) -> str:
    """A delta's text: words after the first delta of a turn start with a space, as Whisper's text does."""
    text = " ".join(new)
    return text if first or not text else " " + text
