"""Encode PCM into OpenAI's speech formats with PyAV, chunk by chunk as audio is produced.

``AudioEncoder.feed`` returns the bytes the muxer has written so far, so a streamed response can
send them at once. Whole responses use a seekable buffer, so containers get their final headers
(WAV sizes, FLAC total length). Every format is resampled to one output rate (OpenAI: 24 kHz).
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass, field
from typing import Any, cast

import av
import numpy as np
from av.audio.stream import AudioStream


@dataclass(frozen=True)
class Format:
    container: str
    codec: str
    sample_format: str
    content_type: str
    options: dict[str, str] = field(default_factory=dict)


FORMATS: dict[str, Format] = {
    "mp3": Format("mp3", "libmp3lame", "s16p", "audio/mpeg"),
    # Ogg holds about 1 s per page by default; 20 ms pages let streamed opus leave at once.
    "opus": Format("ogg", "libopus", "s16", "audio/ogg", {"page_duration": "20000"}),
    "aac": Format("adts", "aac", "fltp", "audio/aac"),
    "flac": Format("flac", "flac", "s16", "audio/flac"),
    "wav": Format("wav", "pcm_s16le", "s16", "audio/wav"),
    "pcm": Format("s16le", "pcm_s16le", "s16", "audio/pcm"),
}


def content_type(fmt: str) -> str:
    return FORMATS[fmt].content_type


class _StreamSink(io.RawIOBase):
    """A non-seekable file the muxer writes into and the response drains."""

    def __init__(self) -> None:
        self.buf = bytearray()

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def write(self, data: Any) -> int:
        self.buf += data
        return len(data)

    def drain(self) -> bytes:
        out = bytes(self.buf)
        self.buf.clear()
        return out


def streaming_wav_header(rate: int) -> bytes:
    """RIFF header for a WAV of unknown length (sizes 0xFFFFFFFF, as streaming servers send)."""
    unknown = 0xFFFFFFFF
    fmt_chunk = struct.pack("<4sIHHIIHH", b"fmt ", 16, 1, 1, rate, rate * 2, 2, 16)
    return struct.pack("<4sI4s", b"RIFF", unknown, b"WAVE") + fmt_chunk + struct.pack("<4sI", b"data", unknown)


class AudioEncoder:
    def __init__(self, fmt: str, in_rate: int, out_rate: int, streaming: bool) -> None:
        self.spec = FORMATS[fmt]
        self.fmt, self.in_rate, self.out_rate, self.streaming = fmt, in_rate, out_rate, streaming
        self._resampler = av.AudioResampler(format=self.spec.sample_format, layout="mono", rate=out_rate)
        self._pts = 0
        self._raw = fmt == "pcm" or (fmt == "wav" and streaming)
        self._pending = streaming_wav_header(out_rate) if fmt == "wav" and streaming else b""
        if not self._raw:
            self._sink = _StreamSink() if streaming else io.BytesIO()
            self._out = av.open(self._sink, mode="w", format=self.spec.container, options=self.spec.options)
            self._stream = cast(AudioStream, self._out.add_stream(self.spec.codec, rate=out_rate, layout="mono"))

    def _frames(self, samples: np.ndarray | None) -> list[av.AudioFrame]:
        if samples is None:
            return self._resampler.resample(None)
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(samples, dtype=np.float32).reshape(1, -1), format="flt", layout="mono"
        )
        frame.sample_rate = self.in_rate
        return self._resampler.resample(frame)

    def _encode(self, frames: list[av.AudioFrame]) -> bytes:
        if self._raw:
            return b"".join(bytes(f.planes[0])[: f.samples * 2] for f in frames)
        for frame in frames:
            frame.pts = self._pts
            self._pts += frame.samples
            for packet in self._stream.encode(frame):
                self._out.mux(packet)
        return self._drain()

    def _drain(self) -> bytes:
        return self._sink.drain() if isinstance(self._sink, _StreamSink) else b""

    def feed(self, samples: np.ndarray) -> bytes:
        head, self._pending = self._pending, b""
        return head + self._encode(self._frames(np.clip(samples, -1.0, 1.0)))

    def finish(self) -> bytes:
        head, self._pending = self._pending, b""
        tail = head + self._encode(self._frames(None))
        if self._raw:
            return tail
        for packet in self._stream.encode(None):
            self._out.mux(packet)
        self._out.close()
        if isinstance(self._sink, _StreamSink):
            return tail + self._sink.drain()
        return self._sink.getvalue()


def encode_whole(samples: np.ndarray, in_rate: int, fmt: str, out_rate: int) -> bytes:
    encoder = AudioEncoder(fmt, in_rate, out_rate, streaming=False)
    return encoder.feed(samples) + encoder.finish()
