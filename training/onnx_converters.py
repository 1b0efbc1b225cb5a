"""skl2onnx support for :class:`training.estimator.BoostedLogPrice`.

skl2onnx converts the pipeline's preprocessing itself (``ColumnTransformer``,
``OrdinalEncoder``); the regressor converts to an exact lookup table of its prices
(:mod:`training.onnx_lookup`), one ``[N, outputs]`` tensor that
:func:`training.export.to_onnx` splits into named outputs.

:func:`register` installs the converter; it is idempotent.
"""

from __future__ import annotations

from typing import Any

from onnx import TensorProto
from skl2onnx import update_registered_converter
from skl2onnx.common.data_types import FloatTensorType

from training import onnx_lookup
from training.estimator import BoostedLogPrice


def _shape(operator: Any) -> None:
    operator.outputs[0].type = FloatTensorType([None, len(operator.raw_operator.outputs)])


def _convert(scope: Any, operator: Any, container: Any) -> None:
    source = operator.inputs[0].full_name
    if not isinstance(operator.inputs[0].type, FloatTensorType):
        narrow = scope.get_unique_variable_name("features_f32")
        container.add_node("Cast", source, narrow, to=TensorProto.FLOAT, name=scope.get_unique_operator_name("Cast"))
        source = narrow
    onnx_lookup.add_lookup(scope, container, source, operator.outputs[0].full_name, operator.raw_operator)


def register() -> None:
    """Install the converter into skl2onnx's registry."""
    update_registered_converter(BoostedLogPrice, "DiamondBoostedLogPrice", _shape, _convert, overwrite=True)
