"""One training run: load, fit, export, gate, and promote or reject."""

from __future__ import annotations

import hashlib
import logging
import math
import platform
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata as pkg_metadata
from pathlib import Path
from typing import Any

import onnx
from sklearn.pipeline import Pipeline

from inference.modelsettings import MODEL_NAME, SETTINGS_FORMAT, ModelFileError
from inference.modelsettings import report_path as promoted_report
from inference.schema import FEATURES
from training import baseline, data, export, gate, preflight, provenance, report
from training.paths import TrainingPaths
from training.pipeline import build_pipeline, describe
from training.progress import Progress
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
    """What a completed run decided, and where its report is."""

    promoted: bool
    version: int
    """The version promoted, or the version the candidate would have had."""
    candidate_mae: float
    current_mae: float | None
    current_version: int | None
    report: Path | None = None
    """The run's HTML report."""


def run(
    paths: TrainingPaths,
    *,
    wait: bool = True,
    pipeline_factory: Callable[[], Pipeline] = build_pipeline,
    max_price: float = data.MAX_PRICE,
    max_rows: int = data.MAX_ROWS,
    progress: Progress | None = None,
) -> Outcome:
    """Load, fit, export, gate; then promote (publish, repoint) or reject, with a report and a history line.

    A run that cannot reach a decision raises (:class:`TrainingError`, :class:`training.data.DataError`)
    and leaves the registry as it was; with ``wait`` false, :class:`training.registry.RegistryBusy`
    when another run holds the lock. ``progress`` hears of each stage and fit (by default, log lines).
    """
    progress = progress or Progress(live=False)
    registry = Registry(paths.settings, paths.registry)
    preflight.check_writable(paths.settings, paths.registry)  # before minutes of fitting
    # The lock covers the whole run: runs started together serialize, and --no-wait exits at once
    # instead of after minutes of fitting (a rollback with `promote` waits for the run too).
    with registry.lock(wait=wait):
        outcome = _run(paths, registry, pipeline_factory, max_price, max_rows, progress)
    progress.stage(None)
    return outcome


