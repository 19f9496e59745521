"""The gateway's Prometheus metrics (``speech_gateway_*``), one registry per app, fed by one record
per finished request (``RequestContext``). Label values come from fixed sets: a model id or format a
client made up is counted as ``other``."""

from __future__ import annotations

import functools
import logging

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector

from services.common.asgi import RequestRecord
from services.gateway.replicas import ReplicaSet

log = logging.getLogger("services.gateway.access")
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 80, 160, 320, 640)
FORMATS = {"json", "text", "srt", "vtt", "verbose_json", "diarized_json", "mp3", "opus", "aac", "flac", "wav", "pcm"}
QUIET = {"/healthz", "/readyz", "/metrics"}


class GatewayMetrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        ProcessCollector(registry=r)
        labels = ["route", "model", "response_format", "status"]
        self.requests = Counter(
            "speech_gateway_requests", "Requests by route, model, format and status", labels, registry=r
        )
        self.duration = Histogram(
            "speech_gateway_request_duration_seconds", "Total request time", ["route"], buckets=BUCKETS, registry=r
        )
        self.first_byte = Histogram(
            "speech_gateway_time_to_first_byte_seconds",
            "Time to the first body byte of streamed responses",
            ["route"],
            buckets=BUCKETS,
            registry=r,
        )
        self.audio_seconds = Counter(
            "speech_gateway_audio_seconds", "Audio transcribed or synthesised, in seconds", ["route"], registry=r
        )
        self.cancelled = Counter(
            "speech_gateway_requests_cancelled",
            "Requests and streams whose client left before the end",
            ["route"],
            registry=r,
        )
        self.bytes_in = Counter("speech_gateway_request_bytes", "Request body bytes", ["route"], registry=r)
        self.bytes_out = Counter("speech_gateway_response_bytes", "Response body bytes", ["route"], registry=r)
        self.in_flight = Gauge("speech_gateway_requests_in_flight", "Requests being served", registry=r)
        self.rerouted = Counter(
            "speech_gateway_rerouted",
            "Predictor requests a replica refused before working on them (busy, draining) and that went to another",
            ["backend", "reason"],
            registry=r,
        )
        self.replicas = Gauge(
            "speech_gateway_backend_replicas", "Predictor replicas the gateway sends to", ["backend"], registry=r
        )
        self.sessions = Gauge(
            "speech_gateway_websocket_sessions",
            "WebSocket sessions open (realtime transcription, speech streams)",
            ["route"],
            registry=r,
        )
        self.translation = Histogram(
            "speech_gateway_translation_seconds",
            "Realtime translation of a turn, from the end of its speech: transcribe, translate (the "
            "predictor's decodes), synthesize (translated text to first audio), first_audio (the whole way)",
            ["stage"],
            buckets=(0.1, 0.25, 0.5, 1, 2, 3, 5, 8, 13, 20, 30, 60),
            registry=r,
        )
        self.known_models: set[str] = set()  # filled from the model catalog

    def rerouted_request(self, backend: str, reason: str) -> None:
        self.rerouted.labels(backend, reason).inc()

    def watch_replicas(self, sets: dict[str, ReplicaSet]) -> None:
        """The number of replicas of each backend, read at scrape time."""
        for label, replica_set in sets.items():
            self.replicas.labels(label).set_function(functools.partial(_count, replica_set))

    def observe(self, record: RequestRecord) -> None:
        """One finished request: the metrics, then one access-log line (no content, no secrets)."""
        fields, route = record.fields, record.route
        model = fields.get("model")
        model_label = model if model in self.known_models else ("none" if model is None else "other")
        fmt = fields.get("response_format")
        fmt_label = fmt if fmt in FORMATS else ("none" if fmt is None else "other")
        status = str(record.status or 499)
        if route not in QUIET:
            self.requests.labels(route, model_label, fmt_label, status).inc()
            self.duration.labels(route).observe(record.seconds)
            self.bytes_in.labels(route).inc(record.bytes_in)
            self.bytes_out.labels(route).inc(record.bytes_out)
            if fields.get("stream") and record.first_byte is not None:
                self.first_byte.labels(route).observe(record.first_byte)
            if fields.get("audio_seconds"):
                self.audio_seconds.labels(route).inc(float(fields["audio_seconds"]))
            if fields.get("cancelled"):
                self.cancelled.labels(route).inc()
        level = logging.DEBUG if route in QUIET and record.status < 400 else logging.INFO
        log.log(
            level,
            "%s %s %s model=%s format=%s %.3f s%s",
            record.method,
            record.path,
            status,
            model_label,
            fmt_label,
            record.seconds,
            " (client left)" if fields.get("cancelled") else "",
            extra={
                "fields": {
                    "method": record.method,
                    "route": route,
                    "status": int(status),
                    "model": model_label,
                    "duration_s": round(record.seconds, 4),
                }
            },
        )


def _count(replica_set: ReplicaSet) -> float:
    return float(len(replica_set.replicas))
