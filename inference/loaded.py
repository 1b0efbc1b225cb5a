"""A loaded model: an onnxruntime session with the settings that named it, immutable, priced in cents."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import onnxruntime as ort

from inference.deadline import DEADLINES, INLINE_SECONDS, SLOW_SECONDS, Speed
from inference.errors import UnpriceableRows
from inference.files import FileIdentity
from inference.modelsettings import ModelSettings
from inference.onnx_io import (
    OUTPUT,
    RANGE_OUTPUTS,
    make_feeds,
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


@dataclass(frozen=True)
class LoadedModel:
    session: ort.InferenceSession
    settings: ModelSettings
    identity: FileIdentity | None
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

    def price_list(self, columns: Columns, *, observe: bool = True) -> list[list[float]]:
        """:meth:`price` as lists, for single rows: small batches round in plain Python (half-to-even, as
        ``np.rint``), since numpy's call overhead outweighs its arithmetic there."""
        values = self._predict(columns)
        if observe and self.on_priced is not None:
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
