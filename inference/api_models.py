"""Request and response bodies of the JSON API, generated from the feature schema.

The same pydantic models validate requests and produce ``/openapi.json``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from inference.schema import FEATURES, FeatureSchema

MAX_BATCH = 10_000
EXAMPLE: dict[str, Any] = {"carat": 0.7, "cut": "Ideal", "color": "G", "clarity": "VS2"}


def _diamond_model(schema: FeatureSchema) -> type[BaseModel]:
    fields: dict[str, Any] = {}
    for name, (lo, hi) in schema.numeric.items():
        fields[name] = (
            Annotated[float, Field(ge=lo, le=hi, strict=True, allow_inf_nan=False, description=f"{lo} to {hi}")],
            ...,
        )
    for name, allowed in schema.categorical.items():
        fields[name] = (
            Annotated[Literal[allowed], Field(description=f"one of {', '.join(allowed)} (worst to best)")],
            ...,
        )
    return create_model(
        "Diamond",
        __config__=ConfigDict(extra="forbid", json_schema_extra={"examples": [EXAMPLE]}),
        __doc__="One diamond to price.",
        **fields,
    )


Diamond = _diamond_model(FEATURES)


class DiamondBatch(BaseModel):
    """Up to 10,000 diamonds, priced in one model call."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"diamonds": [EXAMPLE]}]})
    diamonds: list[Diamond] = Field(min_length=1, max_length=MAX_BATCH)  # type: ignore[valid-type]


class Price(BaseModel):
    price: float = Field(description="Predicted price in USD, rounded to cents.")
    model_version: int


class Prices(BaseModel):
    prices: list[float] = Field(description="One price in USD per diamond, in request order.")
    model_version: int


class ModelInfo(BaseModel):
    name: str
    version: int
    mae: float = Field(description="Mean absolute error in USD on the training holdout.")
    sha256: str
    loaded_at: float = Field(description="Unix time the model was loaded by this process.")
    report: str | None = Field(
        default=None, description="Link to the HTML report of the run that promoted this version; null if it has none."
    )


class Health(BaseModel):
    status: Literal["ok", "unavailable"]
    ready: bool
    model: ModelInfo | None = None
    reason: str | None = Field(default=None, description="Why no model is serving, when none is.")


class Liveness(BaseModel):
    status: Literal["alive"]


class UpdateResult(BaseModel):
    status: Literal["updated", "unchanged"]
    version: int
    previous_version: int | None


class FieldProblem(BaseModel):
    field: str = Field(description="Dotted path of the offending field, e.g. diamonds.3.cut")
    problem: str


class Error(BaseModel):
    error: str
    fields: list[FieldProblem] | None = None
