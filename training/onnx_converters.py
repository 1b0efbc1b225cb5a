"""skl2onnx converters that keep the exported model exact in float64.

skl2onnx 1.20 turns a HistGradientBoostingRegressor into the float32
``TreeEnsembleRegressor``: thresholds, leaf values and the running sum are all
float32, and on a log-price model that costs up to $0.02 a diamond. The converter
here emits ``ai.onnx.ml`` opset 5 ``TreeEnsemble`` in float64 straight from the
fitted trees, so onnxruntime walks exactly the splits scikit-learn walks and sums the
same float64 leaf values.

A ``TransformedTargetRegressor`` with ``func=np.log`` and ``inverse_func=np.exp``
converts to its inner regressor followed by ``Exp``.

:func:`register` installs both; it is idempotent.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from onnx import ModelProto, numpy_helper
from skl2onnx import update_registered_converter
from skl2onnx.algebra.onnx_operator import OnnxSubEstimator
from skl2onnx.algebra.onnx_ops import OnnxExp
from skl2onnx.common.data_types import DoubleTensorType
from skl2onnx.common.shape_calculator import calculate_linear_regressor_output_shapes
from sklearn.compose import TransformedTargetRegressor
from sklearn.ensemble import HistGradientBoostingRegressor

ML_OPSET = 5
"""``ai.onnx.ml`` opset that defines ``TreeEnsemble``.

skl2onnx 1.20 refuses to build a model above ``ai.onnx.ml`` 3, so the converter
declares 3 and :func:`raise_ml_opset` sets the model's import to 5 afterwards (the
``LabelEncoder`` nodes skl2onnx writes are valid in both)."""

_BRANCH_LEQ = 0
_AGGREGATE_SUM = 1
_POST_TRANSFORM_NONE = 0


def tree_ensemble_attributes(model: HistGradientBoostingRegressor) -> dict[str, Any]:
    """``TreeEnsemble`` attributes reproducing ``model``'s raw prediction in float64."""
    if model.n_trees_per_iteration_ != 1:
        raise NotImplementedError("only single-output regressors are supported")
    roots: list[int] = []
    feature_ids: list[int] = []
    splits: list[float] = []
    true_ids: list[int] = []
    true_leaf: list[int] = []
    false_ids: list[int] = []
    false_leaf: list[int] = []
    missing_true: list[int] = []
    leaf_weights: list[float] = []
    base = float(np.asarray(model._baseline_prediction).ravel()[0])

    for iteration in model._predictors:
        nodes = iteration[0].nodes
        if np.any(nodes["is_categorical"]):
            raise NotImplementedError("native categorical splits do not export; encode categories first")
        if nodes[0]["is_leaf"]:
            # A tree that never split: one dummy branch whose both sides reach the leaf.
            leaf = len(leaf_weights)
            leaf_weights.append(float(nodes[0]["value"]))
            roots.append(len(feature_ids))
            feature_ids.append(0)
            splits.append(0.0)
            true_ids.append(leaf)
            true_leaf.append(1)
            false_ids.append(leaf)
            false_leaf.append(1)
            missing_true.append(1)
            continue
        # Interior nodes and leaves are numbered separately in TreeEnsemble.
        offset = len(feature_ids)
        interior_order = [i for i in range(len(nodes)) if not nodes[i]["is_leaf"]]
        interior = {i: offset + k for k, i in enumerate(interior_order)}
        leaves: dict[int, int] = {}
        for i in range(len(nodes)):
            if nodes[i]["is_leaf"]:
                leaves[i] = len(leaf_weights)
                leaf_weights.append(float(nodes[i]["value"]))
        roots.append(offset)
        for i in interior:
            node = nodes[i]
            left, right = int(node["left"]), int(node["right"])
            feature_ids.append(int(node["feature_idx"]))
            splits.append(float(node["num_threshold"]))
            # scikit-learn goes left when x <= threshold, or when x is NaN and missing_go_to_left.
            true_leaf.append(int(bool(nodes[left]["is_leaf"])))
            true_ids.append(leaves[left] if nodes[left]["is_leaf"] else interior[left])
            false_leaf.append(int(bool(nodes[right]["is_leaf"])))
            false_ids.append(leaves[right] if nodes[right]["is_leaf"] else interior[right])
            missing_true.append(int(node["missing_go_to_left"]))

    # The baseline rides on the first tree's leaves, so the sum equals scikit-learn's raw prediction.
    first_tree_leaves = _leaves_of_first_tree(model)
    weights = np.asarray(leaf_weights, dtype=np.float64)
    weights[:first_tree_leaves] += base
    return {
        "n_targets": 1,
        "aggregate_function": _AGGREGATE_SUM,
        "post_transform": _POST_TRANSFORM_NONE,
        "tree_roots": roots,
        "nodes_featureids": feature_ids,
        "nodes_splits": numpy_helper.from_array(np.asarray(splits, dtype=np.float64), "nodes_splits"),
        "nodes_modes": numpy_helper.from_array(np.full(len(splits), _BRANCH_LEQ, dtype=np.uint8), "nodes_modes"),
        "nodes_truenodeids": true_ids,
        "nodes_trueleafs": true_leaf,
        "nodes_falsenodeids": false_ids,
        "nodes_falseleafs": false_leaf,
        "nodes_missing_value_tracks_true": missing_true,
        "leaf_targetids": [0] * len(weights),
        "leaf_weights": numpy_helper.from_array(weights, "leaf_weights"),
    }


