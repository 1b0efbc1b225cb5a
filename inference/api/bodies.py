"""Request and response bodies of the JSON API, generated from the feature schema; the same pydantic
models validate requests and produce ``/openapi.json``."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from inference.schema import FEATURES, MAX_BATCH, FeatureSchema

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


class PriceRange(BaseModel):
    """A calibrated central interval around the price: ``low <= price <= high``."""

    low: float = Field(description="Lower bound in USD, rounded to cents.")
    high: float = Field(description="Upper bound in USD, rounded to cents.")
    level: float = Field(
        description="Nominal share of diamonds whose price falls inside (0.8: an 80% range, the 10th to the 90th "
        "percentile); the coverage measured on the training holdout is in GET / (model.price_range)."
    )


RANGE_NULL = "null when the serving model has no price range (models before v3)."


class Price(BaseModel):
    """The predicted price."""

    price: float = Field(description="Predicted price in USD, rounded to cents.")
    price_range: PriceRange | None = Field(description=f"Where the price is likely to fall; {RANGE_NULL}")
    model_version: int


class Prices(BaseModel):
    """One price per diamond, in order."""

    prices: list[float] = Field(description="One price in USD per diamond, in request order.")
    price_ranges: list[PriceRange] | None = Field(
        description=f"One price range per diamond, in request order; {RANGE_NULL}"
    )
    model_version: int


class RangeRecord(BaseModel):
    level: float = Field(description="Nominal coverage, e.g. 0.8.")
    coverage: float = Field(description="Share of the training holdout's prices inside the range.")
    mean_width: float = Field(description="Mean of high - low on the training holdout, in USD.")


class ModelInfo(BaseModel):
    name: str
    version: int
    mae: float = Field(description="Mean absolute error in USD on the training holdout.")
    price_range: RangeRecord | None = Field(default=None, description=f"The price range's calibration; {RANGE_NULL}")
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
