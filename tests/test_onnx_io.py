"""The graph's contract (inference/onnx_io.py): one definition of "has a price range" for serving, the gate
and the report."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest

from inference.onnx_io import RANGE_OUTPUTS, open_session, range_level
from inference.paths import PROJECT_ROOT

SHIPPED = PROJECT_ROOT / "model_registry" / "diamond_price-v3.onnx"


def edited(level: str | None, drop_output: str | None = None) -> bytes:
    model = onnx.load_from_string(SHIPPED.read_bytes())
    props = [p for p in model.metadata_props if p.key != "price_range_level"]
    del model.metadata_props[:]
    model.metadata_props.extend(props)
    if level is not None:
        model.metadata_props.add(key="price_range_level", value=level)
    if drop_output is not None:
        kept = [o for o in model.graph.output if o.name != drop_output]
        del model.graph.output[:]
        model.graph.output.extend(kept)
    return model.SerializeToString()


def test_the_shipped_model_has_an_80_percent_range() -> None:
    assert range_level(open_session(Path(SHIPPED).read_bytes())) == 0.8


@pytest.mark.parametrize("level", [None, "", "nan", "0", "1", "1.5", "-0.2", "eighty"])
def test_without_a_usable_level_the_model_has_no_range(level: str | None) -> None:
    assert range_level(open_session(edited(level))) is None


def test_without_both_outputs_the_model_has_no_range() -> None:
    for output in RANGE_OUTPUTS:
        assert range_level(open_session(edited("0.8", drop_output=output))) is None
    assert range_level(open_session(edited("0.9"))) == 0.9
