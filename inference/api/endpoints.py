"""The JSON API's endpoints: health, liveness, readiness, prices and model reload."""

from __future__ import annotations

import hmac
import logging
from typing import Any

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import Response

from inference.api.bodies import Diamond
from inference.api.validate import parse_json, validate_columns
from inference.deadline import ModelTooSlow
from inference.errors import ReloadFailed, Unauthorized, hide_paths
from inference.holder import ModelHolder
from inference.loaded import LoadedModel
from inference.modelsettings import REPORT_ROUTE, ModelFileError, report_exists
from inference.rest.bodies import INLINE_BODY_BYTES, off_loop, read_body
from inference.rest.wire import json_response
from inference.serving import batcher_of, holder_of, loaded_or_503, serving_model, settings_of

log = logging.getLogger(__name__)


def model_info(model: LoadedModel) -> dict[str, Any]:
    s = model.settings
    recorded = (s.model_extra or {}).get("price_range")
    keys = ("level", "coverage", "mean_width")
    calibration = None
    if isinstance(recorded, dict) and all(isinstance(recorded.get(k), int | float) for k in keys):
        calibration = {k: recorded[k] for k in keys} if model.range_level is not None else None
    return {
        "name": s.name,
        "version": s.version,
        "mae": s.mae,
        "price_range": calibration,
        "sha256": s.sha256,
        "loaded_at": model.loaded_at,
    }


async def health(request: Request) -> Response:
    holder = holder_of(request)
    model = holder.current
    if model is None:
        body = {"status": "unavailable", "ready": False, "model": None, "reason": holder.unavailable_reason}
        return json_response(body, status_code=503)
    info = model_info(model)
    registry = settings_of(request).model_registry
    info["report"] = (
        REPORT_ROUTE.format(version=model.version)
        if await anyio.to_thread.run_sync(report_exists, registry, model.version)
        else None
    )
    return json_response({"status": "ok", "ready": True, "model": info, "reason": None})


async def live(request: Request) -> Response:
    return json_response({"status": "alive"})


async def ready(request: Request) -> Response:
    return await health(request)


def price_range(model: LoadedModel, values: list[float]) -> dict[str, float | None] | None:
    """``{"low", "high", "level"}`` from a row's output values, or None for a model without a range."""
    if model.range_level is None:
        return None
    return {"low": values[1], "high": values[2], "level": model.range_level}


def price_answer(model: LoadedModel, values: list[float]) -> dict[str, Any]:
    """The body of ``/diamond_price``'s 200, from the row's output values."""
    return {"price": values[0], "price_range": price_range(model, values), "model_version": model.version}


async def diamond_price(request: Request) -> Response:
    diamond = await parse_json(request, Diamond)
    model = serving_model(request)
    values = await batcher_of(request).price(model, diamond)
    request.state.rows = 1
    return json_response(price_answer(model, values))


async def diamond_prices(request: Request) -> Response:
    body = await read_body(request)
    args = (holder_of(request), body, settings_of(request).max_error_fields)
    model = holder_of(request).current
    if len(body) <= INLINE_BODY_BYTES and not (model is not None and model.speed.slow):
        try:
            rows, response = _price_batch(*args)
        except ModelTooSlow:  # stopped on the loop (a slow model, or a busy machine): once more, in a thread
            rows, response = await off_loop(request, _price_batch, *args)
    else:
        rows, response = await off_loop(request, _price_batch, *args)
    request.state.rows = rows
    return response


def _price_batch(holder: ModelHolder, body: bytes, limit: int) -> tuple[int, Response]:
    """Validate, price and serialize a batch: on the loop when small, else in one worker-thread hand-off."""
    features = validate_columns(body, limit)
    model = loaded_or_503(holder, holder.current)
    values = model.price(features)
    ranges = None
    if model.range_level is not None:  # built column-wise: one small dict per row is most of the JSON's cost
        level = model.range_level
        lows, highs = values[:, 1].tolist(), values[:, 2].tolist()
        ranges = [{"low": lo, "high": hi, "level": level} for lo, hi in zip(lows, highs, strict=True)]
    answer = {"prices": values[:, 0].tolist(), "price_ranges": ranges, "model_version": model.version}
    return len(values), json_response(answer)


def check_token(request: Request, token: str | None) -> None:
    """The bearer token, compared as UTF-8 bytes in constant time (headers arrive as raw bytes,
    which Starlette decodes as latin-1: encoding back gives the bytes the client sent)."""
    if token is None:
        return
    header = request.headers.get("authorization", "").encode("latin-1")
    scheme, _, given = header.partition(b" ")
    if scheme.lower() != b"bearer" or not hmac.compare_digest(given.strip(b" \t"), token.encode("utf-8")):
        raise Unauthorized("a valid 'Authorization: Bearer <token>' header is required")


async def update_model(request: Request) -> Response:
    check_token(request, settings_of(request).update_token)
    holder = holder_of(request)
    try:
        current, previous, changed = await holder.reload_async()
    except ModelFileError as exc:
        serving = holder.current
        log.error("model reload failed, still serving %s: %s", f"v{serving.version}" if serving else "nothing", exc)
        version = serving.version if serving else None
        raise ReloadFailed(f"model not updated: {hide_paths(str(exc))}", serving_version=version) from None
    status = "updated" if changed else "unchanged"
    body = {"status": status, "version": current.version, "previous_version": previous.version if previous else None}
    return json_response(body)
