"""Files that are whole or absent: every output mammo_ray writes goes through here.

A file is written to a temporary name in its own folder, flushed to disk, then renamed over the
target with :func:`os.replace` (atomic on POSIX and Windows within one file system), so a reader
never sees half a file and a crash leaves the old version or nothing, never a fragment.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mammo_ray.errors import ConfigError

__all__ = [
    "atomic_path",
    "write_features_csv",
    "write_text_atomic",
    "write_json_atomic",
    "check_writable_dir",
    "check_writable_file",
]


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on a clean exit it replaces ``path``.

    The caller writes the temporary file (with any library: ``torch.save``, ``to_csv``); if the
    block raises, the temporary file is removed and ``path`` is left as it was. Missing parent
    folders are created.

    >>> import tempfile, pathlib
    >>> target = pathlib.Path(tempfile.mkdtemp()) / "a.txt"
    >>> with atomic_path(target) as tmp:
    ...     _ = tmp.write_text("done")
    >>> target.read_text()
    'done'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` through :func:`atomic_path`; return ``path``."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8", newline="")
    return Path(path)


def write_json_atomic(path: str | Path, data: Any, *, indent: int = 2, **dumps: Any) -> Path:
    """``json.dumps(data)`` first (data JSON cannot hold raise before any file exists), then
    :func:`write_text_atomic`; extra keywords go to :func:`json.dumps`."""
    return write_text_atomic(path, json.dumps(data, indent=indent, **dumps))


def write_features_csv(
    path: str | Path, image_ids: Sequence[str], values: np.ndarray, names: Sequence[str]
) -> Path:
    """A CSV of one row per film: ``image_id`` then ``values`` (N, F) as columns ``names``."""
    lines = [",".join(["image_id", *names])]
    lines += [
        ",".join([i, *(f"{v:.6g}" for v in row)]) for i, row in zip(image_ids, values, strict=True)
    ]
    return write_text_atomic(path, "\n".join(lines) + "\n")


def check_writable_dir(path: str | Path, what: str) -> Path:
    """Raise a one-line :class:`ConfigError` naming ``what`` (e.g. ``--out``) unless ``path`` is a
    folder this process can write in, or can be created as one; create nothing.

    Writability is probed, not guessed from permission bits (which root ignores and a read-only
    mount does not show): a temporary file is made and removed in the nearest folder that
    exists.
    """
    path = Path(path)
    _check_folder(path, f"{what} {path}")
    return path


def check_writable_file(path: str | Path, what: str) -> Path:
    """As :func:`check_writable_dir` for a file to be written: not a folder, in a writable one."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{what} {path}: is a directory; give a file name")
    _check_folder(path.parent, f"{what} {path}")
    return path


def _check_folder(folder: Path, named: str) -> None:
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        which = "exists and is not a directory" if existing == folder else f"{existing} is a file"
        raise ConfigError(f"{named}: {which}")
    try:
        fd, probe = tempfile.mkstemp(dir=existing, prefix=".mammo-ray-probe-")
    except OSError as exc:
        raise ConfigError(f"{named}: cannot write in {existing} ({exc.strerror})") from None
    os.close(fd)
    os.unlink(probe)
