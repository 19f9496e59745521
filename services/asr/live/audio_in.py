"""A live session's input audio to what the model takes: PCM16 at 24 kHz, G.711 mu-law or A-law at
8 kHz (the gateway forwards the client's bytes as they came), each resampled (PyAV, stateful per
session) to 16 kHz mono float32 as it arrives."""

from __future__ import annotations

import av
import numpy as np

from services.common.live_wire import INPUT_RATES, RATE


def _mulaw_table() -> np.ndarray:
    codes = ~np.arange(256, dtype=np.int32) & 0xFF
    sign, exponent, mantissa = codes & 0x80, (codes >> 4) & 0x07, codes & 0x0F
    magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84
    return np.where(sign, -magnitude, magnitude).astype(np.int16)


def _alaw_table() -> np.ndarray:
    codes = np.arange(256, dtype=np.int32) ^ 0x55
    sign, exponent, mantissa = codes & 0x80, (codes >> 4) & 0x07, codes & 0x0F
    magnitude = np.where(exponent == 0, (mantissa << 4) + 8, ((mantissa << 4) + 0x108) << np.maximum(exponent - 1, 0))
    return np.where(sign, magnitude, -magnitude).astype(np.int16)


G711 = {"audio/pcmu": _mulaw_table(), "audio/pcma": _alaw_table()}


class BadAudioChunk(ValueError):
    pass


class InputAudio:
    """Bytes of one format in, 16 kHz float32 out; a new format starts a new resampler."""

    def __init__(self, fmt: str) -> None:
        self.format = fmt
        self.rate = INPUT_RATES[fmt]
        self.resampler = av.AudioResampler(format="flt", layout="mono", rate=RATE)

    def pcm16(self, data: bytes) -> np.ndarray:
        if self.format in G711:
            return G711[self.format][np.frombuffer(data, dtype=np.uint8)]
        if len(data) % 2:
            raise BadAudioChunk("audio/pcm audio is 16-bit: an odd number of bytes cannot be PCM16")
        return np.frombuffer(data, dtype="<i2")

    def convert(self, data: bytes) -> np.ndarray:
        samples = self.pcm16(data)
        if samples.size == 0:
            return np.zeros(0, np.float32)
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1).astype(np.int16), format="s16", layout="mono")
        frame.sample_rate = self.rate
        out = [f.to_ndarray().reshape(-1) for f in self.resampler.resample(frame)]
        return np.concatenate(out).astype(np.float32) if out else np.zeros(0, np.float32)
