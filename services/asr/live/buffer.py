"""A live session's audio: 16 kHz float32 chunks as they arrived, addressed by absolute sample index
from the session's start. Appending keeps the chunk (no copy of what is held); a span is copied out
only when it is decoded or scored; what no turn needs any more is dropped from the front. So holding
minutes of audio in 100 ms appends costs one copy of each sample, not one per append."""

from __future__ import annotations

from collections import deque

import numpy as np


class AudioBuffer:
    def __init__(self) -> None:
        self._chunks: deque[np.ndarray] = deque()
        self.start = 0  # absolute index of the first sample held
        self.end = 0  # absolute index after the last sample held

    @property
    def held(self) -> int:
        return self.end - self.start

    def append(self, samples: np.ndarray) -> None:
        if samples.size:
            self._chunks.append(samples)
            self.end += samples.size

    def span(self, start: int, end: int) -> np.ndarray:
        """A copy of samples ``[start, end)`` (clipped to what is held)."""
        start, end = max(start, self.start), min(end, self.end)
        out = np.empty(max(0, end - start), np.float32)
        offset, filled = self.start, 0
        for chunk in self._chunks:
            lo, hi = max(start, offset), min(end, offset + chunk.size)
            if lo < hi:
                out[filled : filled + hi - lo] = chunk[lo - offset : hi - offset]
                filled += hi - lo
            offset += chunk.size
            if offset >= end:
                break
        return out

    def drop_before(self, index: int) -> None:
        """Forget the samples before ``index`` (a partly needed chunk is kept whole)."""
        while self._chunks and self.start + self._chunks[0].size <= index:
            self.start += self._chunks.popleft().size
