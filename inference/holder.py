"""The model holder: load a model fully, then swap it in; requests keep the model they started with.

Every check (sha256, registry confinement, interface, schema, a trial prediction) runs before the
swap, so a failed load leaves the serving model untouched."""

from __future__ import annotations

import concurrent.futures
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import NamedTuple

import anyio
import anyio.to_thread

from inference.deadline import DEADLINES, ModelTooSlow
from inference.errors import hide_paths
from inference.files import MAX_MODEL_BYTES, FileIdentity, regular_identity
from inference.loaded import LoadedModel, PricedListener
from inference.modelsettings import ModelFileError, ModelSettings, read_verified_model
from inference.onnx_io import (
    check_interface,
    open_session,
)

log = logging.getLogger(__name__)


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
        identity = regular_identity(self.settings_path)
        settings, blob = self._read(started)
        return self._open(settings, blob, identity, started)

    def _read(self, started: float, abandoned: threading.Event | None = None) -> tuple[ModelSettings, bytes]:
        try:
            return read_verified_model(self.settings_path, self.registry, self.max_model_bytes)
        except ModelFileError:
            self._report("failure", time.perf_counter() - started, None, abandoned)
            raise
        except Exception as exc:  # whatever a hostile file provokes is a bad file, never a crash
            self._report("failure", time.perf_counter() - started, None, abandoned)
            raise ModelFileError(f"cannot read {self.settings_path}: {type(exc).__name__}: {exc}") from exc

    def _open(
        self,
        settings: ModelSettings,
        blob: bytes,
        identity: FileIdentity | None,
        started: float,
        abandoned: threading.Event | None = None,
    ) -> LoadedModel:
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
            self._report("failure", time.perf_counter() - started, None, abandoned)
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
        identity = regular_identity(self.settings_path)
        settings, blob = self._read(started, abandoned)
        current = self._current
        if current is not None and (current.version, current.sha256) == (settings.version, settings.sha256):
            # Same model (verified bytes): keep the warm session, remember this file state as handled.
            kept = replace(current, identity=identity)
            with self._swap_lock:
                self._current = kept
            self.last_error = None
            self._report("unchanged", time.perf_counter() - started, kept)
            return Reload(kept, current, changed=False)
        model = self._open(settings, blob, identity, started, abandoned)
        with self._swap_lock:  # decided under the lock the timeout takes: swapped, or abandoned, never both
            if abandoned is not None and abandoned.is_set():
                raise ModelFileError("abandoned after LOAD_TIMEOUT")
            previous, self._current = self._current, model
        self._announce(model)
        return Reload(model, previous, changed=True)

    def _report(
        self, outcome: str, seconds: float, model: LoadedModel | None, abandoned: threading.Event | None = None
    ) -> None:
        if abandoned is not None and abandoned.is_set():  # reload() already reported the timeout
            return
        if self._on_load is not None:
            self._on_load(outcome, seconds, model)
