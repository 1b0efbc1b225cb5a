"""Input drift, live: do the diamonds priced lately look like the ones the model was trained on?

Per-worker time-stamped slots, summed at scrape, rather than the client library's multiprocess
counters: those never forget, and a PSI is not a sum of per-worker PSIs."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from inference.baseline import BASELINE_KEY, Baseline
from inference.drift_window import DriftSettings, Reading, Window, read
from inference.onnx_io import metadata

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from inference.loaded import LoadedModel

log = logging.getLogger(__name__)

WATCH = 0.1
"""PSI from which a feature is worth watching."""
ACT = 0.25
"""PSI from which the inputs have moved: retrain on recent data (the alert's threshold)."""

__all__ = ["ACT", "WATCH", "DriftMonitor", "DriftSettings", "status"]


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
            self.window = Window(baseline, model.version, model.sha256, self.settings, self.directory)
        except Exception as exc:  # a bad baseline or an unwritable window: never a failure to serve
            log.warning(
                "model v%d: its input baseline is unusable (%s); no drift is reported for it", model.version, exc
            )

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

    def read(self, window: Window | None) -> Reading | None:
        """``window`` (taken once by the caller: a reload may replace it meanwhile) over every live
        worker serving its model; None without a baseline."""
        return None if window is None else read(window, self.settings, self.directory)

    def psi(self, window: Window, reading: Reading) -> dict[str, float | None]:
        """Feature -> PSI; None until the window holds :attr:`DriftSettings.min_rows` rows."""
        values = window.baseline.psi(reading.counts)
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
        window = self.window
        reading = self.read(window)
        if window is not None and reading is not None:
            rows.add_metric([], reading.rows)
            for name, value in self.psi(window, reading).items():
                if value is not None:
                    psi.add_metric([name], value)
        yield psi
        yield rows

    def view(self) -> dict[str, Any]:
        """The JSON view: the window, each feature's PSI and status, expected and observed shares."""
        window = self.window
        reading = self.read(window)
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
        for name, value in self.psi(window, reading).items():
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
