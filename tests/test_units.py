"""Unit tests of small modules the end-to-end tests only cross: the lookup's binary-search
trees, V2 binary decoding, the settings watcher and the service's configuration."""

from __future__ import annotations

import asyncio
import json
import logging
import struct
from typing import Any

import numpy as np
import pytest

from inference.config import ConfigError, Settings
from inference.errors import BadRequest
from inference.model import ModelHolder
from inference.v2_binary import decode_bytes, decode_fp32, strict_json
from inference.watcher import watch_settings
from tests.helpers import Project, add_version, write_atomically
from training.onnx_lookup import binner_attributes


def walk(attrs: dict[str, Any], x: np.ndarray) -> float:
    """Evaluate TreeEnsembleRegressor attributes on one row, as the ONNX spec defines them."""
    nodes = {(t, n): i for i, (t, n) in enumerate(zip(attrs["nodes_treeids"], attrs["nodes_nodeids"], strict=True))}
    leaves = {
        (t, n): w
        for t, n, w in zip(attrs["target_treeids"], attrs["target_nodeids"], attrs["target_weights"], strict=True)
    }
    total = 0.0
    for tree in sorted(set(attrs["nodes_treeids"])):
        i = nodes[(tree, 0)]
        while attrs["nodes_modes"][i] != "LEAF":
            value = x[attrs["nodes_featureids"][i]]
            go_true = np.isnan(value) or value <= np.float32(attrs["nodes_values"][i])
            i = nodes[(tree, attrs["nodes_truenodeids"][i] if go_true else attrs["nodes_falsenodeids"][i])]
        total += leaves[(tree, attrs["nodes_nodeids"][i])]
    return total


def test_binner_trees_sum_to_the_cell_number() -> None:
    rng = np.random.default_rng(3)
    cuts = [np.sort(rng.uniform(0, 5, 37)).astype(np.float32).astype(np.float64), np.array([0.5, 1.5, 2.5])]
    sizes = [len(c) + 1 for c in cuts]
    strides = [sizes[1], 1]
    attrs = binner_attributes(cuts, strides)
    assert attrs["aggregate_function"] == "SUM" and attrs["n_targets"] == 1
    for _ in range(300):
        x = np.array([rng.uniform(-1, 6), rng.integers(-1, 5)], dtype=np.float32)
        expected = sum(int(np.searchsorted(c, v, side="left")) * s for c, v, s in zip(cuts, x, strides, strict=True))
        assert walk(attrs, x) == expected, x
    # A cut value itself goes left (x <= cut), and NaN goes to the lowest bin.
    assert walk(attrs, np.array([cuts[0][5], 0.5], dtype=np.float32)) == 5 * strides[0]
    assert walk(attrs, np.array([np.nan, np.nan], dtype=np.float32)) == 0


def test_a_model_that_never_splits_does_not_compile() -> None:
    with pytest.raises(NotImplementedError, match="never splits"):
        binner_attributes([np.array([]), np.array([])], [1, 1])


def test_decode_fp32_reads_little_endian_and_checks_the_size() -> None:
    values = np.array([0.7, 1.5, -2.0], dtype="<f4")
    assert decode_fp32(memoryview(values.tobytes()), 3, "input 'carat'").tolist() == values.tolist()
    with pytest.raises(BadRequest, match="must be 12 bytes, got 8"):
        decode_fp32(memoryview(values.tobytes()[:8]), 3, "input 'carat'")


def bytes_elements(*items: bytes) -> memoryview:
    return memoryview(b"".join(struct.pack("<I", len(i)) + i for i in items))


def test_decode_bytes_reads_length_prefixed_utf8() -> None:
    assert decode_bytes(bytes_elements(b"Ideal", b"Very Good", b""), 3, "input 'cut'") == ["Ideal", "Very Good", ""]


@pytest.mark.parametrize(
    ("buf", "rows", "message"),
    [
        (bytes_elements(b"Ideal")[:3], 1, "truncated in its 4-byte length prefix"),
        (memoryview(struct.pack("<I", 99) + b"abc"), 1, "declares 99 bytes, only 3 remain"),
        (bytes_elements(b"\xff\xfe"), 1, "not valid UTF-8"),
        (bytes_elements(b"a", b"b"), 1, "holds more than 1 BYTES element"),
        (bytes_elements(b"a"), 2, "holds 1 BYTES element"),
    ],
)
def test_decode_bytes_names_what_is_wrong(buf: memoryview, rows: int, message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        decode_bytes(buf, rows, "input 'cut'")


@pytest.mark.parametrize("raw", [b'{"a": NaN}', b'{"a": Infinity}', b"\xff", b"[" * 100_000])
def test_strict_json_refuses_what_json_does_not_allow(raw: bytes) -> None:
    with pytest.raises(BadRequest, match="malformed JSON"):
        strict_json(raw)


def test_settings_come_from_the_environment_once() -> None:
    s = Settings.from_env({"PORT": "9000", "WORKERS": "3", "MODEL_AUTO_RELOAD": "0", "UPDATE_TOKEN": "t"})
    assert (s.port, s.workers, s.auto_reload, s.update_token) == (9000, 3, False, "t")
    assert Settings.from_env({}).port == 8000 and Settings.from_env({}).update_token is None


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"PORT": "eighty"}, "PORT must be an integer"),
        ({"WORKERS": "0"}, "WORKERS must be >= 1"),
        ({"MODEL_AUTO_RELOAD": "maybe"}, "MODEL_AUTO_RELOAD must be 0 or 1"),
        ({"RELOAD_INTERVAL": "nan"}, "RELOAD_INTERVAL must be between"),
    ],
)
def test_bad_settings_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(env)


def test_the_watcher_follows_the_pointer_and_logs_a_bad_one_once(
    served: Project, caplog: pytest.LogCaptureFixture
) -> None:
    holder = ModelHolder(served.settings, served.registry)
    holder.swap(holder.load())

    async def scenario() -> list[int | None]:
        seen: list[int | None] = []
        task = asyncio.create_task(watch_settings(holder, 0.05))
        write_atomically(served.settings, add_version(served, 2))
        await asyncio.sleep(0.5)
        seen.append(holder.current.version if holder.current else None)
        served.settings.write_text(json.dumps({"broken": True}))
        await asyncio.sleep(0.5)  # about ten checks of the same bad file
        seen.append(holder.current.version if holder.current else None)
        task.cancel()
        return seen

    with caplog.at_level(logging.ERROR, logger="inference.watcher"):
        assert asyncio.run(scenario()) == [2, 2]  # the bad file never replaces the serving model
    errors = [r for r in caplog.records if "cannot be loaded" in r.getMessage()]
    assert len(errors) == 1 and "still serving v2" in errors[0].getMessage()


@pytest.mark.slow
def test_training_imports_nothing_of_the_serving_stack() -> None:
    """The training image installs requirements/train.txt only: no starlette, uvicorn, anyio or
    prometheus-client. Importing every training entry point must not need them."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "for m in ('starlette', 'anyio', 'uvicorn', 'prometheus_client', 'httptools', 'uvloop'):\n"
        "    sys.modules[m] = None  # importing it raises ImportError\n"
        "import training.__main__, training.train, training.report, training.triton, training.versions\n"
        "import training.evaluate, training.gate, training.preflight\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
