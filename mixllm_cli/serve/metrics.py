"""The service's Prometheus metrics."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from prometheus_client.core import GaugeMetricFamily

    from .service import Service


class Metrics:
    """Prometheus metrics in a registry of the service's own (several apps can live in one process)."""

    def __init__(self, service: Service):
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.registry = CollectorRegistry()
        r = self.registry
        self._routed = Counter("mixllm_routed", "Queries routed, by chosen LLM", ["llm"], registry=r)
        self._feedback = Counter("mixllm_feedback", "Feedback events, by result", ["status"], registry=r)
        buckets = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5)
        self.route_latency = Histogram("mixllm_route_latency_seconds", "Time to answer /v1/route",
                                       buckets=buckets, registry=r)
        self._batch = Histogram("mixllm_route_batch_queries", "Queries per encoder batch",
                                buckets=(1, 2, 4, 8, 16, 32, 64), registry=r)
        self.upstream_latency = Histogram("mixllm_upstream_latency_seconds", "Chat completions: upstream call time",
                                          ["llm"], buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120),
                                          registry=r)
        self.upstream_tokens = Counter("mixllm_upstream_tokens", "Chat completions: tokens reported by upstream",
                                       ["llm", "kind"], registry=r)
        self._upstream_failures = Counter("mixllm_upstream_failures", "Chat completions: upstream attempts that "
                                          "failed", ["llm"], registry=r)
        self.upstream_cost = Counter("mixllm_upstream_cost_usd", "Chat completions: catalogue cost of the calls",
                                     ["llm"], registry=r)
        self._refused = Counter("mixllm_auth_refused", "Requests refused by the API-key check, by reason "
                                "(missing_api_key, invalid_api_key, rate_limit_exceeded, budget_exceeded, "
                                "store_unavailable)", ["reason"], registry=r)
        r.register(_QueueDepth(service))

    def routed(self, llm: str) -> None:
        self._routed.labels(llm).inc()

    def upstream_failure(self, llm: str) -> None:
        self._upstream_failures.labels(llm).inc()

    def refused(self, reason: str) -> None:
        self._refused.labels(reason).inc()

    def upstream_call(self, llm: str, seconds: float, prompt: int | None, completion: int | None,
                      cost: float | None) -> None:
        """One chat completion the upstream answered: its time, tokens and catalogue cost."""
        self.upstream_latency.labels(llm).observe(seconds)
        if prompt is not None:
            self.upstream_tokens.labels(llm, "prompt").inc(prompt)
        if completion is not None:
            self.upstream_tokens.labels(llm, "completion").inc(completion)
        if cost is not None:
            self.upstream_cost.labels(llm).inc(cost)

    def feedback(self, status: str) -> None:
        self._feedback.labels(status).inc()

    def batch(self, n: int) -> None:
        self._batch.observe(n)

    def render(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self.registry)


class _QueueDepth:
    """The shared queue's open calls per LLM, read from the store at scrape time (every replica's calls)."""

    def __init__(self, service: Service):
        self.service = service

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from prometheus_client.core import GaugeMetricFamily

        g = GaugeMetricFamily("mixllm_queue_depth", "Calls admitted and not finished, by LLM (shared "
                              "state: every replica's calls)", labels=["llm"])
        depth = self.service.store("read").open_calls(time.time())
        for llm in self.service.router.llm_ids:
            g.add_metric([llm], depth.get(llm, 0))
        yield g
