"""Reading the files the service trusts (settings, models, reports): regular files only, bounded.

A check by name then an open by name can be raced (a FIFO blocks for ever, a sparse file is read
whole), so each file is opened once, non-blocking, and checked on its descriptor."""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

MAX_MODEL_BYTES = 128 << 20
"""Default bound on a model file (the shipped models are 0.5 to 3 MB)."""
MAX_REPORT_BYTES = 16 << 20
"""Default bound on a run report (the shipped one is 360 KB)."""
BLOCK = 1 << 20

FileIdentity = tuple[int, int, int, int]
"""(device, inode, size, mtime_ns) of an opened file."""


class FileRefused(Exception):
    """The file is missing, not a regular file, too large, or unreadable; the message says why."""

    def __init__(self, message: str, missing: bool = False) -> None:
        super().__init__(message)
        self.missing = missing


@dataclass(frozen=True)
class FileBytes:
    data: bytes
    sha256: str
    identity: FileIdentity


def identity_of(info: os.stat_result) -> FileIdentity:
    return (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)


def read_regular(path: Path, what: str, max_bytes: int, *, follow: bool = True) -> FileBytes:
    """``path``'s bytes, sha256 and identity if it is a regular file of at most ``max_bytes``, else
    :class:`FileRefused`; ``follow=False`` so a resolved path's final symlink cannot be swapped in."""
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | (0 if follow else os.O_NOFOLLOW)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise FileRefused(f"{what} not found: {path}", missing=True) from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise FileRefused(f"{what} {path} is a symbolic link") from None
        raise FileRefused(f"cannot open {what} {path}: {exc.strerror}", missing=exc.errno == errno.ENOTDIR) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise FileRefused(f"{what} {path} is not a regular file")
        if info.st_size > max_bytes:
            raise FileRefused(f"{what} {path} is {info.st_size} bytes, more than the {max_bytes} allowed")
        digest = hashlib.sha256()
        chunks: list[bytes] = []
        held = 0
        while block := os.read(fd, min(BLOCK, max_bytes + 1 - held)):
            digest.update(block)
            chunks.append(block)
            held += len(block)
            if held > max_bytes:  # it grew while being read
                raise FileRefused(f"{what} {path} is more than the {max_bytes} bytes allowed")
        return FileBytes(b"".join(chunks), digest.hexdigest(), identity_of(info))
    except OSError as exc:
        raise FileRefused(f"cannot read {what} {path}: {exc.strerror}") from None
    finally:
        os.close(fd)


def regular_identity(path: Path) -> FileIdentity | None:
    """The identity of ``path`` if it is a regular file now (one ``stat``), else None."""
    try:
        info = os.stat(path)
    except (OSError, ValueError):
        return None
    return identity_of(info) if stat.S_ISREG(info.st_mode) else None
