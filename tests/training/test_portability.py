"""The registry's current model runs alike everywhere it is embedded.

The same 1,000 rows (sampled from diamond.db, valid and invalid mixed) are priced by the file
modelsettings.json names, sha256-verified, in four runtimes: onnxruntime 1.16 (the oldest the models
support, in ``.venv-ort116``), the pinned current onnxruntime, onnxruntime-node (examples/node) and
onnxruntime-web in headless chromium (the calculator's own module, from a static server). Every
output the model has must agree within $0.01 between every pair, with NaN on exactly the rows
outside the feature schema.
"""

from __future__ import annotations

import itertools
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from inference.modelsettings import read_verified_model
from inference.onnx_io import metadata, open_session
from inference.schema import FEATURES
from tests.browser import chromium_page, static_server
from tests.helpers import ROOT, mixed_rows, node

ORT116 = ROOT / ".venv-ort116" / "bin" / "python"
ORT116_PINS = ROOT / "requirements" / "ort-1.16.txt"
NODE_DIR = ROOT / "examples" / "node"
TOLERANCE = 0.01
ROWS = 1000

# Run by the current interpreter and by .venv-ort116's: onnxruntime and numpy only.
PYTHON_RUNNER = """
import json, sys
import numpy as np
import onnxruntime as ort
model, rows_path, numeric, categorical = sys.argv[1], sys.argv[2], sys.argv[3].split(","), sys.argv[4].split(",")
rows = json.load(open(rows_path))
feeds = {}
with np.errstate(over="ignore"):
    for name in numeric:
        wide = np.array([r[name] if isinstance(r[name], (int, float)) else np.nan for r in rows], dtype=np.float64)
        feeds[name] = wide.astype(np.float32).reshape(-1, 1)
for name in categorical:
    feeds[name] = np.array([r[name] if isinstance(r[name], str) else "" for r in rows], dtype=object).reshape(-1, 1)
session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
names = [o.name for o in session.get_outputs()]
values = session.run(names, feeds)
outputs = {n: [None if np.isnan(x) else float(x) for x in np.asarray(v).reshape(-1)] for n, v in zip(names, values)}
print(json.dumps({"runtime": ort.__version__, "outputs": outputs}))
"""

NODE_RUNNER = """
import { readFile } from 'node:fs/promises';
import * as ort from 'onnxruntime-node';
const [modelPath, rowsPath, numeric, categorical] = process.argv.slice(1);
const rows = JSON.parse(await readFile(rowsPath, 'utf8'));
const shape = [rows.length, 1];
const feeds = {};
for (const name of numeric.split(',')) {
  const values = Float32Array.from(rows, (r) => (typeof r[name] === 'number' ? r[name] : NaN));
  feeds[name] = new ort.Tensor('float32', values, shape);
}
for (const name of categorical.split(',')) {
  feeds[name] = new ort.Tensor('string', rows.map((r) => (typeof r[name] === 'string' ? r[name] : '')), shape);
}
const session = await ort.InferenceSession.create(await readFile(modelPath));
const results = await session.run(feeds);
const nulls = (values) => Array.from(values, (x) => (Number.isNaN(x) ? null : x));
const outputs = Object.fromEntries(session.outputNames.map((n) => [n, nulls(results[n].data)]));
console.log(JSON.stringify({ runtime: ort.env.versions.node, outputs }));
"""

# In the calculator page: its own module loads the model (sha256-checked) and runs every output.
WEB_RUNNER = """
async (rows) => {
  const calculator = await import(new URL('calculator.js', location.href).href);
  const model = await calculator.currentModel();
  const results = await calculator.runModel(model, rows);
  const outputs = Object.fromEntries(
    Object.entries(results).map(([n, v]) => [n, Array.from(v, (x) => (Number.isNaN(x) ? null : x))]));
  return { runtime: model.runtime, sha256: model.settings.sha256, outputs };
}
"""


def as_arrays(result: dict[str, Any]) -> dict[str, np.ndarray]:
    return {name: np.array([np.nan if x is None else x for x in v], dtype=np.float64) for name, v in result.items()}


