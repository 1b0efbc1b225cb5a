"""Where training reads and writes: :func:`inference.paths.resolve_paths`, as the service resolves them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from inference.paths import resolve_paths


@dataclass(frozen=True)
class TrainingPaths:
    """The database training reads, the settings file (the pointer) and the registry directory."""

    db: Path
    settings: Path
    registry: Path

    @classmethod
    def from_env(
        cls,
        db: Path | None = None,
        settings: Path | None = None,
        registry: Path | None = None,
    ) -> TrainingPaths:
        """Explicit arguments win, then ``DIAMOND_DB``, ``MODEL_SETTINGS`` and ``MODEL_REGISTRY``
        (by default ``model_registry/`` beside the settings file), then the repository's own files."""
        paths = resolve_paths(db=db, settings=settings, registry=registry)
        return cls(paths.db, paths.settings, paths.registry)
