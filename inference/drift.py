"""Input drift, live: do the diamonds priced lately look like the ones the model was trained on?

Each worker counts the rows it prices into the serving model's baseline bins
(:mod:`inference.baseline`) and keeps them in a few time-stamped slots: a slot closes when it holds
``window_rows / 20`` rows or is ``window_seconds / 20`` old. The window is the newest slots, over
every worker, up to ``DRIFT_WINDOW_ROWS`` rows and no older than ``DRIFT_WINDOW_SECONDS``; its
population stability index (PSI) per feature is computed when it is read.

Across workers: each worker's slots live in a small file of its own (``drift-<pid>.bin``) in
``PROMETHEUS_MULTIPROC_DIR``, mapped into its memory, so counting is a few additions to memory and no
system call. A scrape (or ``GET /models/{version}/drift``) reads the files of the live workers
serving the same model and sums them. Why not multiprocess counters: the client library's counters
never forget, so a sliding window would need a reset protocol across processes; with slots, a
window is a sum over time stamps, and a reload simply starts a fresh file. Without that directory
(tests in one process) the slots live in memory.

Cost: up to :data:`SMALL` rows (the single-row path) the bins are found in plain Python; beyond,
in numpy with categories counted by :class:`collections.Counter`, over a random sample of
:data:`SAMPLE` rows weighted to the call's size, so a call's cost stops growing there. The
unpriceable share is counted on every row. Counting never raises into pricing: an error is logged
once and the window stops.
"""

from __future__ import annotations

import logging
import math
import operator
import os
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from inference.baseline import BASELINE_KEY, Baseline
from inference.onnx_io import metadata

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from inference.holder import LoadedModel

log = logging.getLogger(__name__)

WATCH = 0.1
"""PSI from which a feature is worth watching."""
ACT = 0.25
"""PSI from which the inputs have moved: retrain on recent data (the alert's threshold)."""
SMALL = 16
SAMPLE = 256
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
    """One worker's slots for one model: float64 ``[started, bins...]`` each, after a header
    ``[magic, pid, version, sha tag, bins, slots, 0, 0]``."""

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
            self.array = np.memmap(self.path, dtype=np.float64, mode="r+")
        self.cursor, self.rows = 0, 0
        self.array[HEADER] = time.time()
        self.lock = threading.Lock()
        self.rng = np.random.default_rng()

    def observe(self, columns: Mapping[str, Any], values: np.ndarray) -> None:
        n = len(values)
        if n <= SMALL:
            small = {k: v if isinstance(v, list) else np.asarray(v).reshape(-1).tolist() for k, v in columns.items()}
            positions = self.baseline.positions(small, values.tolist())
        else:
            counts = self._sampled(columns, values)
        now = time.time()
        with self.lock:
            base = HEADER + self.cursor * self.width
            a = self.array
            if self.rows >= self.per_slot or now - a[base] >= self.slot_seconds:
                self.cursor = (self.cursor + 1) % SLOTS
                base = HEADER + self.cursor * self.width
                a[base : base + self.width] = 0.0
                a[base] = now
                self.rows = 0
            if n <= SMALL:
                for p in positions:
                    a[base + 1 + p] += 1.0
            else:
                a[base + 1 : base + self.width] += counts
            self.rows += n

    def _sampled(self, columns: Mapping[str, Any], values: np.ndarray) -> np.ndarray:
        """:meth:`Baseline.count` of :data:`SAMPLE` rows drawn at random (a stride could beat in step
        with a pattern in the batch), weighted back to all the priced rows; the unpriceable bins
        count every row."""
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
    """The window as every worker counted it."""

    counts: np.ndarray
    rows: int
    since: float | None
    """Start of the oldest slot in the window (epoch seconds); None while it is empty."""
    workers: int


