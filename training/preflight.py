"""Fail fast: check that training may write where it will write, before it reads data or fits.

A fit takes minutes; a registry the process cannot write to would only show at the end,
when the model is published. In a container that runs as ``TRAIN_UID:TRAIN_GID`` over a
bind-mounted project directory owned by someone else, that is the usual first mistake.
"""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

FIX = "TRAIN_UID=$(id -u) TRAIN_GID=$(id -g)"


class RegistryNotWritable(PermissionError):
    """The registry, the settings file's directory or the lock is out of this process's reach."""


def check_writable(settings_path: Path, registry: Path) -> None:
    """Raise :class:`RegistryNotWritable` unless this process can create files in ``registry``,
    replace ``settings_path`` (a new file in its directory, renamed over it) and take the lock.

    Changes nothing that a run would not create anyway: at most ``registry`` itself and its
    empty ``.lock`` file.
    """
    # Where a failure would be: the registry's parent while the registry does not exist yet.
    directory = registry if registry.is_dir() else registry.parent
    try:
        registry.mkdir(parents=True, exist_ok=True)
        for directory in dict.fromkeys([registry, settings_path.parent]):
            fd, name = tempfile.mkstemp(dir=directory, prefix=".preflight.", suffix=".tmp")
            os.close(fd)
            os.unlink(name)
        directory = registry
        # Registry.lock opens it so; the flock itself is taken there.
        fd = os.open(registry / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        os.close(fd)
    except OSError as exc:
        if exc.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise
        raise RegistryNotWritable(_message(directory, exc)) from None


def _message(directory: Path, exc: OSError) -> str:
    uid, gid = os.getuid(), os.getgid()
    try:
        st = directory.stat()
        owner = f", owned by {st.st_uid}:{st.st_gid}"
    except OSError:
        owner = ""
    reason = os.strerror(exc.errno) if exc.errno else str(exc)
    return (
        f"training runs as uid:gid {uid}:{gid} and cannot write to {directory}{owner} ({reason}); "
        f"run it as the directory's owner, e.g. {FIX} docker compose --profile training up, "
        f"or make {directory} writable for {uid}:{gid}"
    )
