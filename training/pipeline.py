"""The scikit-learn pipeline training fits: ordinal grades, then :class:`BoostedLogPrice`.

* Categories are encoded by ``OrdinalEncoder`` in quality order (the schema's order).
  HistGradientBoosting's native ``categorical_features`` exports to ONNX without error
  but predicts wrongly, so the pipeline never uses it.
* No scaler: trees need none, and one in front of them breaks float32 parity.
"""

from __future__ import annotations

from typing import Any

from sklearn.compose import ColumnTransformer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OrdinalEncoder

from inference.schema import FEATURES, FeatureSchema
from training.estimator import BOOSTERS, INTERVAL, INTERVAL_BOOSTER, UPPER_FROM, BoostedLogPrice


def build_pipeline(
    schema: FeatureSchema = FEATURES,
    boosters: tuple[dict[str, Any], ...] = BOOSTERS,
    upper_from: float | None = UPPER_FROM,
    interval: tuple[float, float] | None = INTERVAL,
    interval_booster: dict[str, Any] = INTERVAL_BOOSTER,
) -> Pipeline:
    """A fresh, unfitted pipeline: a DataFrame with the schema's columns in, price out."""
    encode = ColumnTransformer(
        [
            ("numeric", "passthrough", list(schema.numeric)),
            (
                "grades",
                # An unknown grade becomes -1: outside the regressor's input range, so priced NaN.
                OrdinalEncoder(
                    categories=[list(v) for v in schema.categorical.values()],
                    handle_unknown="use_encoded_value",
                    unknown_value=-1,
                ),
                list(schema.categorical),
            ),
        ],
        verbose_feature_names_out=False,
    )
    ranges = (*schema.numeric.values(), *((0.0, float(len(v) - 1)) for v in schema.categorical.values()))
    regress = BoostedLogPrice(
        boosters=boosters,
        upper_from=upper_from,
        input_ranges=ranges,
        interval=interval,
        interval_booster=interval_booster,
    )
    return Pipeline([("encode", encode), ("regress", regress)])


def describe(pipeline: Pipeline) -> dict[str, Any]:
    """A JSON-able summary of the estimator and its hyper-parameters for modelsettings.json."""
    regress: BoostedLogPrice = pipeline.named_steps["regress"]
    estimator = (
        f"Pipeline(OrdinalEncoder -> BoostedLogPrice: mean of {len(regress.boosters)} "
        "HistGradientBoostingRegressor(loss='absolute_error') on log(price)"
    )
    params: dict[str, Any] = {"upper_from": regress.upper_from, "boosters": [dict(b) for b in regress.boosters]}
    if regress.interval is not None:
        low, high = regress.interval
        estimator += f"; price range: conformalized HistGradientBoostingRegressor(loss='quantile') at {low} and {high}"
        params["interval"] = {"quantiles": [low, high], "booster": dict(regress.interval_booster)}
    return {"estimator": estimator + ")", "params": params}
