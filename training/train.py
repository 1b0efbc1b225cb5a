"""One training run: load, fit, export, gate, and promote or reject."""

from __future__ import annotations

import hashlib
import logging
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata as pkg_metadata
from typing import Any

import numpy as np
import onnx
import pandas as pd
from sklearn.pipeline import Pipeline

from inference.modelsettings import MODEL_NAME, SETTINGS_FORMAT, ModelFileError
from inference.onnx_io import make_feeds, open_session, predict
from inference.schema import FEATURES
from training import data, export, preflight
from training.paths import TrainingPaths
from training.pipeline import build_pipeline, describe
from training.registry import Registry

log = logging.getLogger(__name__)

PROTOCOL = (
    f"mean absolute error in USD over the holdout: the clean rows whose sha256(str(id)) "
    f"is 0 modulo {data.HOLDOUT_BUCKETS}. No version trains on them; both the candidate and the "
    "current model are scored from their .onnx files with onnxruntime on the same rows."
)
LIBRARIES = ("scikit-learn", "skl2onnx", "onnx", "onnxruntime", "numpy", "pandas", "protobuf")


class TrainingError(Exception):
    """A run that cannot complete; nothing was changed."""


@dataclass(frozen=True)
class Outcome:
    promoted: bool
    version: int
    """The version promoted, or the version the candidate would have had."""
    candidate_mae: float
    current_mae: float | None
    current_version: int | None


def mae_of(blob: bytes, frame: pd.DataFrame) -> float:
    """MAE of an .onnx model on ``frame``; rows it cannot price count as infinitely wrong."""
    columns = {n: frame[n].to_numpy() for n in FEATURES.names}
    prices = predict(open_session(blob), make_feeds(columns)).astype(np.float64)
    errors = np.abs(prices - frame[FEATURES.target].to_numpy())
    return float(np.mean(np.where(np.isnan(errors), np.inf, errors)))


def run(
    paths: TrainingPaths,
    *,
    wait: bool = True,
    pipeline_factory: Callable[[], Pipeline] = build_pipeline,
) -> Outcome:
    registry = Registry(paths.settings, paths.registry)
    preflight.check_writable(paths.settings, paths.registry)  # before minutes of fitting
    log.info("loading %s", paths.db)
    dataset = data.load(paths.db)
    frame = dataset.frame
    holdout_mask = dataset.holdout
    train, holdout = frame[~holdout_mask], frame[holdout_mask]
    if train.empty or holdout.empty:
        raise data.DataError(
            f"need rows on both sides of the split; have {len(train)} to train, {len(holdout)} held out"
        )
    log.info("clean rows: %d (%d to train, %d held out for the gate)", len(frame), len(train), len(holdout))

    pipeline = pipeline_factory()
    log.info("fitting %s", describe(pipeline)["estimator"])
    started = time.perf_counter()
    pipeline.fit(train[list(FEATURES.names)], train[FEATURES.target].to_numpy())
    log.info("fitted in %.1f s", time.perf_counter() - started)

    with registry.lock(wait=wait):
        try:
            current = registry.current()
        except ModelFileError as exc:
            raise TrainingError(
                f"the current model cannot be verified ({exc}); fix it or roll back with "
                "`python -m training promote --version N` before training"
            ) from None
        version = registry.next_version()
        created_at = datetime.now(UTC).isoformat(timespec="seconds")
        record: dict[str, Any] = {
            "format": SETTINGS_FORMAT,
            "name": MODEL_NAME,
            "version": version,
            "mae_protocol": PROTOCOL,
            "holdout_rows": len(holdout),
            "train_rows": len(train),
            "data_fingerprint": f"sha256:{dataset.fingerprint()}",
            **describe(pipeline),
            "libraries": {"python": platform.python_version(), **{n: _version(n) for n in LIBRARIES}},
            "created_at": created_at,
        }
        log.info("exporting candidate v%d to ONNX", version)
        try:
            model = export.to_onnx(pipeline, version=version, metadata=record)
            blob = model.SerializeToString()
            worst = export.check_parity(blob, pipeline, frame)
        except export.ExportError as exc:
            raise TrainingError(str(exc)) from None
        log.info("parity: onnxruntime within $%.6f of scikit-learn on all %d rows", worst, len(frame))

        candidate_mae = mae_of(blob, holdout)
        current_mae = None
        if current is not None:
            try:
                current_mae = mae_of(current.blob, holdout)
            except Exception as exc:  # onnxruntime errors: the current model does not fit the schema
                raise TrainingError(f"cannot score the current model v{current.settings.version}: {exc}") from None
        promote = current_mae is None or candidate_mae < current_mae
        current_version = current.settings.version if current else None
        if current is None:
            log.info("decision: promote v%d (MAE %.2f; no current model)", version, candidate_mae)
        else:
            verdict = "promote" if promote else "reject"
            log.info(
                "decision: %s candidate (MAE %.2f) vs current v%d (MAE %.2f) on the same %d held-out rows",
                verdict,
                candidate_mae,
                current_version,
                current_mae,
                len(holdout),
            )

        history: dict[str, Any] = {
            "time": created_at,
            "event": "train",
            "decision": "promoted" if promote else "rejected",
            "candidate_mae": round(candidate_mae, 4),
            "current_mae": None if current_mae is None else round(current_mae, 4),
            "current_version": current_version,
            "version": version if promote else None,
            "train_rows": len(train),
            "holdout_rows": len(holdout),
            "data_fingerprint": record["data_fingerprint"],
        }
        if promote:
            record["mae"] = round(candidate_mae, 4)
            record["parity_max_abs_diff"] = worst
            onnx.helper.set_model_props(model, {**_props(model), "mae": str(record["mae"])})
            blob = model.SerializeToString()
            sha = hashlib.sha256(blob).hexdigest()
            path = registry.publish(blob, version, sha)
            record = {**record, "path": registry.relative_model_path(version), "sha256": sha}
            registry.write_settings(record)
            history["sha256"] = sha
            log.info("promoted v%d: %s (sha256 %s)", version, path, sha[:12])
        registry.append_history(history)
    return Outcome(promote, version, candidate_mae, current_mae, current_version)


def _props(model: onnx.ModelProto) -> dict[str, str]:
    return {p.key: p.value for p in model.metadata_props}


def _version(package: str) -> str:
    try:
        return pkg_metadata.version(package)
    except pkg_metadata.PackageNotFoundError:
        return "absent"
