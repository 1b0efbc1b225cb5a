"""Unit tests of small modules the end-to-end tests only cross: the lookup's binary-search
trees, V2 binary decoding and encoding, the settings watcher and the service's configuration.
(Path resolution: tests/test_paths.py; metrics: tests/rest/test_metrics.py.)"""

from __future__ import annotations

import asyncio
import json
import logging
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from inference.config import ConfigError, Settings
from inference.errors import BadRequest
from inference.holder import ModelHolder
from inference.rest.wire import strict_loads
from inference.v2.binary import HEADER_LENGTH, decode_bytes, decode_fp32, encode_response
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
    decoded = decode_fp32(memoryview(values.tobytes()), 3, "input 'carat'")
    assert decoded.dtype == np.float32 and decoded.tolist() == values.tolist()
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


def test_a_binary_response_is_the_compact_json_then_each_blob_in_order() -> None:
    r = encode_response({"outputs": [{"name": "price"}]}, [b"\x01\x02", b"", b"\x03"])
    head = b'{"outputs":[{"name":"price"}]}'
    assert r.body == head + b"\x01\x02\x03"
    assert r.headers[HEADER_LENGTH] == str(len(head)) and r.media_type == "application/octet-stream"
    plain = encode_response({"outputs": []}, [])
    assert json.loads(plain.body) == {"outputs": []} and plain.media_type == "application/json"
    assert HEADER_LENGTH not in plain.headers


@pytest.mark.parametrize("raw", [b'{"a": NaN}', b'{"a": Infinity}', b"\xff", b"[" * 100_000])
def test_strict_json_refuses_what_json_does_not_allow(raw: bytes) -> None:
    with pytest.raises(BadRequest, match="malformed JSON"):
        strict_loads(raw)


def test_an_empty_environment_gives_the_documented_defaults() -> None:
    assert Settings.from_env({}) == Settings()


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("1", True), ("TRUE", True), ("yes", True), ("On", True), ("0", False), ("False", False), ("NO", False),
     ("off", False), ("", True)],
)  # fmt: skip
def test_flags_take_the_usual_words_in_any_case_and_empty_means_the_default(raw: str, expected: bool) -> None:
    assert Settings.from_env({"MODEL_AUTO_RELOAD": raw}).auto_reload is expected
    assert Settings.from_env({"ACCESS_LOG": raw}).access_log is (expected if raw else False)


def test_the_edges_of_every_range_are_accepted() -> None:
    low = Settings.from_env({"RELOAD_INTERVAL": "0.05", "BODY_TIMEOUT": "0.1", "PORT": "0", "MAX_HEADER_BYTES": "1024"})
    assert (low.reload_interval, low.body_timeout, low.port, low.max_header_bytes) == (0.05, 0.1, 0, 1024)
    high = Settings.from_env({"RELOAD_INTERVAL": "60", "BODY_TIMEOUT": "3600", "HEADER_TIMEOUT": "3600"})
    assert (high.reload_interval, high.body_timeout, high.header_timeout) == (60.0, 3600.0, 3600.0)


