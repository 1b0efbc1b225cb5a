"""``python -m training export-triton``: a Triton model repository whose ``config.pbtxt`` parses
with Triton's own model-configuration schema (``model_config.proto``, as tritonclient ships it)
and whose inputs and outputs match the ``.onnx`` exactly (read with the ``onnx`` package, not
with the onnxruntime session the export itself used)."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from tests.helpers import Project
from training.__main__ import main
from training.registry import Registry

ROOT = Path(__file__).resolve().parents[2]
REGISTRY = ROOT / "model_registry"
SETTINGS = ROOT / "modelsettings.json"
# ONNX element types -> Triton data types (model_config.proto's DataType).
ONNX_TO_TRITON = {onnx.TensorProto.FLOAT: mc.TYPE_FP32, onnx.TensorProto.STRING: mc.TYPE_STRING}


def export(out: Path, version: int, settings: Path = SETTINGS, registry: Path = REGISTRY) -> int:
    return main(
        ["export-triton", "--settings", str(settings), "--registry", str(registry), "--version", str(version), str(out)]
    )


def parse_config(path: Path) -> mc.ModelConfig:
    """Triton's schema: an unknown field, a wrong type or a bad enum value raises ParseError."""
    return text_format.Parse(path.read_text(), mc.ModelConfig())


def mismatches(config: mc.ModelConfig, model: onnx.ModelProto) -> list[str]:
    """Every way the configuration's inputs and outputs differ from the model's graph."""
    problems = []
    for what, declared, actual in (
        ("input", config.input, model.graph.input),
        ("output", config.output, model.graph.output),
    ):
        if [t.name for t in declared] != [v.name for v in actual]:
            problems.append(f"{what} names {[t.name for t in declared]} != {[v.name for v in actual]}")
            continue
        for t, v in zip(declared, actual, strict=True):
            tensor = v.type.tensor_type
            if ONNX_TO_TRITON.get(tensor.elem_type) != t.data_type:
                problems.append(f"{what} {t.name}: {mc.DataType.Name(t.data_type)} vs ONNX type {tensor.elem_type}")
            dims = tensor.shape.dim
            if dims[0].HasField("dim_value"):
                problems.append(f"{what} {t.name}: the model's first axis is fixed, not a batch axis")
            if list(t.dims) != [d.dim_value for d in dims[1:]]:
                problems.append(
                    f"{what} {t.name}: dims {list(t.dims)} vs the model's {[d.dim_value for d in dims[1:]]}"
                )
    return problems


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("triton")
    assert export(out, 2) == 0
    return out


def test_layout_and_bytes_match_the_registry(repository: Path) -> None:
    model = repository / "diamond_price" / "2" / "model.onnx"
    assert sorted(p.relative_to(repository).as_posix() for p in repository.rglob("*") if p.is_file()) == [
        "diamond_price/2/model.onnx",
        "diamond_price/config.pbtxt",
    ]
    recorded = (REGISTRY / "diamond_price-v2.onnx.sha256").read_text().split()[0]
    assert hashlib.sha256(model.read_bytes()).hexdigest() == recorded


def test_config_parses_with_tritons_schema_and_matches_the_model(repository: Path) -> None:
    config = parse_config(repository / "diamond_price" / "config.pbtxt")
    model = onnx.load(repository / "diamond_price" / "2" / "model.onnx")
    assert config.name == "diamond_price"
    assert config.backend == "onnxruntime"
    assert config.max_batch_size > 0  # so dims leave the batch axis out
    assert config.HasField("dynamic_batching")
    assert list(config.version_policy.specific.versions) == [2]
    assert [g.kind for g in config.instance_group] == [mc.ModelInstanceGroup.KIND_CPU]
    assert {mc.DataType.Name(t.data_type) for t in config.input} == {"TYPE_FP32", "TYPE_STRING"}
    assert mismatches(config, model) == []


def test_the_comparison_catches_a_config_that_drifts(repository: Path) -> None:
    model = onnx.load(repository / "diamond_price" / "2" / "model.onnx")
    config = parse_config(repository / "diamond_price" / "config.pbtxt")
    config.output[0].data_type = mc.TYPE_FP64
    del config.input[-1]
    assert len(mismatches(config, model)) == 2
    with pytest.raises(text_format.ParseError):
        text_format.Parse('name: "x" input [ { name: "a" data_type: TYPE_FLOAT32 } ]', mc.ModelConfig())


def test_exported_model_prices_like_the_registry(repository: Path) -> None:
    """What Triton would load is the registry's model: one row priced the same by both files."""
    feeds = {
        "carat": np.array([[0.7]], dtype=np.float32),
        "cut": np.array([["Ideal"]], dtype=object),
        "color": np.array([["G"]], dtype=object),
        "clarity": np.array([["VS2"]], dtype=object),
    }
    exported = ort.InferenceSession(str(repository / "diamond_price" / "2" / "model.onnx"))
    original = ort.InferenceSession(str(REGISTRY / "diamond_price-v2.onnx"))
    assert exported.run(None, feeds)[0][0, 0] == pytest.approx(original.run(None, feeds)[0][0, 0])


def test_config_follows_the_models_outputs(served: Project, tmp_path: Path) -> None:
    """The config lists exactly the model's outputs: all three for a model with a price range,
    ``price`` alone for one without."""
    registry = Registry(served.settings, served.registry)
    assert export(tmp_path / "ranged", 1, served.settings, served.registry) == 0
    config = parse_config(tmp_path / "ranged" / "diamond_price" / "config.pbtxt")
    assert [t.name for t in config.output] == ["price", "price_low", "price_high"]
    model = onnx.load(registry.model_path(1))
    kept = [o for o in model.graph.output if o.name == "price"]
    del model.graph.output[:]
    model.graph.output.extend(kept)
    blob = model.SerializeToString()
    registry.publish(blob, 2, hashlib.sha256(blob).hexdigest())
    assert export(tmp_path / "plain", 2, served.settings, served.registry) == 0
    config = parse_config(tmp_path / "plain" / "diamond_price" / "config.pbtxt")
    assert [t.name for t in config.output] == ["price"]
    assert mismatches(config, onnx.load(tmp_path / "plain" / "diamond_price" / "2" / "model.onnx")) == []


def test_a_damaged_model_is_refused_and_nothing_is_written(
    served: Project, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = served.registry / "diamond_price-v1.onnx"
    blob = bytearray(path.read_bytes())
    blob[-1] ^= 1
    path.write_bytes(bytes(blob))
    out = tmp_path / "repo"
    assert export(out, 1, served.settings, served.registry) == 1
    assert "does not verify" in capsys.readouterr().err
    assert not out.exists() or not any(out.rglob("*.onnx"))


def test_an_unknown_version_is_refused(served: Project, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert export(tmp_path, 7, served.settings, served.registry) == 1
    assert "version 7 does not exist" in capsys.readouterr().err


def test_other_bytes_at_the_same_version_are_not_replaced(
    repository: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "repo"
    shutil.copytree(repository, out)
    target = out / "diamond_price" / "2" / "model.onnx"
    target.write_bytes(b"something else")
    assert export(out, 2) == 1
    assert "refusing to replace" in capsys.readouterr().err
    assert target.read_bytes() == b"something else"
    assert export(tmp_path / "again", 2) == 0 and export(tmp_path / "again", 2) == 0  # idempotent
