"""The input baseline a model carries: how its training rows are distributed, for drift at serving.

Numeric features get :data:`BINS` quantile bins of the training rows (their edges are training
values, so repeated values such as 1.0 carat stay whole and some bins hold more than a tenth);
categorical features the share of each category. The share of unpriceable rows is that of the
rows read which the feature schema refuses (a NULL feature, an unknown category, a value out of
range): what the data source sent that no model can price. :mod:`inference.baseline` owns the
format and the binning, so the service bins rows exactly as here.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from inference.baseline import Baseline
from inference.schema import FEATURES, FeatureSchema
from training import rules
from training.data import Dataset

BINS = 10
UNPRICEABLE_RULES = (rules.NULL, rules.NOT_NUMBER, rules.UNKNOWN, rules.OUT_OF_RANGE)
"""The cleaning rules (:mod:`training.rules`) whose rows a model could not price (the first two
also count rows whose price alone is missing or not a number)."""


def measure(rows: pd.DataFrame, unpriceable: float, schema: FeatureSchema = FEATURES) -> Baseline:
    """The baseline of ``rows`` (the training rows), with ``unpriceable`` the share of refused rows."""
    edges = {}
    for name in schema.numeric:
        values = rows[name].to_numpy(dtype=np.float32)
        quantiles = np.quantile(values, np.linspace(0, 1, BINS + 1)[1:-1], method="nearest")
        edges[name] = np.unique(quantiles.astype(np.float32))
    shell = Baseline(edges, dict(schema.categorical), np.zeros(0), 0)
    priced = np.ones((len(rows), 1), dtype=np.float32)
    counts = shell.count({n: rows[n].to_numpy() for n in schema.names}, priced)
    return Baseline.from_counts(edges, counts, unpriceable, schema)


def unpriceable_share(dataset: Dataset) -> float:
    """The share of the rows read that the feature schema refuses."""
    refused = sum(dataset.removed.get(rule, 0) for rule in UNPRICEABLE_RULES)
    return refused / dataset.rows_read if dataset.rows_read else 0.0
