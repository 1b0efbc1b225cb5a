"""Listing registry versions, and pointing modelsettings.json at one of them (rollback)."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from inference.modelsettings import ModelFileError, sha256_file
from inference.onnx_io import check_inputs, metadata, open_session
from training.registry import Registry

log = logging.getLogger(__name__)

_RECORD_KEYS = (
    "format",
    "name",
    "version",
    "mae",
    "mae_protocol",
    "holdout_rows",
    "train_rows",
    "data_fingerprint",
    "estimator",
    "params",
    "libraries",
    "created_at",
)


@dataclass(frozen=True)
class VersionInfo:
    """One line of ``python -m training versions``."""

    version: int
    mae: float | None
    created_at: str | None
    train_rows: int | None
    verified: bool
    current: bool
    problem: str | None = None


def _model_record(blob: bytes) -> dict[str, Any]:
    """The training record the model carries in its metadata_props."""
    session = open_session(blob)
    check_inputs(session)
    props = metadata(session)
    record: dict[str, Any] = {}
    for key in _RECORD_KEYS:
        if key in props:
            try:
                record[key] = json.loads(props[key])
            except json.JSONDecodeError:
                record[key] = props[key]
    return record


def list_versions(registry: Registry) -> list[VersionInfo]:
    """Every version in the registry, each verified and read from its own metadata; a damaged one is listed."""
    try:
        current = registry.current_settings()
    except ModelFileError:
        current = None
    rows = []
    for version, path in registry.versions().items():
        problem = None
        record: dict[str, Any] = {}
        try:
            expected = registry.recorded_sha256(version)
            if sha256_file(path) != expected:
                raise ModelFileError("sha256 does not match the recorded digest")
            record = _model_record(path.read_bytes())
        except Exception as exc:  # a damaged file is listed, not fatal
            problem = str(exc)
        rows.append(
            VersionInfo(
                version=version,
                mae=record.get("mae"),
                created_at=record.get("created_at"),
                train_rows=record.get("train_rows"),
                verified=problem is None,
                current=current is not None and current.version == version,
                problem=problem,
            )
        )
    return rows


def format_versions(rows: list[VersionInfo]) -> str:
    """The versions as a text table, the current one starred."""
    if not rows:
        return "no versions in the registry"
    lines = [f"{'':2}{'version':>7}  {'MAE':>9}  {'train rows':>10}  {'created (UTC)':<25}  status"]
    for r in rows:
        mae = f"{r.mae:9.2f}" if isinstance(r.mae, (int, float)) else f"{'?':>9}"
        rows_txt = f"{r.train_rows:10d}" if isinstance(r.train_rows, int) else f"{'?':>10}"
        status = "ok" if r.verified else f"DAMAGED: {r.problem}"
        lines.append(
            f"{'*' if r.current else ' ':2}{r.version:>7}  {mae}  {rows_txt}  {r.created_at or '?'!s:<25}  {status}"
        )
    lines.append("* = current (modelsettings.json)")
    return "\n".join(lines)


def promote(registry: Registry, version: int) -> dict[str, Any]:
    """Point the settings file at ``version`` after verifying it; returns the new record."""
    with registry.lock():
        path = registry.model_path(version)
        blob = registry.verified_blob(version)
        sha = hashlib.sha256(blob).hexdigest()
        record = _model_record(blob)
        if "mae" not in record:
            raise ModelFileError(f"{path} carries no MAE in its metadata")
        try:
            previous = registry.current_settings()
        except ModelFileError:
            previous = None
        now = datetime.now(UTC).isoformat(timespec="seconds")
        record.update(
            version=version,
            path=registry.relative_model_path(version),
            sha256=sha,
            promoted_at=now,
            promoted_by="python -m training promote",
        )
        registry.write_settings(record)
        registry.append_history(
            {
                "time": now,
                "event": "promote",
                "decision": "promoted",
                "version": version,
                "previous_version": previous.version if previous else None,
                "sha256": sha,
            }
        )
    log.info("modelsettings.json now points at v%d (%s)", version, record["path"])
    return record
