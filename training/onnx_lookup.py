"""Compile the fitted regressor into an exact lookup table for ONNX.

A HistGradientBoosting model over a few features is a step function: every split
compares one feature with one of that feature's bin thresholds (at most 255). Cut
each input's axis at the union of its thresholds over all trees, plus the edges of
the valid input ranges (see :meth:`training.estimator.BoostedLogPrice.breakpoints`),
and the model is constant on every cell of that grid. With this project's four inputs
the grid has under 200,000 cells, so the whole ensemble, however many trees, becomes
one float32 table of prices, filled by calling scikit-learn's own ``predict`` once
per cell; cells outside the valid ranges hold NaN.

In ONNX a small ``TreeEnsembleRegressor`` (``ai.onnx.ml`` opset 3, which every
onnxruntime since 1.16 implements) finds a row's cell (one binary search per input,
about 20 comparisons) and ``Gather`` reads its row of the table: the price, and with a
price range its low and high bounds. The graph prices exactly as
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
from onnx import TensorProto

MAX_CELLS = 4_000_000
"""Largest table compiled (16 MB of float32)."""


class Compilable(Protocol):
    """What the compiler needs of an estimator (:class:`training.estimator.BoostedLogPrice` has it)."""

    @property
    def outputs(self) -> tuple[str, ...]: ...

    def breakpoints(self) -> list[np.ndarray]: ...

    def predict_all(self, X: np.ndarray) -> np.ndarray: ...


def representatives(cuts: np.ndarray) -> np.ndarray:
    """One point inside each interval (-inf, b0], (b0, b1], ..., (b_last, inf)."""
    if cuts.size == 0:
        return np.zeros(1)
    return np.append(cuts, cuts[-1] + 1.0)


def table(estimator: Compilable, cuts: list[np.ndarray]) -> np.ndarray:
    """``[cells, outputs]`` float32: the estimator's outputs over the grid, cells in C order
    (the last input varies fastest)."""
    axes = [representatives(c) for c in cuts]
    cells = int(np.prod([len(a) for a in axes]))
    if cells > MAX_CELLS:
        raise NotImplementedError(f"lookup grid of {cells} cells exceeds {MAX_CELLS}")
    grid = np.stack([g.ravel() for g in np.meshgrid(*axes, indexing="ij")], axis=1)
    values = np.asarray(estimator.predict_all(grid), dtype=np.float64).reshape(cells, -1)
    return values.astype(np.float32)


def binner_attributes(cuts: list[np.ndarray], strides: list[int]) -> dict[str, Any]:
    """``TreeEnsembleRegressor`` attributes whose sum over trees is a row's cell number.

    One balanced binary-search tree per input adds ``bin * stride`` (integers below
    2**24, exact in float32); like scikit-learn, ``x <= threshold`` takes the true branch,
    and a missing value (NaN) takes it too, down to the lowest (invalid) bin.
    """
    nodes: dict[str, list[Any]] = {
        key: []
        for key in (
            "nodes_treeids", "nodes_nodeids", "nodes_featureids", "nodes_values", "nodes_modes",
            "nodes_truenodeids", "nodes_falsenodeids", "nodes_missing_value_tracks_true",
            "target_treeids", "target_nodeids", "target_ids", "target_weights",
        )
    }  # fmt: skip

    def add(tree: int, node: int, feature: int, mode: str, value: float) -> int:
        for key, item in (
            ("nodes_treeids", tree), ("nodes_nodeids", node), ("nodes_featureids", feature), ("nodes_modes", mode),
            ("nodes_values", value), ("nodes_truenodeids", 0), ("nodes_falsenodeids", 0),
            ("nodes_missing_value_tracks_true", int(mode != "LEAF")),
        ):  # fmt: skip
            nodes[key].append(item)
        return len(nodes["nodes_nodeids"]) - 1

    def build(tree: int, feature: int, cut: np.ndarray, lo: int, hi: int, stride: int, node: int) -> int:
        """Adds the subtree over bins [lo, hi) in preorder from id ``node``; returns the next free id."""
        if hi - lo == 1:
            add(tree, node, feature, "LEAF", 0.0)
            for key, item in (("target_treeids", tree), ("target_nodeids", node), ("target_ids", 0)):
                nodes[key].append(item)
            nodes["target_weights"].append(float(lo * stride))
            return node + 1
        mid = (lo + hi) // 2
        index = add(tree, node, feature, "BRANCH_LEQ", float(cut[mid - 1]))  # bins lo..mid-1: x <= cut[mid-1]
        nodes["nodes_truenodeids"][index] = node + 1
        after_true = build(tree, feature, cut, lo, mid, stride, node + 1)
        nodes["nodes_falsenodeids"][index] = after_true
        return build(tree, feature, cut, mid, hi, stride, after_true)

    trees = 0
    for feature, cut in enumerate(cuts):
        if cut.size:
            build(trees, feature, cut, 0, cut.size + 1, strides[feature], 0)
            trees += 1
    if not trees:
        raise NotImplementedError("the model never splits: nothing to compile")
    return {"n_targets": 1, "aggregate_function": "SUM", "post_transform": "NONE", **nodes}


def add_lookup(scope: Any, container: Any, source: str, output: str, estimator: Compilable) -> None:
    """Nodes computing ``estimator.predict_all(source)``: float32 [N, F] -> float32 [N, outputs]."""
    cuts = estimator.breakpoints()
    values = table(estimator, cuts)  # filled at the breakpoints themselves
    sizes = [len(representatives(c)) for c in cuts]
    strides = [int(np.prod(sizes[f + 1 :])) for f in range(len(sizes))]
    if values.shape[0] >= 1 << 24:
        raise NotImplementedError("cell numbers would not be exact in float32")

    cell_f32: str = scope.get_unique_variable_name("cell_f32")
    container.add_node(
        "TreeEnsembleRegressor",
        source,
        cell_f32,
        op_domain="ai.onnx.ml",
        op_version=3,
        name=scope.get_unique_operator_name("TreeEnsembleRegressor"),
        **binner_attributes(cuts, strides),
    )
    flat: str = scope.get_unique_variable_name("cell_flat")
    shape: str = scope.get_unique_variable_name("flat_shape")
    container.add_initializer(shape, TensorProto.INT64, [1], [-1])
    container.add_node("Reshape", [cell_f32, shape], flat, name=scope.get_unique_operator_name("Reshape"))
    cell: str = scope.get_unique_variable_name("cell")
    container.add_node("Cast", flat, cell, to=TensorProto.INT64, name=scope.get_unique_operator_name("Cast"))
    table_name: str = scope.get_unique_variable_name("price_table")
    container.add_initializer(table_name, TensorProto.FLOAT, values.shape, values.ravel())
    container.add_node("Gather", [table_name, cell], output, name=scope.get_unique_operator_name("Gather"), axis=0)