def run_json(command: list[str], cwd: Path = ROOT) -> dict[str, Any]:
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def ort116() -> str:
    if not ORT116.exists():
        pytest.fail(f"{ORT116} is missing: run `make .venv-ort116/.installed` (`make test` builds it)")
    return str(ORT116)


def test_the_current_model_names_its_oldest_runtime_and_that_one_is_pinned_for_this_test() -> None:
    settings, blob = read_verified_model(ROOT / "modelsettings.json", ROOT / "model_registry")
    meta = metadata(open_session(blob))
    recorded = getattr(settings, "min_onnxruntime", None)
    assert recorded is not None, "modelsettings.json records no min_onnxruntime: the model is not portable"
    assert meta["min_onnxruntime"] == recorded
    assert tuple(int(p) for p in recorded.split(".")) <= (1, 16)
    outputs = json.loads(meta["outputs"])
    assert outputs[0] == "price" and set(outputs) <= {"price", "price_low", "price_high"}

    pins = ORT116_PINS.read_text()
    (version,) = re.findall(r"^onnxruntime==(\S+) \\$", pins, flags=re.MULTILINE)
    assert version.startswith(f"{recorded}."), f"{ORT116_PINS.name} pins {version}, the model needs {recorded}"
    packages = re.findall(r"^([A-Za-z0-9_.-]+)==", pins, flags=re.MULTILINE)
    assert len(re.findall(r"^\s+--hash=sha256:", pins, flags=re.MULTILINE)) >= len(packages) > 1


@pytest.mark.slow
def test_every_runtime_prices_the_current_model_alike(tmp_path: Path) -> None:
    settings, blob = read_verified_model(ROOT / "modelsettings.json", ROOT / "model_registry")
    model = tmp_path / "model.onnx"
    model.write_bytes(blob)
    rows, invalid = mixed_rows()
    rows_file = tmp_path / "rows.json"
    rows_file.write_text(json.dumps(rows))
    columns = [",".join(FEATURES.numeric), ",".join(FEATURES.categorical)]
    expected_outputs = [o.name for o in open_session(blob).get_outputs()]

    runs = {
        "onnxruntime-1.16": run_json([ort116(), "-c", PYTHON_RUNNER, str(model), str(rows_file), *columns]),
        "onnxruntime": run_json([sys.executable, "-c", PYTHON_RUNNER, str(model), str(rows_file), *columns]),
        "onnxruntime-node": run_json(
            [node(), "--input-type=module", "-e", NODE_RUNNER, str(model), str(rows_file), *columns], cwd=NODE_DIR
        ),
    }
    with static_server(ROOT) as base, chromium_page(tmp_path / "profile") as (page, watch):
        page.goto(f"{base}/examples/web/")
        page.wait_for_selector("body[data-state=ready]", timeout=60_000)
        web = page.evaluate(WEB_RUNNER, rows)
        watch.check()
    assert web["sha256"] == settings.sha256
    runs["onnxruntime-web"] = web

    assert runs["onnxruntime-1.16"]["runtime"].startswith("1.16.")
    prices = {name: as_arrays(run["outputs"]) for name, run in runs.items()}
    lines = [f"{name} {run['runtime']}" for name, run in runs.items()]
    for name, outputs in prices.items():
        assert list(outputs) == expected_outputs, f"{name} gives outputs {list(outputs)}"
        for output, values in outputs.items():
            assert len(values) == ROWS
            assert np.array_equal(np.isnan(values), invalid), f"{name} {output}: NaN not exactly on the invalid rows"
    for (a, pa), (b, pb) in itertools.combinations(prices.items(), 2):
        for output in expected_outputs:
            diff = float(np.max(np.abs(pa[output][~invalid] - pb[output][~invalid])))
            lines.append(f"{a} vs {b} {output}: max |diff| ${diff:.6f}")
            assert diff <= TOLERANCE, f"{a} and {b} differ by ${diff:.4f} on {output}"
    print(f"\n{ROWS} rows, {int(invalid.sum())} NaN rows in every output:\n" + "\n".join(lines))
