"""The scikit-learn pipeline that training fits: ordinal grades, then boosted trees on log(price).

Design choices, each measured (see the README's model-quality table):

* Categories are encoded by ``OrdinalEncoder`` in quality order. HistGradientBoosting's
  native ``categorical_features`` exports to ONNX without error but predicts wrongly.
* No scaler: trees need none, and one in front of them breaks float32 parity.
* The target is log(price) with absolute error: a monotone transform keeps the
  conditional median, which is what MAE rewards, and the trees fit relative errors.
* A few boosted models with different settings are averaged (in log space).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.compose import ColumnTransformer, TransformedTargetRegressor
from sklearn.ensemble import HistGradientBoostingRegressor, VotingRegressor
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OrdinalEncoder

from inference.schema import FEATURES, FeatureSchema

BOOSTERS: tuple[dict[str, Any], ...] = (
    {"learning_rate": 0.1, "max_iter": 500, "max_leaf_nodes": 31, "random_state": 0},
)
"""Hyper-parameters of the averaged HistGradientBoosting models."""


def build_pipeline(schema: FeatureSchema = FEATURES, boosters: tuple[dict[str, Any], ...] = BOOSTERS) -> Pipeline:
    """A fresh, unfitted pipeline: DataFrame with the schema's columns in, price out."""
    encode = ColumnTransformer(
        [
            ("numeric", "passthrough", list(schema.numeric)),
            (
                "grades",
                OrdinalEncoder(categories=[list(v) for v in schema.categorical.values()]),
                list(schema.categorical),
            ),
        ],
        verbose_feature_names_out=False,
    )
    models = [
        HistGradientBoostingRegressor(loss="absolute_error", early_stopping=False, **params) for params in boosters
    ]
    regressor: Any = models[0] if len(models) == 1 else VotingRegressor([(f"gbm{i}", m) for i, m in enumerate(models)])
    return Pipeline(
        [
            ("encode", encode),
            (
                "regress",
                TransformedTargetRegressor(regressor=regressor, func=np.log, inverse_func=np.exp, check_inverse=False),
            ),
        ]
    )


def describe(pipeline: Pipeline) -> dict[str, Any]:
    """A JSON-able summary of the estimator and its hyper-parameters for modelsettings.json."""
    regressor = pipeline.named_steps["regress"].regressor
    members = [m for _, m in regressor.estimators] if isinstance(regressor, VotingRegressor) else [regressor]
    return {
        "estimator": "Pipeline(OrdinalEncoder -> TransformedTargetRegressor(log, "
        + ("VotingRegressor(" if len(members) > 1 else "")
        + ", ".join(type(m).__name__ for m in members)
        + (")" if len(members) > 1 else "")
        + "))",
        "params": [_non_default_params(m) for m in members],
    }


def _non_default_params(estimator: Any) -> dict[str, Any]:
    """The hyper-parameters that differ from the estimator's defaults."""
    defaults = type(estimator)().get_params()
    return {
        k: v
        for k, v in estimator.get_params().items()
        if isinstance(v, (int, float, str, bool, type(None))) and v != defaults.get(k)
    }
