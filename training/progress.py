"""What a training run is doing, while it does it: a fit takes minutes.

On a terminal, a live line under the log shows the stage, the time elapsed and, while the boosters
fit, each fit's iterations and an estimate of the time left; every finished stage and fit also
leaves a log line. Elsewhere (a pipe, a file, CI) there is no live line, only the log lines, one
per stage and one per fit, each with its time.

The boosters' iterations are read, while a fit runs, from the length of scikit-learn's private
``_predictors`` list (one entry per finished iteration, as :mod:`training.estimator` reads it too);
if a release renamed it, the line shows 0 iterations until the fit ends, and nothing else changes.
"""

from __future__ import annotations

import logging
import shutil
import sys
import threading
import time
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any, TextIO

import numpy as np

log = logging.getLogger(__name__)

CLEAR = "\r\x1b[K"
"""Back to the start of the line and erase it (ANSI)."""


def duration(seconds: float) -> str:
    """``12.3 s`` under a minute, ``4 min 05 s`` above."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest:02d} s"


def iterations_done(model: Any) -> int:
    """How many boosting iterations ``model`` has finished (0 before its first, or if unknown)."""
    return len(getattr(model, "_predictors", None) or ())


class Progress:
    """Reports a run's stages (:meth:`stage`) and its boosters' fits (:meth:`fit`, an estimator's
    ``FitHook``). Entered as a context manager on a terminal, it draws the live line from a thread and
    erases it before any log record is written, so that the two never share a line; on leaving, it
    ends the last stage (``<stage> failed after T`` when an exception leaves)."""

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        live: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
        tick: float = 0.5,
    ) -> None:
        self.stream = sys.stdout if stream is None else stream
        isatty = getattr(self.stream, "isatty", None)
        self.live = bool(isatty and isatty()) if live is None else live
        """Whether the live line is drawn (only while entered as a context manager)."""
        self.clock = clock
        self.tick = tick
        self.started = clock()
        self.current: str | None = None
        self.stage_started = self.started
        self.planned: list[int] = []
        self.fits_done = 0
        self.iterations_before = 0
        """Iterations of the fits already finished."""
        self.fitting: Any = None
        self._lock = threading.Lock()
        self._drawn = False
        self._hold = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Progress:
        if self.live:
            for handler in logging.getLogger().handlers:
                handler.addFilter(self._erase_before)
            self._thread = threading.Thread(target=self._run, name="training-progress", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None
            self.erase()
            for handler in logging.getLogger().handlers:
                handler.removeFilter(self._erase_before)
        if exc is not None and self.current is not None:
            log.info("%s failed after %s", self.current, duration(self.clock() - self.stage_started))
            self.current = None
        self.stage(None)

    def plan(self, iterations: Sequence[int]) -> None:
        """The iterations of each fit to come, in order: what the estimate of the time left counts on."""
        self.planned = list(iterations)

    def stage(self, name: str | None) -> None:
        """End the current stage, logging ``<stage> done in T``, and begin ``name`` (None: no stage)."""
        now = self.clock()
        if self.current is not None:
            spent, total = duration(now - self.stage_started), duration(now - self.started)
            log.info("%s done in %s (%s since the start)", self.current, spent, total)
        self.current, self.stage_started = name, now
        if self._thread is not None:
            self.draw()

    def fit(self, model: Any, X: np.ndarray, y: np.ndarray) -> Any:
        """Fit one booster, showing its iterations; logs ``fit k/n: I iterations in T`` when it ends."""
        started = self.clock()
        self.fitting = model
        try:
            model.fit(X, y)
        finally:
            self.fitting = None
        done = iterations_done(model)
        self.fits_done += 1
        self.iterations_before += done
        log.info("fit %s: %d iterations in %s", self._fit_label(), done, duration(self.clock() - started))
        return model

    def _fit_label(self) -> str:
        total = max(len(self.planned), self.fits_done)
        return f"{self.fits_done}/{total}" if total else str(self.fits_done)

    def estimate(self) -> float | None:
        """Seconds left in the fits, from their pace so far; None before there is a pace to go by."""
        total = sum(self.planned)
        done = self.iterations_before + (iterations_done(self.fitting) if self.fitting is not None else 0)
        spent = self.clock() - self.stage_started
        if not total or done <= 0 or done >= total or spent <= 0:
            return None
        return spent * (total - done) / done

    def line(self) -> str:
        """The live line: stage, elapsed time, the fit and its iterations, the estimate."""
        now = self.clock()
        parts = [self.current or "training", f"{duration(now - self.started)} elapsed"]
        if self.fitting is not None:
            number = self.fits_done + 1
            planned = self.planned[self.fits_done] if self.fits_done < len(self.planned) else None
            count = f"{iterations_done(self.fitting)}/{planned}" if planned else str(iterations_done(self.fitting))
            parts.append(f"fit {number}/{max(len(self.planned), number)}: {count} iterations")
        left = self.estimate() if self.current else None
        if left is not None:
            parts.append(f"about {duration(left)} left")
        return " | ".join(parts)

    def draw(self) -> None:
        """Redraw the live line (skipped once just after a log record, which may still be being written)."""
        width = max(20, shutil.get_terminal_size().columns - 1)
        with self._lock:
            if self._hold:
                self._hold = False
                return
            self.stream.write(CLEAR + self.line()[:width])
            self.stream.flush()
            self._drawn = True

    def erase(self) -> None:
        """Erase the live line, if one is drawn, so that what is written next starts a clean line."""
        with self._lock:
            if self._drawn:
                self.stream.write(CLEAR)
                self.stream.flush()
                self._drawn = False

    def _erase_before(self, record: logging.LogRecord) -> bool:
        self.erase()
        with self._lock:
            self._hold = True
        return True

    def _run(self) -> None:
        while not self._stop.wait(self.tick):
            self.draw()
