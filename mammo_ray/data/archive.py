"""Read the files of a dataset from a directory or, in memory, from a tar or zip archive.

A dataset is *stored* in one of three formats:

* ``"directory"``: a folder; its files and those of its direct sub-folders are its members;
* ``"tar"``: a ``.tar.gz``, ``.tgz`` or ``.tar`` file (compression detected from the bytes),
  always read as a stream in one sequential pass, since a gzip stream cannot be seeked cheaply;
* ``"zip"``: a ``.zip`` file.

Nothing is ever extracted to disk. Member names are POSIX paths relative to the root of the
storage, with ``./`` and empty components dropped; a name that would escape that root (an
absolute path, a drive letter, a ``..`` component) makes the whole archive an
:class:`~mammo_ray.errors.ArchiveError` that names the archive and the member, so a hostile
archive is refused rather than half read. Only regular files are members.
"""

from __future__ import annotations

import os
import re
import tarfile
import zipfile
import zlib
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path

from mammo_ray.errors import ArchiveError

__all__ = [
    "ARCHIVE_SUFFIXES",
    "STORAGE_FORMATS",
    "Member",
    "storage_format",
    "member_source",
    "list_members",
    "read_members",
]

ARCHIVE_SUFFIXES: tuple[tuple[str, str], ...] = (
    (".tar.gz", "tar"),
    (".tgz", "tar"),
    (".tar", "tar"),
    (".zip", "zip"),
)
"""File-name suffixes (matched case-insensitively) and the archive format they select."""

STORAGE_FORMATS = ("directory", "tar", "zip")

_DRIVE = re.compile(r"^[A-Za-z]:")
_TAR_ERRORS = (tarfile.TarError, EOFError, OSError, zlib.error)
_ZIP_ERRORS = (zipfile.BadZipFile, EOFError, OSError, zlib.error, NotImplementedError, RuntimeError)


@dataclass(frozen=True)
class Member:
    """One regular file of a dataset: its name relative to the storage root and its size."""

    name: str
    size: int


def storage_format(path: Path, archive_format: str | None = None) -> str:
    """Return how ``path`` stores its files: ``"directory"``, ``"tar"`` or ``"zip"``.

    Parameters
    ----------
    path : Path
        A directory or an archive file.
    archive_format : {"tar", "zip"}, optional
        Format of an archive file whose name does not tell it (a download in progress named
        ``*.part``); by default the format follows :data:`ARCHIVE_SUFFIXES`.

    Raises
    ------
    ArchiveError
        If ``path`` does not exist, or is a file of an unsupported type.
    ValueError
        If ``archive_format`` is given and is neither ``"tar"`` nor ``"zip"``.
    """
    if archive_format is not None and archive_format not in ("tar", "zip"):
        raise ValueError(f"archive_format must be 'tar' or 'zip', got {archive_format!r}")
    if not path.exists():
        raise ArchiveError(f"{path}: no such file or directory")
    if path.is_dir():
        return "directory"
    if archive_format is not None:
        return archive_format
    lower = path.name.lower()
    for suffix, fmt in ARCHIVE_SUFFIXES:
        if lower.endswith(suffix):
            return fmt
    expected = ", ".join(suffix for suffix, _ in ARCHIVE_SUFFIXES)
    raise ArchiveError(
        f"{path}: unsupported file type; expected a directory or an archive ({expected})"
    )


def member_source(path: Path, fmt: str, name: str) -> str:
    """Name a member for messages: the file's own path, or ``<archive>:<member>``."""
    return str(path / name) if fmt == "directory" else f"{path}:{name}"


def _safe_name(path: Path, raw: str) -> str:
    """Canonical POSIX form of an archive member name; refuse names that leave the root."""
    name = raw.replace("\\", "/")
    parts = name.split("/")
    if name.startswith("/") or _DRIVE.match(name) or ".." in parts:
        raise ArchiveError(f"{path}: unsafe member {raw!r} would escape the archive root")
    return "/".join(part for part in parts if part not in ("", "."))


def _list_directory(path: Path) -> list[Member]:
    members = []
    for top in sorted(os.scandir(path), key=lambda entry: entry.name):
        if top.is_file():
            members.append(Member(top.name, top.stat().st_size))
        elif top.is_dir():
            for entry in sorted(os.scandir(top.path), key=lambda entry: entry.name):
                if entry.is_file():
                    members.append(Member(f"{top.name}/{entry.name}", entry.stat().st_size))
    return members