def _leaves_of_first_tree(model: HistGradientBoostingRegressor) -> int:
    nodes = model._predictors[0][0].nodes
    return int(np.count_nonzero(nodes["is_leaf"]))


def _convert_hgb(scope: Any, operator: Any, container: Any) -> None:
    model = operator.raw_operator
    source = operator.inputs[0].full_name
    if not isinstance(operator.inputs[0].type, DoubleTensorType):
        cast = scope.get_unique_variable_name("features_f64")
        container.add_node("Cast", source, cast, to=11, name=scope.get_unique_operator_name("Cast"))
        source = cast
    container.add_node(
        "TreeEnsemble",
        source,
        operator.outputs[0].full_name,
        op_domain="ai.onnx.ml",
        op_version=3,
        name=scope.get_unique_operator_name("TreeEnsemble"),
        **tree_ensemble_attributes(model),
    )


def _hgb_shape(operator: Any) -> None:
    calculate_linear_regressor_output_shapes(operator)
    operator.outputs[0].type = DoubleTensorType([None, 1])


def _convert_log_target(scope: Any, operator: Any, container: Any) -> None:
    model = operator.raw_operator
    if model.func is not np.log or model.inverse_func is not np.exp:
        raise NotImplementedError("only func=np.log, inverse_func=np.exp is supported")
    opv = container.target_opset
    inner = OnnxSubEstimator(model.regressor_, operator.inputs[0], op_version=opv)
    out = OnnxExp(inner, op_version=opv, output_names=[operator.outputs[0]])
    out.add_to(scope, container)


def raise_ml_opset(model: ModelProto) -> None:
    """Declare ``ai.onnx.ml`` opset :data:`ML_OPSET`, which ``TreeEnsemble`` needs."""
    for imp in model.opset_import:
        if imp.domain == "ai.onnx.ml":
            imp.version = ML_OPSET


def register() -> None:
    """Install the float64 converters into skl2onnx's registry."""
    update_registered_converter(
        HistGradientBoostingRegressor,
        "SklearnHistGradientBoostingRegressor",
        _hgb_shape,
        _convert_hgb,
        overwrite=True,
    )
    update_registered_converter(
        TransformedTargetRegressor,
        "SklearnTransformedTargetRegressor",
        _hgb_shape,
        _convert_log_target,
        overwrite=True,
    )
