"""Prometheus metrics of one predictor (``speech_asr_*`` or ``speech_tts_*``), in a registry of its
own. Every label value comes from a fixed set or from the operator's settings, never from a client."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from services.common.device import accelerator_memory

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 80, 160, 320, 640)
RTF_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 4, 8)


class _Live(Collector):
    """Gauges read at scrape time: queue, models loaded, accelerator memory."""

    def __init__(self, prefix: str, read: Callable[[], dict]) -> None:
        self.prefix, self.read = prefix, read

    def collect(self) -> Iterator[GaugeMetricFamily]:
        state = self.read()
        yield GaugeMetricFamily(f"{self.prefix}_queue_depth", "Requests waiting for a place", value=state["waiting"])
        yield GaugeMetricFamily(f"{self.prefix}_active_requests", "Requests being worked on", value=state["active"])
        yield GaugeMetricFamily(  # what a queue-depth autoscaler reads (the chart's KEDA ScaledObject)
            f"{self.prefix}_load",
            "Requests in the predictor: worked on and waiting",
            value=state["active"] + state["waiting"],
        )
        loaded = GaugeMetricFamily(f"{self.prefix}_model_loaded", "1 while the model is loaded", labels=["model"])
        for name, is_loaded in state["models"].items():
            loaded.add_metric([name], 1.0 if is_loaded else 0.0)
        yield loaded
        memory = GaugeMetricFamily(
            f"{self.prefix}_accelerator_memory_bytes", "GPU memory held by torch", labels=["device", "kind"]
        )
        for key, value in accelerator_memory().items():
            device, kind = key.rsplit(":", 1)
            memory.add_metric([device, kind], value)
        yield memory


class PredictorMetrics:
    def __init__(self, service: str) -> None:
        p = f"speech_{service}"
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        r = self.registry
        self.requests = Counter(
            f"{p}_requests", "Inference requests by route and status", ["route", "status"], registry=r
        )
        self.duration = Histogram(
            f"{p}_request_duration_seconds",
            "Inference request time, queue included",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_wait = Histogram(
            f"{p}_queue_wait_seconds", "Time admitted requests waited for a place", buckets=LATENCY_BUCKETS, registry=r
        )
        self.rejected = Counter(f"{p}_rejected", "Requests refused before any work", ["reason"], registry=r)
        self.cancelled = Counter(
            f"{p}_cancelled", "Requests whose client left before the answer was complete", ["route"], registry=r
        )
        self.work_stopped = Counter(f"{p}_work_stopped", "Model work stopped early because its client left", registry=r)
        self.stage = Histogram(
            f"{p}_stage_seconds", "Time per processing stage", ["stage"], buckets=LATENCY_BUCKETS, registry=r
        )
        self.audio_seconds = Counter(f"{p}_audio_seconds", "Seconds of audio transcribed or synthesised", registry=r)
        self.rtf = Histogram(
            f"{p}_real_time_factor", "Processing time / audio duration per request", buckets=RTF_BUCKETS, registry=r
        )
        self.loads = Counter(f"{p}_model_loads", "Model loads", ["model"], registry=r)
        self.load_seconds = Histogram(
            f"{p}_model_load_seconds", "Model load time", ["model"], buckets=LATENCY_BUCKETS, registry=r
        )
        self.unloads = Counter(f"{p}_model_unloads", "Model unloads", ["model"], registry=r)
        self.bytes_in = Counter(f"{p}_request_bytes", "Request body bytes read", registry=r)
        self.bytes_out = Counter(f"{p}_response_bytes", "Response body bytes sent", registry=r)
        self.prefix = p

    def watch(self, read: Callable[[], dict]) -> None:
        """Register the scrape-time gauges (``read`` returns waiting, active and models)."""
        self.registry.register(_Live(self.prefix, read))

    # LifecycleObserver
    def loaded(self, name: str, seconds: float) -> None:
        self.loads.labels(name).inc()
        self.load_seconds.labels(name).observe(seconds)

    def unloaded(self, name: str) -> None:
        self.unloads.labels(name).inc()

    def work_done(self, audio_seconds: float, processing_seconds: float) -> None:
        if audio_seconds > 0:
            self.audio_seconds.inc(audio_seconds)
            self.rtf.observe(processing_seconds / audio_seconds)
