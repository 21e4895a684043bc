"""Prometheus metrics of one server (its own registry, so several servers can live in one process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_LATENCY = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
_RETRIEVAL = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)


class ServeMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("tuneloom_requests", "Requests by endpoint and status code.", ["endpoint", "status"], registry=r)
        self.latency = Histogram(
            "tuneloom_request_latency_seconds", "Request latency, end to end.", ["endpoint"], buckets=_LATENCY, registry=r
        )
        self.ttft = Histogram(
            "tuneloom_time_to_first_token_seconds",
            "Time from arrival to the first generated token.",
            buckets=_LATENCY,
            registry=r,
        )
        self.tokens_per_s = Histogram(
            "tuneloom_generation_tokens_per_second",
            "Generated tokens per second, per request.",
            buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000),
            registry=r,
        )
        self.generated = Counter("tuneloom_generated_tokens", "Generated tokens.", registry=r)
        self.queue_depth = Gauge("tuneloom_queue_depth", "Sequences waiting for a batch slot.", registry=r)
        self.running = Gauge("tuneloom_running_sequences", "Sequences in the running batch.", registry=r)
        self.batch_size = Histogram(
            "tuneloom_batch_size", "Sequences per decode step.", buckets=(1, 2, 4, 8, 16, 32, 64), registry=r
        )
        self.adapter_cache = Counter(
            "tuneloom_adapter_cache", "Adapter lookups: hit (loaded) or miss (loaded now).", ["result"], registry=r
        )
        self.adapter_evictions = Counter(
            "tuneloom_adapter_evictions", "Adapters unloaded to stay in the memory budget.", registry=r
        )
        self.retrieval_latency = Histogram(
            "tuneloom_retrieval_latency_seconds",
            "Knowledge-base search time per request (query embedding, dense + keyword search, fusion).",
            ["knowledge"],
            buckets=_RETRIEVAL,
            registry=r,
        )
        self.knowledge_reloads = Counter(
            "tuneloom_knowledge_reloads",
            "Knowledge bases opened: first open, reloaded after a new build, or failed.",
            ["knowledge", "result"],
            registry=r,
        )
        self.rejected = Counter(
            "tuneloom_rejected", "Requests turned away: overloaded, too large, unauthorised.", ["reason"], registry=r
        )

    def on_step(self, running: int, waiting: int) -> None:
        if running:
            self.batch_size.observe(running)
        self.running.set(running)
        self.queue_depth.set(waiting)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
