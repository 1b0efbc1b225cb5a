"""``GET /models/{version}/drift``: the serving model's input drift as JSON, with expected and observed
shares per bin, so an operator sees which bins moved, not only that something did."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field
from starlette.requests import Request
from starlette.responses import Response

from inference.drift import DriftMonitor
from inference.errors import NotFound
from inference.pages.reports import parse_version
from inference.rest.openapi import Error, Operation, version_parameter
from inference.rest.wire import json_response
from inference.serving import serving_model

PATH = "/models/{version}/drift"


class DriftFeature(BaseModel):
    psi: float | None = Field(description="Population stability index against the baseline; null: too few rows.")
    status: Literal["stable", "watch", "act", "too few rows"]
    expected: dict[str, float] = Field(description="Bin -> share of the training rows.")
    observed: dict[str, float | None] = Field(description="Bin -> share of the window's rows.")


class DriftWindow(BaseModel):
    max_rows: int = Field(description="DRIFT_WINDOW_ROWS (0: drift tracking is off).")
    max_seconds: float = Field(description="DRIFT_WINDOW_SECONDS.")
    min_rows: int = Field(description="DRIFT_MIN_ROWS: rows needed before a PSI is reported.")
    rows: int | None = Field(description="Rows priced in the window, over every worker; null without a baseline.")
    since: float | None = Field(description="Start of the window's oldest slot, in Unix seconds.")
    workers: int | None = Field(description="Workers whose counts the window sums.")


class DriftView(BaseModel):
    """Input drift of the serving model: the window and each feature's PSI against the training baseline."""

    version: int
    baseline: bool = Field(description="False when the model carries no usable baseline: no drift is reported.")
    thresholds: dict[str, float] = Field(description="watch and act: the PSI levels of docs/drift.md.")
    window: DriftWindow
    features: dict[str, DriftFeature]


async def model_drift(request: Request) -> Response:
    version = parse_version(request.path_params["version"])
    model = serving_model(request)
    if version != model.version:
        raise NotFound(f"version {version} is not serving (v{model.version} is); drift is measured for it alone")
    monitor: DriftMonitor = request.app.state.drift
    return json_response({"version": model.version, **monitor.view()}, headers={"Cache-Control": "no-store"})


OPERATION = Operation(
    PATH,
    "get",
    model_drift,
    "Input drift of the serving model against its training baseline",
    "models",
    {
        200: ("The drift window and each feature's PSI", DriftView),
        404: ("Not the serving version", Error),
        503: ("No model is loaded", Error),
    },
    description="Per feature, the population stability index of the rows priced lately (the last "
    "DRIFT_WINDOW_ROWS rows, at most DRIFT_WINDOW_SECONDS old, over every worker) against the training rows' "
    "shares that the model carries. Watch from 0.1, act (retrain on recent data) from 0.25.",
    parameters=[version_parameter("The serving model's version, as `/` shows it.")],
)
