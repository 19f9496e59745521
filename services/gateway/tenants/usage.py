"""Usage per key name: Prometheus counters (labels bounded by the configured keys: a name no longer
configured keeps its series until a restart; never a key) for requests, audio seconds, characters and
errors, and the store's failures."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter

from services.common.asgi import RequestRecord


class KeyUsage:
    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.requests = Counter(
            "speech_gateway_key_requests", "Requests per API key name", ["key", "route"], registry=r
        )
        self.audio_seconds = Counter(
            "speech_gateway_key_audio_seconds", "Audio transcribed or translated per API key name", ["key"], registry=r
        )
        self.characters = Counter(
            "speech_gateway_key_characters", "Characters of text spoken per API key name", ["key"], registry=r
        )
        self.errors = Counter(
            "speech_gateway_key_errors", "Answers of 400 or more per API key name", ["key", "status"], registry=r
        )
        self.store_errors = Counter(
            "speech_gateway_quota_store_errors", "Quota store calls that failed (see GATEWAY_QUOTA_STORE_FAILURE)",
            registry=r,
        )  # fmt: skip

    def observe(self, record: RequestRecord) -> None:
        key = record.fields.get("key")
        if key is None:
            return
        self.requests.labels(key, record.route).inc()
        if record.status >= 400:
            self.errors.labels(key, str(record.status)).inc()

    def spent(self, key: str, *, audio_seconds: float | None = None, characters: int | None = None) -> None:
        """Counted when charged (HTTP requests and WebSocket sessions alike)."""
        if audio_seconds:
            self.audio_seconds.labels(key).inc(float(audio_seconds))
        if characters:
            self.characters.labels(key).inc(int(characters))