def test_directories_become_absolute_and_the_log_level_lowercase(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    s = Settings.from_env({"STATIC_DIR": "docs", "CALCULATOR_DIR": "web/calc", "LOG_LEVEL": "DEBUG", "HOST": ""})
    assert s.static_dir == tmp_path / "docs" and s.calculator_dir == tmp_path / "web" / "calc"
    assert s.log_level == "debug" and s.host == "127.0.0.1"


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
        ({"RELOAD_INTERVAL": "soon"}, "RELOAD_INTERVAL must be a number, got 'soon'"),
        ({"RELOAD_INTERVAL": "0.049"}, "RELOAD_INTERVAL must be between 0.05 and 60 seconds"),
        ({"RELOAD_INTERVAL": "60.5"}, "RELOAD_INTERVAL must be between 0.05 and 60 seconds"),
        ({"BODY_TIMEOUT": "inf"}, "BODY_TIMEOUT must be between 0.1 and 3600 seconds"),
        ({"HEADER_TIMEOUT": "0"}, "HEADER_TIMEOUT must be between 0.1 and 3600 seconds"),
        ({"PORT": "-1"}, "PORT must be >= 0, got '-1'"),
        ({"MAX_HEADER_BYTES": "1023"}, "MAX_HEADER_BYTES must be >= 1024, got '1023'"),
        ({"LIMIT_CONCURRENCY": "1.5"}, "LIMIT_CONCURRENCY must be an integer, got '1.5'"),
        ({"MAX_BODY_BYTES": "0"}, "MAX_BODY_BYTES must be >= 1"),
        ({"ACCESS_LOG": "2"}, "ACCESS_LOG must be 0 or 1, got '2'"),
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


async def until(condition: Callable[[], bool]) -> None:
    """Wait, without blocking the event loop, until ``condition()`` holds (TimeoutError after 10 s)."""
    async with asyncio.timeout(10):
        while not condition():  # noqa: ASYNC110 - the watcher and its reload thread set no event to wait on
            await asyncio.sleep(0.01)


def watcher_errors(caplog: pytest.LogCaptureFixture, text: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "inference.watcher" and text in r.getMessage()]


def test_while_nothing_serves_the_watcher_retries_every_check_until_the_model_loads(
    served: Project, caplog: pytest.LogCaptureFixture
) -> None:
    """The pointer is there from the start, its model file only later: the settings file never
    changes, yet the watcher picks the model up."""
    model = served.registry / "diamond_price-v1.onnx"
    away = model.rename(served.root / "away.onnx")
    holder = ModelHolder(served.settings, served.registry)

    async def scenario() -> int | None:
        task = asyncio.create_task(watch_settings(holder, 0.02))
        await until(lambda: len(watcher_errors(caplog, "cannot be loaded")) == 1)
        await asyncio.sleep(0.2)  # about ten more checks, each a failed load
        assert holder.current is None
        away.rename(model)
        # the swap happens in the reload thread, the log line after it on the loop: wait for both
        await until(lambda: holder.current is not None and bool(watcher_errors(caplog, "now serving v1")))
        task.cancel()
        return holder.current.version if holder.current else None

    with caplog.at_level(logging.INFO, logger="inference.watcher"):
        assert asyncio.run(scenario()) == 1
    (error,) = watcher_errors(caplog, "cannot be loaded")  # once, not once per check
    assert "no model is serving" in error.getMessage()
    assert watcher_errors(caplog, "now serving v1 (was none)")


def test_each_bad_change_is_logged_once_even_after_a_good_one(
    served: Project, caplog: pytest.LogCaptureFixture
) -> None:
    holder = ModelHolder(served.settings, served.registry)
    holder.swap(holder.load())
    good = add_version(served, 2)

    async def scenario() -> None:
        task = asyncio.create_task(watch_settings(holder, 0.02))
        for broken, logged in (("{broken", 1), ("{broken again", 2)):
            served.settings.write_text(broken)
            await until(lambda n=logged: len(watcher_errors(caplog, "cannot be loaded")) == n)
            await asyncio.sleep(0.2)  # about ten more checks of the same file
        write_atomically(served.settings, good)
        await until(lambda: holder.current is not None and holder.current.version == 2)
        served.settings.write_text("{broken")  # the first bad text again: a new change, so logged again
        await until(lambda: len(watcher_errors(caplog, "cannot be loaded")) == 3)
        task.cancel()

    with caplog.at_level(logging.ERROR, logger="inference.watcher"):
        asyncio.run(scenario())
    messages = [r.getMessage() for r in watcher_errors(caplog, "cannot be loaded")]
    assert len(messages) == 3
    assert ["still serving v1" in m for m in messages] == [True, True, False]
    assert "still serving v2" in messages[2]


def test_an_unexpected_error_is_logged_and_the_watcher_keeps_watching(
    served: Project, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    holder = ModelHolder(served.settings, served.registry)
    holder.swap(holder.load())
    reload = holder.reload
    calls: list[int] = []

    def failing_once() -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("the disk is on fire")
        return reload()

    monkeypatch.setattr(holder, "reload", failing_once)

    async def scenario() -> bool:
        task = asyncio.create_task(watch_settings(holder, 0.02))
        write_atomically(served.settings, add_version(served, 2))
        await until(lambda: len(watcher_errors(caplog, "unexpected error")) == 1)
        write_atomically(served.settings, add_version(served, 3))  # the next change gets another try
        await until(lambda: holder.current is not None and holder.current.version == 3)
        alive = not task.done()
        task.cancel()
        return alive

    with caplog.at_level(logging.ERROR, logger="inference.watcher"):
        assert asyncio.run(scenario())
    (error,) = watcher_errors(caplog, "unexpected error")
    assert error.exc_info is not None and "the disk is on fire" in str(error.exc_info[1])


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
