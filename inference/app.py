"""The application factory: routes, lifespan, middleware and error handlers, from settings."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from inference.api.fast import FastPrice
from inference.batching import RowBatcher
from inference.config import Settings
from inference.drift import DriftMonitor, DriftSettings
from inference.holder import ModelHolder
from inference.loaded import LoadedModel
from inference.modelsettings import ModelFileError
from inference.pages.calculator import PublishedModel, calculator_routes
from inference.pages.docs import docs_routes
from inference.rest.handlers import EXCEPTION_HANDLERS
from inference.rest.hot import HotRoutes
from inference.rest.limits import BodyLimits
from inference.rest.metrics import Metrics, MetricsMiddleware, multiprocess_dir
from inference.rest.openapi import build_openapi
from inference.rest.wire import json_response
from inference.routes import HOT, OPERATIONS
from inference.watcher import watch_settings

log = logging.getLogger(__name__)

TITLE = "diamond-price"
API_VERSION = "1.0.0"
GIL_SWITCH_SECONDS = 0.001
"""How often a thread holding the GIL yields it (see the lifespan)."""
DESCRIPTION = (
    "Prices diamonds from carat, cut, color and clarity with the current ONNX model. "
    'Every error is JSON: `{"error": "..."}`, with `fields` listing each invalid field on 422.'
)


def create_app(settings: Settings | None = None) -> Starlette:
    """Build the ASGI app. ``settings`` defaults to :meth:`Settings.from_env`."""
    settings = settings or Settings.from_env()
    # The pricing routes and liveness first: Starlette tries routes in order, one regex each.
    hot = sorted(OPERATIONS, key=lambda op: op.method != "post" and op.path != "/health/live")
    routes: list[BaseRoute] = [op.route() for op in hot]
    routes += docs_routes(settings.static_dir)
    routes += calculator_routes(settings.calculator_dir)

    spec = build_openapi(OPERATIONS, title=TITLE, version=API_VERSION, description=DESCRIPTION)

    async def openapi(request: Request) -> Response:
        return json_response(spec)

    routes.append(Route("/openapi.json", openapi, methods=["GET"], include_in_schema=False))
    drift = DriftMonitor(
        DriftSettings(settings.drift_window_rows, settings.drift_window_seconds, settings.drift_min_rows),
        None if multiprocess_dir() is None else Path(str(multiprocess_dir())),
    )
    metrics = Metrics([drift])
    routes.append(Route("/metrics", metrics.endpoint, methods=["GET"], include_in_schema=False))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        holder: ModelHolder = app.state.holder
        try:  # bounded by LOAD_TIMEOUT: a model that never loads cannot keep the port closed
            await holder.reload_async()
        except Exception as exc:  # a bad model file, whatever the cause: serve 503 with the reason, never exit
            if not isinstance(exc, ModelFileError):
                exc = ModelFileError(f"{type(exc).__name__}: {exc}")
            holder.last_error = str(exc)
            log.error("no model loaded at start-up (%s); answering 503 until a valid model appears", exc)
        # Large bodies are validated in worker threads; a 1 ms GIL switch interval (Python's default
        # is 5 ms) lets the event loop answer in between (tests/rest/test_hostile.py holds the p99).
        sys.setswitchinterval(GIL_SWITCH_SECONDS)
        # Start-up objects live as long as the process: frozen, a full collection walks request
        # garbage only (its cost in the tail latency: docs/benchmarks.md).
        gc.collect()
        gc.freeze()
        watcher = (
            asyncio.create_task(watch_settings(holder, settings.reload_interval)) if settings.auto_reload else None
        )
        try:
            yield {}
        finally:
            if watcher is not None:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher
            metrics.close()
            drift.close()

    app = Starlette(
        routes=routes,
        middleware=[
            Middleware(
                FastPrice,
                metrics=metrics,
                handlers=EXCEPTION_HANDLERS,
                max_body_bytes=settings.max_body_bytes,
                max_error_fields=settings.max_error_fields,
            ),
            Middleware(MetricsMiddleware, metrics=metrics),
            Middleware(
                BodyLimits,
                max_bytes=settings.max_body_bytes,
                timeout=settings.body_timeout,
                buffer_bytes=settings.body_buffer_bytes,
            ),
            Middleware(HotRoutes, operations=HOT, handlers=EXCEPTION_HANDLERS),
        ],
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=lifespan,
    )
    app.state.settings = settings

    def on_load(outcome: str, seconds: float, model: LoadedModel | None) -> None:
        metrics.on_load(outcome, seconds, model)
        drift.on_load(outcome, seconds, model)

    app.state.holder = ModelHolder(
        settings.model_settings,
        settings.model_registry,
        on_load=on_load,
        on_priced=drift.observe,
        max_model_bytes=settings.max_model_bytes,
        load_timeout=settings.load_timeout,
        predict_timeout=settings.predict_timeout,
    )
    app.state.drift = drift
    app.state.batcher = RowBatcher()
    app.state.published_model = PublishedModel()
    app.state.openapi = spec
    return app
