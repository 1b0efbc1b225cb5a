"""The model registry: write-once versioned files, an atomic pointer, a history, a lock.

Layout (``registry`` is ``model_registry/`` by default)::

    registry/diamond_price-v{N}.onnx          immutable once written
    registry/diamond_price-v{N}.onnx.sha256   its digest, in ``sha256sum`` format
    registry/diamond_price-v{N}.report.html   the report of the run that promoted it (training.report)
    registry/reports/                          the reports of rejected and failed runs
    registry/history.jsonl                     one JSON line per training run or promotion
    registry/.lock                             flock held while the pointer may change
    modelsettings.json                         the pointer: which version serves, and its record

Crash safety: a model file is written to a temporary name, fsynced and hard-linked
to its final name (which fails rather than overwrite); the pointer is replaced by
rename only after that. A run killed at any point leaves the previous pointer and the
file it names intact; at worst an unreferenced new file remains, and the next version
number skips it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import logging
import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from inference import strict_json
from inference.modelsettings import MODEL_NAME, ModelFileError, ModelSettings, read_settings, read_verified_model

log = logging.getLogger(__name__)

_FILE = re.compile(rf"^{MODEL_NAME}-v([1-9][0-9]*)\.onnx$")


class RegistryBusy(Exception):
    """Another run holds the registry lock and we were asked not to wait."""


@dataclass(frozen=True)
class Current:
    """The serving model: its settings record and its verified bytes."""

    settings: ModelSettings
    blob: bytes


class Registry:
    """The registry ``directory`` and the pointer at ``settings_path`` (modelsettings.json)."""

    def __init__(self, settings_path: Path, directory: Path) -> None:
        self.settings_path = settings_path
        self.directory = directory

    # -- reading ---------------------------------------------------------------
    def versions(self) -> dict[int, Path]:
        """Version -> file, for every model file in the registry."""
        if not self.directory.is_dir():
            return {}
        found = {}
        for entry in self.directory.iterdir():
            m = _FILE.match(entry.name)
            if m:
                found[int(m.group(1))] = entry
        return dict(sorted(found.items()))

    def next_version(self) -> int:
        """One more than the highest version with a file (numbers are never reused)."""
        return max(self.versions(), default=0) + 1

    def model_path(self, version: int) -> Path:
        """Where ``version``'s model file is, or would be."""
        return self.directory / f"{MODEL_NAME}-v{version}.onnx"

    def _digest_path(self, version: int) -> Path:
        """The ``sha256sum``-format file beside ``version``'s model."""
        model = self.model_path(version)
        return model.with_name(model.name + ".sha256")

    def recorded_sha256(self, version: int) -> str:
        """The digest written next to the model when it was published."""
        digest_file = self._digest_path(version)
        try:
            return digest_file.read_text().split()[0]
        except (OSError, IndexError):
            raise ModelFileError(f"no recorded sha256 for version {version} ({digest_file} missing or empty)") from None

    def verified_blob(self, version: int) -> bytes:
        """The bytes of ``version``'s model, checked against the digest recorded beside it."""
        path = self.model_path(version)
        if not path.is_file():
            known = ", ".join(f"v{v}" for v in self.versions()) or "none"
            raise ModelFileError(f"version {version} does not exist in {self.directory} (versions: {known})")
        expected = self.recorded_sha256(version)
        blob = path.read_bytes()
        sha = hashlib.sha256(blob).hexdigest()
        if sha != expected:
            raise ModelFileError(f"{path} does not verify: sha256 {sha}, recorded {expected}")
        return blob

    def current(self) -> Current | None:
        """The current model, verified; None when no settings file exists yet."""
        if not self.settings_path.exists():
            return None
        settings, blob = read_verified_model(self.settings_path, self.directory)
        return Current(settings, blob)

    def current_settings(self) -> ModelSettings | None:
        """The pointer's record, unverified; None when no settings file exists yet."""
        return read_settings(self.settings_path) if self.settings_path.exists() else None

    def history(self) -> list[dict[str, Any]]:
        """Every readable line of ``history.jsonl``, oldest first; [] when there is none."""
        path = self.directory / "history.jsonl"
        if not path.exists():
            return []
        lines = []
        for line in path.read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError, RecursionError):  # a torn or non-strict line is skipped
                lines.append(strict_json.loads(line))
        return lines

    # -- writing ---------------------------------------------------------------
    @contextlib.contextmanager
    def lock(self, wait: bool = True) -> Iterator[None]:
        """Exclusive lock over the registry and the pointer (released if the process dies)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.directory / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                if not wait:
                    raise RegistryBusy(f"another training run holds {self.directory / '.lock'}") from None
                log.info("another training run holds the registry lock; waiting for it")
                fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def publish(self, blob: bytes, version: int, sha256: str) -> Path:
        """Write version ``version`` once; refuses to replace an existing file."""
        final = self.model_path(version)
        if final.exists():
            raise FileExistsError(f"{final} already exists")
        # The digest first: a run killed between the two leaves a digest no model file claims
        # (the next run of that version replaces it), never a model file without its digest.
        digest_file = self._digest_path(version)
        atomic_write(digest_file, f"{sha256}  {final.name}\n".encode())
        write_new(final, blob)
        return final

    def write_settings(self, record: dict[str, Any]) -> None:
        """Replace the pointer; refuses (ModelFileError) a record a reader would reject, such as
        one holding NaN or Infinity, which strict JSON has no spelling for."""
        try:
            ModelSettings.model_validate(record)
            text = strict_json.dumps(record, indent=2)
        except (ValidationError, ValueError) as exc:
            raise ModelFileError(f"refusing to write an invalid settings record: {str(exc)[:300]}") from None
        atomic_write(self.settings_path, (text + "\n").encode())

    def append_history(self, record: dict[str, Any]) -> None:
        """Append ``record`` to ``history.jsonl`` as one strict JSON line, fsynced."""
        self.directory.mkdir(parents=True, exist_ok=True)
        try:
            line = (strict_json.dumps(record, separators=(",", ":"), sort_keys=True) + "\n").encode()
        except ValueError as exc:
            raise ModelFileError(f"refusing to write a non-JSON history record: {exc}") from None
        fd = os.open(self.directory / "history.jsonl", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)

    def history_size(self) -> int | None:
        """The size of ``history.jsonl`` now; None when there is none (see :meth:`withdraw`)."""
        try:
            return (self.directory / "history.jsonl").stat().st_size
        except FileNotFoundError:
            return None

    def promotion_files(self, version: int, report: Path) -> tuple[Path, ...]:
        """What a promotion of ``version`` writes before its pointer: the model, its digest, its report."""
        return (self.model_path(version), self._digest_path(version), report)

    def names(self, version: int) -> bool:
        """Whether the pointer names ``version`` now (a promotion is committed once it does)."""
        try:
            return read_settings(self.settings_path).version == version
        except ModelFileError:
            return False

    def withdraw(self, version: int, report: Path, history_size: int | None, kept: frozenset[Path]) -> None:
        """Undo a promotion that failed before its pointer was written: remove ``version``'s model,
        digest and ``report`` unless they are in ``kept`` (they were there before the run), and cut
        ``history.jsonl`` back to ``history_size`` bytes."""
        for path in self.promotion_files(version, report):
            if path in kept:
                continue
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        history = self.directory / "history.jsonl"
        with contextlib.suppress(FileNotFoundError):
            if history_size is None:
                history.unlink()
            else:
                os.truncate(history, history_size)
        _fsync_dir(self.directory)

    def relative_model_path(self, version: int) -> str:
        """The model's path as the pointer records it: relative to the settings file's directory."""
        return os.path.relpath(self.model_path(version).resolve(), self.settings_path.parent.resolve())


def atomic_write(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` so readers see the old file or the new one, never a mix."""
    tmp = _write_temp(path.parent, data, prefix=f".{path.name}.")
    try:
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def write_new(path: Path, data: bytes) -> None:
    """Create ``path`` holding ``data``, all at once; :class:`FileExistsError` rather than replace a file."""
    tmp = _write_temp(path.parent, data, prefix=f".{path.name}.")
    try:
        os.link(tmp, path)  # atomic, and fails with FileExistsError instead of overwriting
    finally:
        os.unlink(tmp)
    _fsync_dir(path.parent)


def _write_temp(directory: Path, data: bytes, prefix: str) -> Path:
    fd, name = tempfile.mkstemp(dir=directory, prefix=prefix, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(name, 0o644)
    except BaseException:
        os.unlink(name)
        raise
    return Path(name)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
