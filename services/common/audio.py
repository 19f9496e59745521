"""Decode uploaded audio by content (any container FFmpeg knows), never by file name, reading the
upload in place and stopping as soon as the decoded audio passes the duration limit. Used for ASR
uploads (16 kHz) and voice samples (24 kHz).

A file cut short (an interrupted download or recording) is transcribed as far as it decodes, as
FFmpeg itself plays it: the audio before the cut is real and refusing it would lose it. A file with
no decodable audio at all is a 400.
"""

from __future__ import annotations

import io
import logging
import threading
from typing import Any

import av
import numpy as np

from services.common.errors import BadRequest

log = logging.getLogger(__name__)


class BadAudio(BadRequest):
    """The upload is not decodable audio; the message says why."""

    def __init__(self, message: str, param: str = "file") -> None:
        super().__init__(message, param=param, code="invalid_audio")


class AudioTooLong(BadRequest):
    def __init__(self, limit: float, param: str = "file") -> None:
        super().__init__(
            f"the audio is longer than the limit of {limit:.0f} seconds", param=param, code="audio_too_long"
        )


class _Reader(io.RawIOBase):
    """A seekable file over a buffer, without copying it (``io.BytesIO`` would)."""

    def __init__(self, data: memoryview) -> None:
        self.data, self.pos = data, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = max(0, min(len(buffer), len(self.data) - self.pos))
        buffer[:n] = self.data[self.pos : self.pos + n]
        self.pos += n
        return n

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.pos, io.SEEK_END: len(self.data)}[whence]
        self.pos = max(0, base + offset)
        return self.pos

    def tell(self) -> int:
        return self.pos


def decode(
    data: bytes | memoryview, max_seconds: float, rate: int, param: str = "file", cancel: threading.Event | None = None
) -> np.ndarray:
    """Mono float32 samples at ``rate``; ``AudioTooLong`` once more than ``max_seconds`` decoded."""
    view = memoryview(data)
    if len(view) == 0:
        raise BadAudio("the audio file is empty", param)
    try:
        container = av.open(_Reader(view), mode="r", metadata_errors="ignore")
    except (av.error.FFmpegError, ValueError, IndexError, StopIteration) as exc:
        log.info("undecodable upload: %s: %s", type(exc).__name__, exc)
        raise BadAudio("could not decode the audio file: FFmpeg does not recognise it as audio", param) from exc
    with container:
        if not container.streams.audio:
            raise BadAudio("the file holds no audio stream", param)
        declared = container.duration / av.time_base if container.duration else 0.0
        if declared > max_seconds * 1.05 + 1:  # the container says so up front (checked again while decoding)
            raise AudioTooLong(max_seconds, param)
        samples = _decode_stream(container, rate, param, max_seconds, cancel)
    if samples.size == 0:
        raise BadAudio("the audio file contains no audio samples", param)
    return samples


def _decode_stream(
    container: Any, rate: int, param: str, max_seconds: float, cancel: threading.Event | None
) -> np.ndarray:
    limit = int(max_seconds * rate)
    stream = container.streams.audio[0]
    resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
    chunks: list[np.ndarray] = []
    total = skipped = 0

    def take(frames: list[Any]) -> None:
        nonlocal total
        for frame in frames:
            chunk = frame.to_ndarray().reshape(-1)
            total += chunk.size
            if total > limit:
                raise AudioTooLong(max_seconds, param)
            chunks.append(chunk)

    try:
        for packet in container.demux(stream):
            if cancel is not None and cancel.is_set():
                break
            try:
                frames = packet.decode()
            except av.error.InvalidDataError:
                skipped += 1  # one damaged packet: FFmpeg skips it too
                continue
            for frame in frames:
                take(resampler.resample(frame))
    except (av.error.FFmpegError, ValueError) as exc:
        if not chunks:
            raise BadAudio("could not decode the audio file: it holds no decodable audio", param) from exc
        log.info("the upload ends early (%s): transcribing the %.1f s that decode", type(exc).__name__, total / rate)
    take(resampler.resample(None))
    if skipped:
        log.info("skipped %d damaged packet(s)", skipped)
    return np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
