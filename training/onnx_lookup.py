"""Compile the fitted regressor into an exact lookup table for ONNX.

A HistGradientBoosting model over a few features is a step function: every split
compares one feature with one of that feature's bin thresholds (at most 255). Cut
each input's axis at the union of its thresholds over all trees, plus the edges of
the valid input ranges (see :meth:`training.estimator.BoostedLogPrice.breakpoints`),
and the model is constant on every cell of that grid. With this project's four inputs
the grid has under 200,000 cells, so the whole ensemble, however many trees, becomes
one float32 table of prices, filled by calling scikit-learn's own ``predict`` once
per cell; cells outside the valid ranges hold NaN.

In ONNX a small ``TreeEnsemble`` finds a row's cell (one binary search per input,
about 20 comparisons) and ``Gather`` reads its price. The graph prices exactly as
scikit-learn does, at a cost that no longer grows with the number of trees, so model
quality and serving speed stop trading against each other.

The inputs are float32, and the estimator is defined on float32 inputs too (it rounds
them itself), so every breakpoint is already a float32 value: a learned threshold t is
``float32_floor(t)``, the largest float32 ``<= t``. For every float32 x, ``x <= b`` then
holds exactly when scikit-learn's ``x <= t`` does: exact by construction, however close
t falls to a data value. A missing input (NaN) goes to the lowest cell, which is outside
the valid range: NaN.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
from onnx import TensorProto, numpy_helper

MAX_CELLS = 4_000_000
"""Largest table compiled (16 MB of float32)."""


class Compilable(Protocol):
    def breakpoints(self) -> list[np.ndarray]: ...

    def predict(self, X: np.ndarray) -> np.ndarray: ...


def representatives(cuts: np.ndarray) -> np.ndarray:
    """One point inside each interval (-inf, b0], (b0, b1], ..., (b_last, inf)."""
    if cuts.size == 0:
        return np.zeros(1)
    return np.append(cuts, cuts[-1] + 1.0)


def table(estimator: Compilable, cuts: list[np.ndarray]) -> np.ndarray:
    """The estimator's prices over the grid as float32, C order (the last input varies fastest)."""
    axes = [representatives(c) for c in cuts]
    cells = int(np.prod([len(a) for a in axes]))
    if cells > MAX_CELLS:
        raise NotImplementedError(f"lookup grid of {cells} cells exceeds {MAX_CELLS}")
    grid = np.stack([g.ravel() for g in np.meshgrid(*axes, indexing="ij")], axis=1)
    return np.asarray(estimator.predict(grid), dtype=np.float64).astype(np.float32)


def binner_attributes(cuts: list[np.ndarray], strides: list[int]) -> dict[str, Any]:
    """``TreeEnsemble`` attributes whose sum over trees is a row's cell number.

    One balanced binary-search tree per input adds ``bin * stride`` (integers below
    2**24, exact in float32); like scikit-learn, ``x <= threshold`` takes the true branch.
    """
    feature_ids: list[int] = []
    splits: list[float] = []
    true_ids: list[int] = []
    true_leaf: list[int] = []
    false_ids: list[int] = []
    false_leaf: list[int] = []
    weights: list[float] = []
    roots: list[int] = []

    def build(feature: int, cut: np.ndarray, lo: int, hi: int, stride: int) -> tuple[int, int]:
        """Subtree over bins [lo, hi); returns (id, 1 if it is a leaf else 0)."""
        if hi - lo == 1:
            weights.append(float(lo * stride))
            return len(weights) - 1, 1
        mid = (lo + hi) // 2
        index = len(feature_ids)
        feature_ids.append(feature)
        splits.append(float(cut[mid - 1]))  # bins lo..mid-1 are exactly the x <= cut[mid-1] side
        for column in (true_ids, true_leaf, false_ids, false_leaf):
            column.append(0)
        true_ids[index], true_leaf[index] = build(feature, cut, lo, mid, stride)
        false_ids[index], false_leaf[index] = build(feature, cut, mid, hi, stride)
        return index, 0

    for feature, cut in enumerate(cuts):
        if cut.size:
            root, _ = build(feature, cut, 0, cut.size + 1, strides[feature])
            roots.append(root)
    if not roots:
        raise NotImplementedError("the model never splits: nothing to compile")
    return {
        "n_targets": 1,
        "aggregate_function": 1,  # SUM
        "post_transform": 0,  # NONE
        "tree_roots": roots,
        "nodes_featureids": feature_ids,
        "nodes_splits": numpy_helper.from_array(np.asarray(splits, dtype=np.float32), "nodes_splits"),
        "nodes_modes": numpy_helper.from_array(np.zeros(len(splits), dtype=np.uint8), "nodes_modes"),  # BRANCH_LEQ
        "nodes_truenodeids": true_ids,
        "nodes_trueleafs": true_leaf,
        "nodes_falsenodeids": false_ids,
        "nodes_falseleafs": false_leaf,
        "nodes_missing_value_tracks_true": [1] * len(splits),  # NaN goes left, to the invalid lowest cell
        "leaf_targetids": [0] * len(weights),
        "leaf_weights": numpy_helper.from_array(np.asarray(weights, dtype=np.float32), "leaf_weights"),
    }


def add_lookup(scope: Any, container: Any, source: str, output: str, estimator: Compilable) -> None:
    """Nodes computing ``estimator.predict(source)``: float32 [N, F] -> float32 [N, 1]."""
    cuts = estimator.breakpoints()
    values = table(estimator, cuts)  # filled at the breakpoints themselves, in float64
    sizes = [len(representatives(c)) for c in cuts]
    strides = [int(np.prod(sizes[f + 1 :])) for f in range(len(sizes))]
    if values.size >= 1 << 24:
        raise NotImplementedError("cell numbers would not be exact in float32")

    cell_f32: str = scope.get_unique_variable_name("cell_f32")
    container.add_node(
        "TreeEnsemble",
        source,
        cell_f32,
        op_domain="ai.onnx.ml",
        op_version=3,  # declared as 3 for skl2onnx; raise_ml_opset() sets the model's import to 5
        name=scope.get_unique_operator_name("TreeEnsemble"),
        **binner_attributes(cuts, strides),
    )
    cell: str = scope.get_unique_variable_name("cell")
    container.add_node("Cast", cell_f32, cell, to=TensorProto.INT64, name=scope.get_unique_operator_name("Cast"))
    table_name: str = scope.get_unique_variable_name("price_table")
    container.add_initializer(table_name, TensorProto.FLOAT, values.shape, values)
    container.add_node("Gather", [table_name, cell], output, name=scope.get_unique_operator_name("Gather"), axis=0)
