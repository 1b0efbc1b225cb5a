"""The model holder: load a model fully, then swap it in; requests keep the model they started with.

A :class:`LoadedModel` is immutable: an onnxruntime session plus the settings that
named it. The :class:`ModelHolder` owns the current one. Loading happens off the
event loop and is checked end to end (sha256, registry confinement, the graph's
interface, the feature schema it was trained for, one trial prediction) before the
reference is replaced, so a failed load leaves the serving model untouched.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import onnxruntime as ort

from inference.errors import UnpriceableRows
from inference.modelsettings import ModelFileError, ModelSettings, read_verified_model
from inference.onnx_io import (
    OUTPUT,
    RANGE_OUTPUTS,
    check_interface,
    make_feeds,
    open_session,
    predict_outputs,
    range_level,
)

log = logging.getLogger(__name__)

SMALL_BATCH = 16
"""Rows up to which :meth:`LoadedModel.price_list` rounds in plain Python."""
Columns = Mapping[str, Sequence[Any] | np.ndarray]
"""One sequence of values per feature, as :func:`inference.onnx_io.make_feeds` takes them."""

FileIdentity = tuple[int, int, int, int] | None
"""(device, inode, size, mtime_ns) of the settings file; None when it is absent."""


def file_identity(path: Path) -> FileIdentity:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


@dataclass(frozen=True)
class LoadedModel:
    session: ort.InferenceSession
    settings: ModelSettings
    identity: FileIdentity
    """The settings file's identity when it was read for this model."""
    load_seconds: float
    loaded_at: float = field(default_factory=time.time)

    @property
    def version(self) -> int:
        return self.settings.version

    @property
    def sha256(self) -> str:
        return self.settings.sha256

    @cached_property
    def range_level(self) -> float | None:
        """The price range's nominal coverage (0.8 for an 80% range); None without a range."""
        return range_level(self.session)

    @cached_property
    def outputs(self) -> tuple[str, ...]:
        """``("price",)``, or ``("price", "price_low", "price_high")`` for a model with a price range."""
        return (OUTPUT,) if self.range_level is None else (OUTPUT, *RANGE_OUTPUTS)

    def price(self, columns: Columns) -> np.ndarray:
        """The one way both APIs price rows: feature columns in, float64 ``[N, len(outputs)]`` out,
        the values of :attr:`outputs` in USD rounded to cents, from one onnxruntime call;
        :class:`UnpriceableRows` if any row has no price (it lies outside the feature schema)."""
        return _cents(predict_outputs(self.session, make_feeds(columns), self.outputs))

    def price_list(self, columns: Columns) -> list[list[float]]:
        """:meth:`price` as one list per row, for the single-row path (:mod:`inference.batching`).
        Up to :data:`SMALL_BATCH` rows the rounding runs in plain Python, the same half-to-even
        rounding as ``np.rint`` (tested equal): numpy's seven calls cost more than their arithmetic
        on a row or two."""
        values = predict_outputs(self.session, make_feeds(columns), self.outputs)
        if len(values) > SMALL_BATCH:
            cents: list[list[float]] = _cents(values).tolist()
            return cents
        rows: list[list[float]] = values.tolist()
        if not all(math.isfinite(v) for row in rows for v in row):
            raise UnpriceableRows([i for i, row in enumerate(rows) if not all(map(math.isfinite, row))][:10])
        return [[round(v * 100.0) / 100.0 for v in row] for row in rows]


def _cents(values: np.ndarray) -> np.ndarray:
    """Output values (float32) as float64 USD rounded to cents; :class:`UnpriceableRows` for NaN."""
    cents = values.astype(np.float64)
    cents *= 100.0
    np.rint(cents, out=cents)
    cents /= 100.0
    if not np.isfinite(cents).all():
        raise UnpriceableRows(np.flatnonzero(~np.isfinite(cents).all(axis=1))[:10].tolist())
    return cents


