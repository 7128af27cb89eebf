"""Prometheus metrics of one app, in the app's own registry.

A registry per app (not prometheus_client's global one) lets a process build several apps, as the
tests do, without "duplicated timeseries" errors, and /metrics shows only this app's numbers.
"""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from llmneo.serve.batching import BatchStats

__all__ = ["CONTENT_TYPE_LATEST", "ServeMetrics"]

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class ServeMetrics:
    """The service's counters and histograms; `render()` is the /metrics body."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "llmneo_http_requests",
            "HTTP requests by route template, method and status code.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.request_latency = Histogram(
            "llmneo_http_request_duration_seconds",
            "Time from request to response, by route template.",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "llmneo_batch_size_texts", "Texts per forward pass.", buckets=_BATCH_BUCKETS, registry=self.registry
        )
        self.batch_requests = Histogram(
            "llmneo_batch_size_requests",
            "Requests gathered into one forward pass.",
            buckets=_BATCH_BUCKETS,
            registry=self.registry,
        )
        self.model_seconds = Histogram(
            "llmneo_model_seconds", "Time of one forward pass.", buckets=_LATENCY_BUCKETS, registry=self.registry
        )
        self.queue_seconds = Histogram(
            "llmneo_queue_seconds",
            "Wait of a batch's oldest request before its forward pass.",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.predictions = Counter(
            "llmneo_predictions", "Predicted labels.", ["label"], registry=self.registry
        )
        self.shed = Counter(
            "llmneo_shed_requests", "Requests answered 503 because too many texts were queued.",
            registry=self.registry,
        )
        self.ready = Gauge("llmneo_ready", "1 while the model is loaded and requests are accepted.",
                           registry=self.registry)

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(route=route, method=method, status=str(status)).inc()
        self.request_latency.labels(route=route).observe(seconds)

    def observe_batch(self, stats: BatchStats) -> None:
        self.batch_size.observe(stats.texts)
        self.batch_requests.observe(stats.requests)
        self.model_seconds.observe(stats.model_seconds)
        self.queue_seconds.observe(stats.queue_seconds)

    def observe_labels(self, labels: list[str]) -> None:
        for label in labels:
            self.predictions.labels(label=label).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