def _run(
    paths: TrainingPaths,
    registry: Registry,
    pipeline_factory: Callable[[], Pipeline],
    max_price: float,
    max_rows: int,
    progress: Progress,
) -> Outcome:
    """:func:`run` under the registry lock."""
    log.info("loading %s", paths.db)
    progress.stage("cleaning")
    last_import = provenance.last_import(paths.db)  # before the rows: an import in between counts as new next time
    dataset = data.load(paths.db, max_price=max_price, max_rows=max_rows)
    frame = dataset.frame
    holdout_mask = dataset.holdout
    train, holdout = frame[~holdout_mask], frame[holdout_mask]
    if train.empty or holdout.empty:
        raise data.DataError(
            f"need rows on both sides of the split; have {len(train)} to train, {len(holdout)} held out"
        )
    log.info("clean rows: %d (%d to train, %d held out for the gate)", len(frame), len(train), len(holdout))

    pipeline = pipeline_factory()
    progress.stage("fitting")
    log.info("fitting %s", describe(pipeline)["estimator"])
    progress.plan(pipeline.named_steps["regress"].planned_iterations())
    pipeline.fit(train[list(FEATURES.names)], train[FEATURES.target].to_numpy(), regress__progress=progress.fit)
    progress.stage(None)

    try:
        current = registry.current()
    except ModelFileError as exc:
        raise TrainingError(
            f"the current model cannot be verified ({exc}); fix it or roll back with "
            "`python -m training promote --version N` before training"
        ) from None
    version = registry.next_version()
    created_at = datetime.now(UTC).isoformat(timespec="seconds")
    current_record = current.settings.model_dump() if current else None
    new_rows = provenance.new_rows(paths.db, frame[data.KEY].to_numpy(), holdout_mask, current_record)
    log.info(
        "new since %s: %d rows imported, %d clean (%d to train, %d held out)",
        new_rows["since"] or "the start (no current model)",
        new_rows["imported"],
        new_rows["clean"],
        new_rows["train"],
        new_rows["holdout"],
    )
    record: dict[str, Any] = {
        "format": SETTINGS_FORMAT,
        "name": MODEL_NAME,
        "version": version,
        "mae_protocol": PROTOCOL,
        "holdout_rows": len(holdout),
        "train_rows": len(train),
        "data_fingerprint": f"sha256:{dataset.fingerprint()}",
        "last_import": last_import,
        **describe(pipeline),
        "outputs": list(export.model_outputs(pipeline)),
        "min_onnxruntime": export.MIN_ONNXRUNTIME,
        "libraries": {"python": platform.python_version(), **{n: _version(n) for n in LIBRARIES}},
        "created_at": created_at,
    }
    log.info("exporting the candidate to ONNX")
    progress.stage("export")
    try:
        inputs = baseline.measure(train, baseline.unpriceable_share(dataset))
        model = export.to_onnx(pipeline, version=version, metadata=record, baseline=inputs)
        blob = model.SerializeToString()
        progress.stage("parity")
        worst = export.check_parity(blob, pipeline, frame)
    except export.ExportError as exc:
        raise TrainingError(str(exc)) from None
    log.info(
        "parity: onnxruntime within $%.6f of scikit-learn on all %d rows and around every split", worst, len(frame)
    )

    progress.stage("gate")
    candidate = gate.score(blob, holdout)
    current_scores = None
    if current is not None:
        try:
            current_scores = gate.score(current.blob, holdout, current.settings.version)
        except Exception as exc:  # onnxruntime errors: the current model does not fit the schema
            raise TrainingError(f"cannot score the current model v{current.settings.version}: {exc}") from None
    decision = gate.decide(candidate, current_scores)
    promote = decision.promote
    candidate_mae = candidate.mae
    current_mae = None if current_scores is None else current_scores.mae
    current_version = current.settings.version if current else None
    if promote:
        log.info("decision: promote v%d: %s", version, decision.reason)
    else:  # no version number: the candidate's would never exist
        log.info("decision: candidate rejected: %s", decision.reason)

    progress.stage("report")

    facts = report.RunFacts(
        paths.db,
        dataset,
        holdout,
        record,
        blob,
        candidate_mae,
        current,
        current_mae,
        promote,
        decision.reason,
        registry,
        new_rows,
        decision.difference,
    )
    report_html = report.render_run(facts)
    progress.stage("saving")
    history: dict[str, Any] = {
        "time": created_at,
        "event": "train",
        "decision": "promoted" if promote else "rejected",
        "reason": decision.reason,
        "candidate_mae": _finite(candidate_mae),
        "current_mae": None if current_mae is None else _finite(current_mae),
        "mae_difference": None if decision.difference is None else decision.difference.record(),
        "price_range": candidate.record() or None,
        "current_version": current_version,
        "version": version if promote else None,
        "train_rows": len(train),
        "holdout_rows": len(holdout),
        "new_rows": new_rows,
        "data_fingerprint": record["data_fingerprint"],
    }
    if promote:
        record["mae"] = round(candidate_mae, 4)
        if candidate.record():
            record["price_range"] = candidate.record()
        record["parity_max_abs_diff"] = worst
        onnx.helper.set_model_props(model, {**_props(model), "mae": str(record["mae"])})
        blob = model.SerializeToString()
        sha = hashlib.sha256(blob).hexdigest()
        record = {**record, "path": registry.relative_model_path(version), "sha256": sha}
        history["sha256"] = sha
        history_size = registry.history_size()
        report_path = promoted_report(registry.directory, version)
        kept = frozenset(p for p in registry.promotion_files(version, report_path) if p.exists())
        try:  # the pointer last: if any write fails (a full disk), what came before it is removed
            path = registry.publish(blob, version, sha)
            report.save_run(registry, report_html, version, created_at)
            history["report"] = report.relative_to_registry(registry.directory, report_path)
            registry.append_history(history)
            registry.write_settings(record)
        except BaseException:
            if not registry.names(version):  # once the pointer names it (a failed fsync after), it stays
                registry.withdraw(version, report_path, history_size, kept)
            raise
        log.info("promoted v%d: %s (sha256 %s)", version, path, sha[:12])
    else:
        report_path = report.save_run(registry, report_html, None, created_at)
        history["report"] = report.relative_to_registry(registry.directory, report_path)
        registry.append_history(history)
    return Outcome(promote, version, candidate_mae, current_mae, current_version, report_path)


def _finite(mae: float) -> float | None:
    """The MAE rounded for the records; None when it is not finite (JSON has no Infinity)."""
    return round(mae, 4) if math.isfinite(mae) else None


def _props(model: onnx.ModelProto) -> dict[str, str]:
    return {p.key: p.value for p in model.metadata_props}


def _version(package: str) -> str:
    try:
        return pkg_metadata.version(package)
    except pkg_metadata.PackageNotFoundError:
        return "absent"
