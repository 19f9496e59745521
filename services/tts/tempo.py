"""Pitch-preserving speed change with FFmpeg's ``atempo`` filter (PyAV), for models with no speed knob."""

from __future__ import annotations

import av
import numpy as np


def atempo_chain(speed: float) -> list[float]:
    """``atempo`` takes 0.5..2.0 per instance; chain instances for 0.25..4.0."""
    factors = []
    while speed > 2.0:
        factors.append(2.0)
        speed /= 2.0
    while speed < 0.5:
        factors.append(0.5)
        speed /= 0.5
    return [*factors, speed]


def change_speed(samples: np.ndarray, sample_rate: int, speed: float) -> np.ndarray:
    if abs(speed - 1.0) < 1e-6 or samples.size == 0:
        return samples
    graph = av.filter.Graph()
    node = graph.add_abuffer(format="flt", sample_rate=sample_rate, layout="mono")
    source = node
    for factor in atempo_chain(speed):
        nxt = graph.add("atempo", f"{factor:.6f}")
        node.link_to(nxt)
        node = nxt
    sink = graph.add("abuffersink")
    node.link_to(sink)
    graph.configure()
    frame = av.AudioFrame.from_ndarray(samples.astype(np.float32).reshape(1, -1), format="flt", layout="mono")
    frame.sample_rate = sample_rate
    frame.pts = 0
    source.push(frame)
    source.push(None)
    out = []
    while True:
        try:
            out.append(sink.pull().to_ndarray().reshape(-1))  # type: ignore[attr-defined]
        except (av.error.BlockingIOError, av.error.EOFError):
            break
    return np.concatenate(out).astype(np.float32) if out else np.zeros(0, np.float32)
