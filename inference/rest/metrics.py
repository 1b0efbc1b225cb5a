"""Prometheus metrics, right across N worker processes.

With ``PROMETHEUS_MULTIPROC_DIR`` any worker's ``/metrics`` reports the totals of all; without it
(in-process tests), a registry private to the app."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

if TYPE_CHECKING:
    from inference.loaded import LoadedModel

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})
"""The method label's values; any other method a client sends is counted as ``other``."""
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class Metrics:
    def __init__(self, collectors: Sequence[Collector] = ()) -> None:
        """``collectors``: more metrics computed at each scrape (input drift), in either mode."""
        self.multiprocess = multiprocess_dir() is not None
        self.collectors = tuple(collectors)
        # In multiprocess mode samples go to files, and a fresh registry collects them per scrape.
        self.registry = None if self.multiprocess else CollectorRegistry()
        if self.registry is not None:
            for collector in self.collectors:
                self.registry.register(collector)
        reg = self.registry
        self.requests = Counter(
            "diamond_http_requests",
            "HTTP requests by route template, method and status.",
            ["route", "method", "status"],
            registry=reg,
        )
        self.latency = Histogram(
            "diamond_http_request_duration_seconds",
            "Time from request start to the end of the response, by route.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=reg,
        )
        self.rows = Counter("diamond_predicted_rows", "Rows priced, over every prediction route.", registry=reg)
        self.model_info = Gauge(
            "diamond_model_info",
            "1 for the model version a live worker serves (labels: version, sha256).",
            ["version", "sha256"],
            multiprocess_mode="livemax",
            registry=reg,
        )
        self.reloads = Counter(
            "diamond_model_reloads",
            "Model load attempts by outcome (success, unchanged, failure).",
            ["outcome"],
            registry=reg,
        )
        self.load_seconds = Histogram(
            "diamond_model_load_seconds",
            "Time to read, verify and open a model.",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
            registry=reg,
        )
        self._serving: tuple[str, str] | None = None
        self._per_request: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        """Count and time one request; label lookups are cached (they cost more than the update)."""
        key = (route, method, status)
        children = self._per_request.get(key)
        if children is None:
            children = (self.requests.labels(route, method, str(status)), self.latency.labels(route))
            self._per_request[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def on_load(self, outcome: str, seconds: float, model: LoadedModel | None) -> None:
        """Listener for :class:`inference.holder.ModelHolder`."""
        self.reloads.labels(outcome).inc()
        if outcome == "failure":
            return
        self.load_seconds.observe(seconds)
        if model is None:
            return
        labels = (str(model.version), model.sha256)
        if labels != self._serving:
            if self._serving is not None:
                self.model_info.labels(*self._serving).set(0)
            self.model_info.labels(*labels).set(1)
            self._serving = labels

    def exposition(self) -> bytes:
        if self.multiprocess:
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            for collector in self.collectors:
                registry.register(collector)
            return generate_latest(registry)
        assert self.registry is not None
        return generate_latest(self.registry)

    def close(self) -> None:
        """This process is going away: drop its live gauges from the aggregate."""
        if self.multiprocess:
            multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]

    async def endpoint(self, request: Request) -> Response:
        return Response(self.exposition(), media_type=CONTENT_TYPE_LATEST)


class MetricsMiddleware:
    """Counts every request by its route template (never the raw path) and times it."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            # Every label from a closed set: route templates, known methods, statuses this app sends.
            template = getattr(scope.get("route"), "path", None) or "unmatched"
            method = scope["method"] if scope["method"] in METHODS else "other"
            status = status if 100 <= status <= 599 else 500
            self.metrics.observe_request(template, method, status, time.perf_counter() - started)
            rows = scope.get("state", {}).get("rows")
            if rows:
                self.metrics.rows.inc(rows)
