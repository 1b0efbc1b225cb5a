"""The drift window's storage: each worker's counts in time-stamped slots, and the window read over all.

Slots live in a memory-mapped file per worker in ``PROMETHEUS_MULTIPROC_DIR`` (in memory without
one), so counting makes no system call."""

from __future__ import annotations

import math
import operator
import os
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from inference.baseline import Baseline

SMALL = 16
"""Rows up to which a call is only queued, so a single-row request pays a list append."""
SAMPLE = 512
"""Rows a larger call is counted from (a random sample, weighted back), so its cost stops growing."""
PENDING = 64
"""Rows of small calls queued before they are counted together."""
PENDING_SECONDS = 1.0
"""...or the age of the oldest queued call at which they are (checked at each call, and by :func:`read`)."""
SLOTS = 21
"""Slots per worker: 20 make a full window, one more is filling."""
HEADER = 8
MAGIC = 0x5053_4931  # "PSI1"
FILE_GLOB = "drift-*.bin"


@dataclass(frozen=True)
class DriftSettings:
    window_rows: int = 10_000
    """The window's rows (``DRIFT_WINDOW_ROWS``); 0 turns drift tracking off."""
    window_seconds: float = 3600.0
    """The window's age (``DRIFT_WINDOW_SECONDS``)."""
    min_rows: int = 500
    """Rows the window needs before a PSI is reported (``DRIFT_MIN_ROWS``): fewer make noise."""


class Window:
    """One worker's slots for one model, after a header that names the worker and the model."""

    def __init__(self, baseline: Baseline, version: int, sha256: str, settings: DriftSettings, directory: Path | None):
        self.baseline, self.version, self.tag = baseline, version, _tag(sha256)
        self.width = 1 + baseline.size
        self.per_slot = max(1, math.ceil(settings.window_rows / (SLOTS - 1)))
        self.slot_seconds = settings.window_seconds / (SLOTS - 1)
        header = np.array([MAGIC, os.getpid(), version, self.tag, baseline.size, SLOTS, 0, 0], dtype=np.float64)
        self.path = None if directory is None else directory / f"drift-{os.getpid()}.bin"
        if self.path is None:
            self.array = np.zeros(HEADER + SLOTS * self.width)
            self.array[:HEADER] = header
        else:  # a whole file appears at once, so readers never see a short one
            partial = self.path.with_suffix(".tmp")
            np.concatenate([header, np.zeros(SLOTS * self.width)]).tofile(partial)
            os.replace(partial, self.path)
            # a plain array over the mapping: np.memmap's own indexing runs Python code per access
            self.array = np.memmap(self.path, dtype=np.float64, mode="r+").view(np.ndarray)
        self.cursor, self.rows = 0, 0
        self.array[HEADER] = time.time()
        self.lock = threading.Lock()
        self.pending: list[tuple[Mapping[str, Any], np.ndarray]] = []
        self.pending_rows, self.pending_since = 0, time.time()
        self.rng = np.random.default_rng()

    def observe(self, columns: Mapping[str, Any], values: np.ndarray) -> None:
        """Count one model call; small calls are only queued and counted together, so a single-row request
        pays a list append."""
        now = time.time()
        if len(values) <= SMALL:
            with self.lock:
                self.pending.append((columns, values))
                self.pending_rows += len(values)
                if self.pending_rows < PENDING and now - self.pending_since < PENDING_SECONDS:
                    return
            self.flush()
            return
        if self.pending:
            self.flush()
        self._add(self._sampled(columns, values), len(values), now)

    def flush(self) -> None:
        """Count the queued calls (their columns joined) with one :meth:`Baseline.count`."""
        with self.lock:
            pending, self.pending = self.pending, []
            rows, self.pending_rows, self.pending_since = self.pending_rows, 0, time.time()
        if not pending:
            return
        columns = {name: [v for c, _ in pending for v in _values(c[name])] for name in pending[0][0]}
        values = np.concatenate([v for _, v in pending])
        self._add(self.baseline.count(columns, values).astype(np.float64), rows, time.time())

    def _add(self, counts: np.ndarray, rows: int, now: float) -> None:
        with self.lock:
            base = HEADER + self.cursor * self.width
            a = self.array
            if self.rows >= self.per_slot or now - a[base] >= self.slot_seconds:
                self.cursor = (self.cursor + 1) % SLOTS
                base = HEADER + self.cursor * self.width
                a[base : base + self.width] = 0.0
                a[base] = now
                self.rows = 0
            a[base + 1 : base + self.width] += counts
            self.rows += rows

    def _sampled(self, columns: Mapping[str, Any], values: np.ndarray) -> np.ndarray:
        """Count a random sample, weighted back to all priced rows (a stride could beat in step with a
        pattern in the batch); unpriceable bins count every row."""
        n = len(values)
        if n <= SAMPLE:
            return self.baseline.count(columns, values).astype(np.float64)
        at = self.rng.integers(0, n, SAMPLE)
        pick = operator.itemgetter(*at.tolist())
        sample = {k: v.reshape(-1)[at] if isinstance(v, np.ndarray) else pick(v) for k, v in columns.items()}
        counts = self.baseline.count(sample, values[at]).astype(np.float64)
        priced = int(np.count_nonzero(np.isfinite(values[:, 0])))
        if counts[-2] > 0:
            counts[:-2] *= priced / counts[-2]
        counts[-2:] = (priced, n - priced)
        return counts

    def close(self) -> None:
        if self.path is not None:
            self.path.unlink(missing_ok=True)


@dataclass(frozen=True)
class Reading:
    counts: np.ndarray
    rows: int
    since: float | None
    """Start of the oldest slot in the window (epoch seconds); None while it is empty."""
    workers: int


def read(window: Window, settings: DriftSettings, directory: Path | None) -> Reading:
    """Every live worker's slots for ``window``'s model, newest first, within the window's rows and age."""
    window.flush()  # this worker's queued rows; another worker's wait for its next call
    arrays = [window.array] if directory is None else list(_arrays(directory))
    now, width = time.time(), window.width
    slots: list[np.ndarray] = []
    for a in arrays:
        if len(a) != HEADER + SLOTS * width or tuple(a[[0, 2, 3, 4]]) != (MAGIC, window.version, window.tag, width - 1):
            continue
        s = a[HEADER:].reshape(SLOTS, width)
        slots.append(s[(s[:, 0] > 0) & (s[:, 0] >= now - settings.window_seconds)])
    table = np.concatenate(slots) if slots else np.zeros((0, width))
    table = table[np.argsort(-table[:, 0], kind="stable")]
    rows = table[:, -2] + table[:, -1]
    table = table[: int(np.searchsorted(np.cumsum(rows), settings.window_rows)) + 1]
    counts = table[:, 1:].sum(axis=0)
    since = float(table[:, 0].min()) if len(table) and counts[-2:].sum() > 0 else None
    return Reading(counts, round(float(counts[-2:].sum())), since, len(slots))


def _arrays(directory: Path) -> Iterator[np.ndarray]:
    """The slot files of live workers (a file whose worker died is skipped)."""
    for path in directory.glob(FILE_GLOB):
        try:
            pid = int(path.stem.removeprefix("drift-"))
            if pid != os.getpid():
                os.kill(pid, 0)
            yield np.fromfile(path, dtype=np.float64)
        except (ValueError, OSError):
            continue


def _tag(sha256: str) -> float:
    """The first 52 bits of the sha256, exact in a float64."""
    return float(int(sha256[:13], 16))


def _values(column: Any) -> list[Any]:
    return column if isinstance(column, list) else np.asarray(column).reshape(-1).tolist()
