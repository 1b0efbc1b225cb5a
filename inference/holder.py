"""The model holder: load a model fully, then swap it in; requests keep the model they started with.

Every check (sha256, registry confinement, interface, schema, a trial prediction) runs before the
swap, so a failed load leaves the serving model untouched."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any, NamedTuple

import anyio
import anyio.to_thread
import numpy as np
import onnxruntime as ort

from inference.deadline import DEADLINES, INLINE_SECONDS, SLOW_SECONDS, ModelTooSlow, Speed
from inference.errors import UnpriceableRows, hide_paths
from inference.files import MAX_MODEL_BYTES
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

PricedListener = Callable[[Columns, np.ndarray], None]
"""Told of every model call: the feature columns and the outputs (:mod:`inference.drift` counts them)."""
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
    predict_timeout: float = 5.0
    """Seconds a model call in a worker thread may take (``PREDICT_TIMEOUT``)."""
    speed: Speed = field(default_factory=Speed, compare=False)
    """Set slow once a call on the event loop took too long: then every call goes to a thread."""
    on_priced: PricedListener | None = None

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
        """Feature columns in, USD rounded to cents out, from one onnxruntime call: the one way both APIs
        price; :class:`UnpriceableRows` if any row lies outside the feature schema."""
        values = self._predict(columns)
        if self.on_priced is not None:
            self.on_priced(columns, values)
        return _cents(values)

    def price_list(self, columns: Columns) -> list[list[float]]:
        """:meth:`price` as lists, for single rows: small batches round in plain Python (half-to-even, as
        ``np.rint``), since numpy's call overhead outweighs its arithmetic there."""
        values = self._predict(columns)
        if self.on_priced is not None:
            self.on_priced(columns, values)
        if len(values) > SMALL_BATCH:
            cents: list[list[float]] = _cents(values).tolist()
            return cents
        rows: list[list[float]] = values.tolist()
        if not all(math.isfinite(v) for row in rows for v in row):
            raise UnpriceableRows([i for i, row in enumerate(rows) if not all(map(math.isfinite, row))][:10])
        return [[round(v * 100.0) / 100.0 for v in row] for row in rows]

    def _predict(self, columns: Columns) -> np.ndarray:
        """One call under a deadline: a slow call on the event loop marks the model slow."""
        feeds = make_feeds(columns)

        def call(options: ort.RunOptions) -> np.ndarray:
            return predict_outputs(self.session, feeds, self.outputs, options)

        if asyncio._get_running_loop() is None:
            return DEADLINES.run(self.predict_timeout, call)
        started = time.thread_time()
        try:
            return DEADLINES.run(INLINE_SECONDS, call)
        finally:
            if time.thread_time() - started > SLOW_SECONDS:
                self.speed.slow = True


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
        max_model_bytes: int = MAX_MODEL_BYTES,
        load_timeout: float = 60.0,
        predict_timeout: float = 5.0,
        on_priced: PricedListener | None = None,
    ) -> None:
        self.settings_path = settings_path
        self.registry = registry
        self.max_model_bytes = max_model_bytes
        self.load_timeout = load_timeout
        self.predict_timeout = predict_timeout
        self._hung: concurrent.futures.Future[Reload] | None = None
        self._turns: anyio.CapacityLimiter | None = None
        self.timed_out = False
        """Whether the last reload ran out of ``LOAD_TIMEOUT`` (the watcher then waits for a change)."""
        self._current: LoadedModel | None = None
        self._swap_lock = threading.Lock()
        self._reload_lock = threading.Lock()
        self._on_load = on_load
        self._on_priced = on_priced
        self.last_error: str | None = None

    @property
    def current(self) -> LoadedModel | None:
        return self._current

    @property
    def unavailable_reason(self) -> str:
        """Why no model is serving, without absolute paths: it is shown to any caller."""
        return hide_paths(self.last_error or "still starting")

    def load(self) -> LoadedModel:
        """Read, verify and open the model the settings file names now. Does not swap."""
        started = time.perf_counter()
        identity = file_identity(self.settings_path)
        settings, blob = self._read(started)
        return self._open(settings, blob, identity, started)

    def _read(self, started: float) -> tuple[ModelSettings, bytes]:
        try:
            return read_verified_model(self.settings_path, self.registry, self.max_model_bytes)
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
            try:  # the trial prediction under LOAD_TIMEOUT: a graph that never ends is stopped
                DEADLINES.run(self.load_timeout, lambda options: check_interface(session, options))
            except ModelTooSlow:
                limit = f"LOAD_TIMEOUT ({self.load_timeout:g} s)"
                raise ModelFileError(f"the trial prediction did not finish within {limit}") from None
        except ModelFileError:
            self._report("failure", time.perf_counter() - started, None)
            raise
        seconds = time.perf_counter() - started
        return LoadedModel(
            session, settings, identity, seconds, predict_timeout=self.predict_timeout, on_priced=self._on_priced
        )

    def swap(self, model: LoadedModel) -> LoadedModel | None:
        """Make ``model`` current; returns the previous one (still usable by requests holding it)."""
        with self._swap_lock:
            previous, self._current = self._current, model
        self._announce(model)
        return previous

    def _announce(self, model: LoadedModel) -> None:
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

    def reload(self) -> Reload:
        """Load and swap in unless the same version and sha256 already serve (the warm session stays).

        Bounded by ``LOAD_TIMEOUT``: a load that never ends is abandoned (it will never swap in) and,
        until it ends, later reloads are refused rather than starting more threads."""
        if not self._reload_lock.acquire(timeout=self.load_timeout):
            raise ModelFileError(f"another model load is still running after LOAD_TIMEOUT ({self.load_timeout:g} s)")
        try:
            if self._hung is not None and not self._hung.done():
                raise ModelFileError(
                    f"an earlier model load has not finished after LOAD_TIMEOUT ({self.load_timeout:g} s); "
                    "restart the service to try again"
                )
            self._hung = None
            self.timed_out = False
            attempt: concurrent.futures.Future[Reload] = concurrent.futures.Future()
            abandoned = threading.Event()
            threading.Thread(target=self._attempt, args=(attempt, abandoned), name="model-load", daemon=True).start()
            try:
                return attempt.result(timeout=self.load_timeout)
            except concurrent.futures.TimeoutError:
                with self._swap_lock:
                    if not attempt.done():
                        abandoned.set()
                        self._hung = attempt
                if abandoned.is_set():
                    self.timed_out = True
                    self._report("failure", self.load_timeout, None)
                    raise ModelFileError(
                        f"loading the model did not finish within LOAD_TIMEOUT ({self.load_timeout:g} s)"
                    ) from None
                return attempt.result()
        finally:
            self._reload_lock.release()

    async def reload_async(self) -> Reload:
        """Callers queue here on the loop, not each in a worker thread: an update storm behind a slow load
        cannot use up the thread pool other requests need."""
        if self._turns is None:
            self._turns = anyio.CapacityLimiter(1)
        return await anyio.to_thread.run_sync(self.reload, limiter=self._turns)

    def _attempt(self, attempt: concurrent.futures.Future[Reload], abandoned: threading.Event) -> None:
        try:
            attempt.set_result(self._reload(abandoned))
        except BaseException as exc:
            attempt.set_exception(exc)

    def _reload(self, abandoned: threading.Event | None = None) -> Reload:
        started = time.perf_counter()
        identity = file_identity(self.settings_path)
        settings, blob = self._read(started)
        current = self._current
        if current is not None and (current.version, current.sha256) == (settings.version, settings.sha256):
            # Same model (verified bytes): keep the warm session, remember this file state as handled.
            kept = replace(current, identity=identity)
            with self._swap_lock:
                self._current = kept
            self.last_error = None
            self._report("unchanged", time.perf_counter() - started, kept)
            return Reload(kept, current, changed=False)
        model = self._open(settings, blob, identity, started)
        with self._swap_lock:  # decided under the lock the timeout takes: swapped, or abandoned, never both
            if abandoned is not None and abandoned.is_set():
                raise ModelFileError("abandoned after LOAD_TIMEOUT")
            previous, self._current = self._current, model
        self._announce(model)
        return Reload(model, previous, changed=True)

    def _report(self, outcome: str, seconds: float, model: LoadedModel | None) -> None:
        if self._on_load is not None:
            self._on_load(outcome, seconds, model)
