"""The shipped .onnx, embedded in Node with onnxruntime-node, prices like Python onnxruntime.

The model the repo's modelsettings.json names (sha256-verified) runs in Node and in Python on
1,000 rows sampled from diamond.db with rows outside the feature schema mixed in: every price
agrees within $0.01, and NaN comes out for exactly the rows outside the schema, in both. The
examples (examples/node/predict.mjs, examples/python/predict.py) read the schema and version
from the model's metadata_props and print null for every row they cannot price.

Needs ``npm ci --prefix examples/node --ignore-scripts`` (``make test`` runs it). Without node the
test skips, except with CI set: there it fails, since in CI no test may skip.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from inference.modelsettings import ModelSettings, read_verified_model
from inference.onnx_io import metadata, open_session, predict
from inference.schema import FEATURES
from tests.helpers import ROOT, Row, mixed_rows, node

NODE_DIR = ROOT / "examples" / "node"
INSTALL = "npm ci --prefix examples/node --ignore-scripts --no-audit --no-fund"
TOLERANCE = 0.01


@pytest.fixture(scope="module")
def shipped(tmp_path_factory: pytest.TempPathFactory) -> tuple[ModelSettings, Path]:
    """The current model of the repo, as verified bytes in a file of its own."""
    settings, blob = read_verified_model(ROOT / "modelsettings.json", ROOT / "model_registry")
    path = tmp_path_factory.mktemp("shipped") / "model.onnx"
    path.write_bytes(blob)
    return settings, path


def sample_rows(seed: int) -> tuple[list[Row], np.ndarray]:
    return mixed_rows(1000, seed=seed, copies=2)


def python_prices(model: Path, rows: list[Row]) -> np.ndarray:
    """Python onnxruntime on the rows, fed as an embedder would: NaN or '' where a value is not usable."""
    return predict(open_session(model.read_bytes()), embedder_feeds(rows))


def embedder_feeds(rows: list[Row]) -> dict[str, np.ndarray]:
    feeds: dict[str, np.ndarray] = {}
    for name in FEATURES.numeric:
        wide = np.array([r[name] if isinstance(r[name], float) else np.nan for r in rows], dtype=np.float64)
        with np.errstate(over="ignore"):
            feeds[name] = wide.astype(np.float32).reshape(-1, 1)
    for name in FEATURES.categorical:
        feeds[name] = np.array([r[name] if isinstance(r[name], str) else "" for r in rows], dtype=object).reshape(-1, 1)
    return feeds


def run_node(*args: str, script: str | None = None) -> Any:
    command = [node(), "--input-type=module", "-e", script, *args] if script else [node(), *args]
    done = subprocess.run(command, cwd=NODE_DIR, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


RAW = """
import { readFile } from 'node:fs/promises';
import * as ort from 'onnxruntime-node';
import { metadataProps, modelPrices } from './predict.mjs';
const [modelPath, rowsPath] = process.argv.slice(1);
const bytes = await readFile(modelPath);
const meta = metadataProps(bytes);
const session = await ort.InferenceSession.create(bytes);
const rows = JSON.parse(await readFile(rowsPath, 'utf8'));
const prices = await modelPrices(session, JSON.parse(meta.feature_schema), rows);
console.log(JSON.stringify({ meta, prices: Array.from(prices, (p) => (Number.isFinite(p) ? p : String(p))) }));
"""


@pytest.mark.slow
def test_node_prices_like_python_and_nan_exactly_outside_the_schema(
    shipped: tuple[ModelSettings, Path], tmp_path: Path
) -> None:
    settings, model = shipped
    rows, outside = sample_rows(seed=20)
    rows_file = tmp_path / "rows.json"
    rows_file.write_text(json.dumps(rows))
    python = python_prices(model, rows)
    assert np.array_equal(np.isnan(python), outside), "Python onnxruntime: NaN must mark exactly the rows outside"

    out = run_node(str(model), str(rows_file), script=RAW)
    nodes = np.array([np.nan if p == "NaN" else p for p in out["prices"]], dtype=np.float64)
    assert all(p == "NaN" or isinstance(p, float | int) for p in out["prices"]), "only NaN may be non-finite"
    assert np.array_equal(np.isnan(nodes), np.isnan(python))
    assert np.max(np.abs(nodes[~outside] - python[~outside])) <= TOLERANCE
    # Node reads what the model carries in its metadata_props, as Python onnxruntime does.
    assert out["meta"] == metadata(open_session(model.read_bytes()))
    assert out["meta"]["version"] == str(settings.version)
    assert json.loads(out["meta"]["feature_schema"]) == FEATURES.to_dict()


@pytest.mark.slow
def test_node_example_prints_prices_and_null_where_it_cannot_price(
    shipped: tuple[ModelSettings, Path], tmp_path: Path
) -> None:
    settings, model = shipped
    rows, outside = sample_rows(seed=21)
    python = python_prices(model, rows)
    rows_file = tmp_path / "rows.json"
    rows_file.write_text(json.dumps(rows))
    out = run_node("predict.mjs", str(model), str(rows_file))
    assert out["name"] == settings.name and out["version"] == settings.version
    prices = out["prices"]
    assert [p is None for p in prices] == outside.tolist()
    assert [p is not None for p in out["problems"]] == outside.tolist()
    assert max(abs(p - float(x)) for p, x in zip(prices, python, strict=True) if p is not None) <= TOLERANCE
    session = open_session(model.read_bytes())
    if "price_range_level" in metadata(session):  # the range, where the model has one
        _, low, high = (o.ravel() for o in session.run(["price", "price_low", "price_high"], embedder_feeds(rows)))
        ranges = out["price_ranges"]
        assert [r is None for r in ranges] == outside.tolist()
        for r, lo, hi, p in zip(ranges, low, high, prices, strict=True):
            if r is not None:
                assert abs(r["low"] - float(lo)) <= TOLERANCE and abs(r["high"] - float(hi)) <= TOLERANCE
                assert r["low"] <= p <= r["high"] and r["level"] == 0.8
    else:
        assert "price_ranges" not in out
    # Rows on stdin; a batch of one inside the schema.
    done = subprocess.run(
        [node(), "predict.mjs", str(model)],
        cwd=NODE_DIR,
        input=json.dumps({"diamonds": rows[:1]}),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert json.loads(done.stdout)["prices"] == prices[:1]


def test_node_install_is_pinned() -> None:
    package = json.loads((NODE_DIR / "package.json").read_text())
    lock = json.loads((NODE_DIR / "package-lock.json").read_text())
    pinned = package["dependencies"]["onnxruntime-node"]
    assert pinned[0].isdigit(), "onnxruntime-node must be pinned to an exact version"
    assert lock["packages"]["node_modules/onnxruntime-node"]["version"] == pinned
    node()
    installed = json.loads((NODE_DIR / "node_modules" / "onnxruntime-node" / "package.json").read_text())
    assert installed["version"] == pinned, f"installed onnxruntime-node differs from the lock: run `{INSTALL}`"


@pytest.mark.slow
def test_python_example_prints_prices_and_null_where_it_cannot_price(
    shipped: tuple[ModelSettings, Path], tmp_path: Path
) -> None:
    settings, model = shipped
    rows, outside = sample_rows(seed=22)
    python = python_prices(model, rows)
    rows_file = tmp_path / "rows.json"
    rows_file.write_text(json.dumps(rows))
    example = str(ROOT / "examples" / "python" / "predict.py")
    done = subprocess.run(
        [sys.executable, example, str(model), str(rows_file)], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0 and not done.stderr, done.stderr
    out = json.loads(done.stdout)
    assert out["name"] == settings.name and out["version"] == settings.version
    assert [p is None for p in out["prices"]] == outside.tolist()
    assert [p is not None for p in out["problems"]] == outside.tolist()
    assert max(abs(p - float(x)) for p, x in zip(out["prices"], python, strict=True) if p is not None) <= TOLERANCE