class Reload(NamedTuple):
    """What :meth:`ModelHolder.reload` did."""

    current: LoadedModel
    previous: LoadedModel | None
    """The model serving before; None when none was."""
    changed: bool
    """False when the settings still named the serving model (it stays, warm)."""


LoadListener = Callable[[str, float, "LoadedModel | None"], None]
"""Called after each load attempt with the outcome, the seconds it took and the model."""


class ModelHolder:
    """Holds the current model for one process; safe to call from threads and the event loop."""

    def __init__(
        self,
        settings_path: Path,
        registry: Path,
        on_load: LoadListener | None = None,
    ) -> None:
        self.settings_path = settings_path
        self.registry = registry
        self._current: LoadedModel | None = None
        self._swap_lock = threading.Lock()
        self._reload_lock = threading.Lock()
        self._on_load = on_load
        self.last_error: str | None = None

    @property
    def current(self) -> LoadedModel | None:
        return self._current

    @property
    def unavailable_reason(self) -> str:
        """Why no model is serving (meaningful while :attr:`current` is None)."""
        return self.last_error or "still starting"

    def load(self) -> LoadedModel:
        """Read, verify and open the model the settings file names now. Does not swap."""
        started = time.perf_counter()
        identity = file_identity(self.settings_path)
        settings, blob = self._read(started)
        return self._open(settings, blob, identity, started)

    def _read(self, started: float) -> tuple[ModelSettings, bytes]:
        try:
            return read_verified_model(self.settings_path, self.registry)
        except ModelFileError:
            self._report("failure", time.perf_counter() - started, None)
            raise
        except Exception as exc:  # whatever a hostile file provokes is a bad file, never a crash
            self._report("failure", time.perf_counter() - started, None)
            raise ModelFileError(f"cannot read {self.settings_path}: {type(exc).__name__}: {exc}") from exc

    def _open(self, settings: ModelSettings, blob: bytes, identity: FileIdentity, started: float) -> LoadedModel:
        try:
            try:
                session = open_session(blob)
            except Exception as exc:  # onnxruntime raises its own error types for corrupt graphs
                raise ModelFileError(f"onnxruntime cannot load {settings.path}: {exc}") from None
            check_interface(session)
        except ModelFileError:
            self._report("failure", time.perf_counter() - started, None)
            raise
        return LoadedModel(session, settings, identity, time.perf_counter() - started)

    def swap(self, model: LoadedModel) -> LoadedModel | None:
        """Make ``model`` current; returns the previous one (still usable by requests holding it)."""
        with self._swap_lock:
            previous, self._current = self._current, model
        self.last_error = None
        self._report("success", model.load_seconds, model)
        log.info(
            "serving %s v%d (sha256 %s, MAE %.2f), loaded in %.0f ms",
            model.settings.name,
            model.version,
            model.sha256[:12],
            model.settings.mae,
            model.load_seconds * 1000,
        )
        return previous

    def reload(self) -> Reload:
        """Load the named model and swap it in unless it is already the one serving (the same
        version and sha256: then the warm session stays). Reloads are serialized."""
        with self._reload_lock:
            return self._reload()

    def _reload(self) -> Reload:
        started = time.perf_counter()
        identity = file_identity(self.settings_path)
        settings, blob = self._read(started)
        current = self._current
        if current is not None and (current.version, current.sha256) == (settings.version, settings.sha256):
            # Same model (verified bytes): keep the warm session, remember this file state as handled.
            kept = LoadedModel(current.session, current.settings, identity, current.load_seconds, current.loaded_at)
            with self._swap_lock:
                self._current = kept
            self.last_error = None
            self._report("unchanged", time.perf_counter() - started, kept)
            return Reload(kept, current, changed=False)
        model = self._open(settings, blob, identity, started)
        return Reload(model, self.swap(model), changed=True)

    def _report(self, outcome: str, seconds: float, model: LoadedModel | None) -> None:
        if self._on_load is not None:
            self._on_load(outcome, seconds, model)