class DriftMonitor(Collector):
    """The process's drift tracking: a load listener, the pricing hook, a Prometheus collector."""

    def __init__(self, settings: DriftSettings, directory: Path | None) -> None:
        self.settings, self.directory = settings, directory
        self.window: Window | None = None
        self.serving: tuple[int, str] | None = None

    def on_load(self, outcome: str, seconds: float, model: LoadedModel | None) -> None:
        """A new serving model starts a new window against its own baseline (or none)."""
        if model is None or (model.version, model.sha256) == self.serving or self.settings.window_rows <= 0:
            return
        self.serving = (model.version, model.sha256)
        previous, self.window = self.window, None
        if previous is not None:
            previous.close()
        raw = metadata(model.session).get(BASELINE_KEY)
        if raw is None:
            log.info("model v%d carries no input baseline: no drift is reported for it", model.version)
            return
        try:
            baseline = Baseline.from_json(raw)
        except ValueError as exc:
            log.warning(
                "model v%d: its input baseline is unusable (%s); no drift is reported for it", model.version, exc
            )
            return
        self.window = Window(baseline, model.version, model.sha256, self.settings, self.directory)

    def observe(self, columns: Mapping[str, Any], values: np.ndarray) -> None:
        """The pricing hook: ``columns`` fed to the model, ``values`` its outputs ``[N, k]``."""
        window = self.window
        if window is None:
            return
        try:
            window.observe(columns, values)
        except Exception:  # drift is an observer: never a failure to price
            log.exception("input drift tracking failed; it stops for this model")
            self.window = None

    def read(self) -> Reading | None:
        """Every live worker's slots for the serving model, newest first, up to the window's rows and age."""
        window = self.window
        if window is None:
            return None
        arrays = [window.array] if self.directory is None else list(_arrays(self.directory))
        now, width = time.time(), window.width
        slots: list[np.ndarray] = []
        for a in arrays:
            head = a[:HEADER]
            if len(a) != HEADER + SLOTS * width or tuple(head[[0, 2, 3, 4]]) != (
                MAGIC,
                window.version,
                window.tag,
                width - 1,
            ):
                continue
            s = a[HEADER:].reshape(SLOTS, width)
            slots.append(s[(s[:, 0] > 0) & (s[:, 0] >= now - self.settings.window_seconds)])
        table = np.concatenate(slots) if slots else np.zeros((0, width))
        table = table[np.argsort(-table[:, 0], kind="stable")]
        rows = table[:, -2] + table[:, -1]
        keep = int(np.searchsorted(np.cumsum(rows), self.settings.window_rows)) + 1
        table = table[:keep]
        counts = table[:, 1:].sum(axis=0)
        since = float(table[:, 0].min()) if len(table) and counts[-2:].sum() > 0 else None
        return Reading(counts, round(float(counts[-2:].sum())), since, len(slots))

    def psi(self, reading: Reading) -> dict[str, float | None]:
        """Feature -> PSI; None until the window holds :attr:`DriftSettings.min_rows` rows."""
        assert self.window is not None
        values = self.window.baseline.psi(reading.counts)
        enough = reading.rows >= self.settings.min_rows
        return {name: (v if enough else None) for name, v in values.items()}

    def collect(self) -> Iterator[Metric]:
        psi = GaugeMetricFamily(
            "diamond_input_drift_psi",
            f"Population stability index of each input over the drift window against the serving model's "
            f"training baseline (watch from {WATCH}, act from {ACT}).",
            labels=["feature"],
        )
        rows = GaugeMetricFamily("diamond_input_drift_window_rows", "Rows priced in the drift window, all workers.")
        reading = self.read()
        if reading is not None:
            rows.add_metric([], reading.rows)
            for name, value in self.psi(reading).items():
                if value is not None:
                    psi.add_metric([name], value)
        yield psi
        yield rows

    def view(self) -> dict[str, Any]:
        """The JSON view: the window, each feature's PSI and status, expected and observed shares."""
        reading = self.read()
        window = self.window
        out: dict[str, Any] = {
            "baseline": window is not None,
            "thresholds": {"watch": WATCH, "act": ACT},
            "window": {
                "max_rows": self.settings.window_rows,
                "max_seconds": self.settings.window_seconds,
                "min_rows": self.settings.min_rows,
                "rows": None if reading is None else reading.rows,
                "since": None if reading is None else reading.since,
                "workers": None if reading is None else reading.workers,
            },
            "features": {},
        }
        if reading is None or window is None:
            return out
        expected = window.baseline.shares()
        labels = window.baseline.labels()
        for name, value in self.psi(reading).items():
            where = window.baseline.slices[name]
            total = reading.counts[where].sum()
            observed = (reading.counts[where] / total).tolist() if total > 0 else [None] * len(labels[name])
            out["features"][name] = {
                "psi": None if value is None else round(value, 6),
                "status": status(value),
                "expected": expected[name],
                "observed": dict(zip(labels[name], observed, strict=True)),
            }
        return out

    def close(self) -> None:
        if self.window is not None:
            self.window.close()


def status(psi: float | None) -> str:
    if psi is None:
        return "too few rows"
    return "act" if psi >= ACT else "watch" if psi >= WATCH else "stable"


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
