"""The ASR predictor's metrics: the shared set plus the segment batcher's."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

from services.common.predictor_metrics import PredictorMetrics


class AsrMetrics(PredictorMetrics):
    def __init__(self, service: str) -> None:
        super().__init__(service)
        p, r = f"speech_{service}", self.registry
        self.batch_segments = Histogram(
            f"{p}_batch_segments",
            "Segments decoded per batcher dispatch",
            buckets=(1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64),
            registry=r,
        )
        self.batch_groups = Histogram(
            f"{p}_batch_groups",
            "CTranslate2 call groups per dispatch (decoding settings that cannot share a call)",
            buckets=(1, 2, 3, 4, 6, 8),
            registry=r,
        )
        self.segment_wait = Histogram(
            f"{p}_segment_queue_wait_seconds",
            "Time a segment waited for the batcher",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=r,
        )
        self.fallback_decodes = Counter(
            f"{p}_fallback_decodes",
            "Segment decodes redone at a higher temperature "
            "because the last one looked failed (too repetitive or too unlikely)",
            ["temperature"],
            registry=r,
        )

        self.live_decodes = Counter(
            f"{p}_live_decodes", "Decodes of live sessions' turns (partial: while speech goes on)", ["kind"], registry=r
        )
        self.live_audio = Counter(
            f"{p}_live_decoded_audio_seconds", "Audio seconds decoded for live sessions", ["kind"], registry=r
        )

    def live_decoded(self, kind: str, seconds: float) -> None:
        self.live_decodes.labels(kind).inc()
        self.live_audio.labels(kind).inc(seconds)

    def redecoded(self, temperature: float, segments: int) -> None:
        self.fallback_decodes.labels(f"{temperature:.1f}").inc(segments)

    def dispatched(self, segments: int, groups: int, waits: list[float]) -> None:
        self.batch_segments.observe(segments)
        self.batch_groups.observe(groups)
        for seconds in waits:
            self.segment_wait.observe(seconds)