def _list_tar(path: Path) -> list[Member]:
    try:
        with tarfile.open(path, mode="r|*") as archive:
            members = [(_safe_name(path, info.name), info) for info in archive]
    except _TAR_ERRORS as exc:
        raise ArchiveError(f"{path}: cannot read tar archive ({exc})") from None
    return [Member(name, info.size) for name, info in members if info.isreg() and name]


def _list_zip(path: Path) -> list[Member]:
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
    except _ZIP_ERRORS as exc:
        raise ArchiveError(f"{path}: cannot read zip archive ({exc})") from None
    members = [(_safe_name(path, info.filename), info) for info in infos]
    return [Member(name, info.file_size) for name, info in members if not info.is_dir() and name]


def list_members(path: Path, fmt: str) -> tuple[Member, ...]:
    """List the regular files stored at ``path`` in storage order.

    For a tar archive this is one pass over the (decompressed) stream, skipping the file
    contents; for a zip archive it reads the central directory; for a directory it lists the
    folder and its direct sub-folders, sorted by name.

    Parameters
    ----------
    path : Path
        The directory or archive.
    fmt : str
        Its format, from :func:`storage_format`.

    Raises
    ------
    ArchiveError
        If the archive cannot be read, holds no file, holds the same name twice, or names a
        member that would escape its root.
    """
    lister = {"directory": _list_directory, "tar": _list_tar, "zip": _list_zip}[fmt]
    members = lister(path)
    if fmt != "directory" and not members:
        raise ArchiveError(f"{path}: archive is empty")
    seen: set[str] = set()
    for member in members:
        if member.name in seen:
            raise ArchiveError(f"{path}: member {member.name!r} is stored twice")
        seen.add(member.name)
    return tuple(members)


def _read_directory(path: Path, names: Collection[str]) -> Iterator[tuple[str, bytes]]:
    for name in sorted(names):
        try:
            data = (path / name).read_bytes()
        except OSError as exc:
            raise ArchiveError(f"{path / name}: cannot read ({exc.strerror})") from None
        yield name, data


def _read_tar(path: Path, names: Collection[str]) -> Iterator[tuple[str, bytes]]:
    wanted = set(names)
    if not wanted:
        return
    try:
        with tarfile.open(path, mode="r|*") as archive:
            for info in archive:
                name = _safe_name(path, info.name)
                if name not in wanted or not info.isreg():
                    continue
                handle = archive.extractfile(info)
                data = handle.read() if handle is not None else b""
                wanted.discard(name)
                yield name, data
                if not wanted:
                    return
    except _TAR_ERRORS as exc:
        raise ArchiveError(f"{path}: cannot read tar archive ({exc})") from None
    if wanted:
        raise ArchiveError(f"{path}: member {min(wanted)!r} not found in the archive")


def _read_zip(path: Path, names: Collection[str]) -> Iterator[tuple[str, bytes]]:
    wanted = set(names)
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                name = _safe_name(path, info.filename)
                if name not in wanted or info.is_dir():
                    continue
                data = archive.read(info)
                wanted.discard(name)
                yield name, data
    except _ZIP_ERRORS as exc:
        raise ArchiveError(f"{path}: cannot read zip archive ({exc})") from None
    if wanted:
        raise ArchiveError(f"{path}: member {min(wanted)!r} not found in the archive")


def read_members(path: Path, fmt: str, names: Collection[str]) -> Iterator[tuple[str, bytes]]:
    """Yield ``(name, bytes)`` for each requested member, in storage order, read in memory.

    A tar archive is read in one sequential pass that stops as soon as every requested member
    has been seen; a zip archive in the order of its entries; a directory in name order.

    Parameters
    ----------
    path : Path
        The directory or archive.
    fmt : str
        Its format, from :func:`storage_format`.
    names : collection of str
        Canonical member names, as :func:`list_members` returns them.

    Raises
    ------
    ArchiveError
        If the storage cannot be read or a requested member is not in it.
    """
    reader = {"directory": _read_directory, "tar": _read_tar, "zip": _read_zip}[fmt]
    return reader(path, names)
