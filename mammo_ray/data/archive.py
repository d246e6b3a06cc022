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

Archives are bounded (:class:`ArchiveLimits`): the size of each member, the number of members
and their total uncompressed size are checked against limits from each member's header, before
its bytes are read or skipped, so a header that claims a terabyte fails at once instead of
making the tar stream seek through it, and a small gzip bomb cannot fill memory. The member-size
limit applies to directories too; reading a member holds at most about twice its size.
"""

from __future__ import annotations

import os
import re
import struct
import tarfile
import zipfile
import zlib
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from mammo_ray.errors import ArchiveError

__all__ = [
    "ARCHIVE_SUFFIXES",
    "ArchiveLimits",
    "LIMITS_ENV",
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
_TAR_ERRORS = (tarfile.TarError, EOFError, OSError, zlib.error, ValueError, struct.error)
_ZIP_ERRORS = (
    zipfile.BadZipFile,
    EOFError,
    OSError,
    zlib.error,
    NotImplementedError,
    RuntimeError,
    ValueError,
    struct.error,
)
"""What the standard library raises on a corrupt archive; ValueError covers undecodable
member names (UnicodeDecodeError), found by the fuzz tests."""


LIMITS_ENV = {
    "max_member_mb": "MAMMO_RAY_MAX_MEMBER_MB",
    "max_members": "MAMMO_RAY_MAX_MEMBERS",
    "max_total_gb": "MAMMO_RAY_MAX_TOTAL_GB",
}
"""Environment variables that override each default of :class:`ArchiveLimits`."""

_MB = 1 << 20
_GB = 1 << 30


@dataclass(frozen=True)
class ArchiveLimits:
    """Upper bounds on what one dataset may hold, checked from member headers.

    The defaults fit MIAS (322 films of 1 MB, 0.33 GB) and full-field digital mammograms
    (a 16-bit 4096 x 3328 film is 26 MB) with room to spare. Override them with the
    environment variables of :data:`LIMITS_ENV` (see :meth:`from_env`).
    """

    max_member_mb: float = 128.0
    max_members: int = 200_000
    max_total_gb: float = 64.0

    def __post_init__(self) -> None:
        for name in ("max_member_mb", "max_members", "max_total_gb"):
            value = getattr(self, name)
            if isinstance(value, bool) or not value > 0:
                raise ArchiveError(f"archive limit {name} must be positive, got {value!r}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ArchiveLimits:
        """The defaults, each replaced by its variable of :data:`LIMITS_ENV` when set."""
        environ = os.environ if environ is None else environ
        values: dict[str, float | int] = {}
        for name, variable in LIMITS_ENV.items():
            if environ.get(variable):
                kind = int if name == "max_members" else float
                try:
                    values[name] = kind(environ[variable])
                except ValueError:
                    raise ArchiveError(
                        f"${variable}: {environ[variable]!r} is not a number"
                    ) from None
        return cls(**values)


class _Budget:
    """Counts members and bytes of one archive against its limits, naming the culprit."""

    def __init__(self, path: Path, limits: ArchiveLimits, *, totals: bool = True):
        self.path, self.limits, self.totals = path, limits, totals
        self.count = 0
        self.total = 0

    def admit(self, name: str, size: int) -> None:
        """Raise :class:`ArchiveError` if the member ``name`` of ``size`` bytes breaks a limit."""
        limits = self.limits
        if size < 0 or size > limits.max_member_mb * _MB:
            raise ArchiveError(
                f"{self.path}: member {name!r} is {size / _MB:,.1f} MB, over the "
                f"{limits.max_member_mb:g} MB limit per file "
                f"(raise it with ${LIMITS_ENV['max_member_mb']})"
            )
        if not self.totals:
            return
        self.count += 1
        self.total += size
        if self.count > limits.max_members:
            raise ArchiveError(
                f"{self.path}: more than {limits.max_members:,} members (at {name!r}; "
                f"raise the limit with ${LIMITS_ENV['max_members']})"
            )
        if self.total > limits.max_total_gb * _GB:
            raise ArchiveError(
                f"{self.path}: members add up to more than {limits.max_total_gb:g} GB "
                f"uncompressed (at {name!r}; raise the limit with ${LIMITS_ENV['max_total_gb']})"
            )


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


def _tar_entries(
    path: Path, limits: ArchiveLimits, archive: tarfile.TarFile
) -> Iterator[tuple[str, tarfile.TarInfo]]:
    """``(safe name, header)`` of each entry of a streamed tar, every regular file admitted by
    the limits before the stream moves past its header. Every other entry's claimed size is
    held to the per-file limit too: the stream would otherwise read past it byte by byte (a
    header ``.`` claiming 2^60 bytes hung the reader)."""
    budget = _Budget(path, limits)
    sizes = _Budget(path, limits, totals=False)
    for info in archive:
        name = _safe_name(path, info.name)
        if info.isreg() and name:
            budget.admit(name, info.size)
        else:
            sizes.admit(name or info.name, info.size)
        yield name, info


def _list_tar(path: Path, limits: ArchiveLimits) -> list[Member]:
    try:
        with tarfile.open(path, mode="r|*") as archive:
            entries = list(_tar_entries(path, limits, archive))
    except _TAR_ERRORS as exc:
        raise ArchiveError(f"{path}: cannot read tar archive ({exc})") from None
    return [Member(name, info.size) for name, info in entries if info.isreg() and name]


def _zip_entries(
    path: Path, infos: list[zipfile.ZipInfo], limits: ArchiveLimits
) -> list[tuple[str, zipfile.ZipInfo]]:
    """``(safe name, entry)`` of each regular file of a zip's central directory, admitted by
    the limits."""
    budget = _Budget(path, limits)
    entries = []
    for info in infos:
        name = _safe_name(path, info.filename)
        if not name or info.filename.endswith("/"):
            continue
        budget.admit(name, info.file_size)
        entries.append((name, info))
    return entries


def _list_zip(path: Path, limits: ArchiveLimits) -> list[Member]:
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
    except _ZIP_ERRORS as exc:
        raise ArchiveError(f"{path}: cannot read zip archive ({exc})") from None
    return [Member(name, info.file_size) for name, info in _zip_entries(path, infos, limits)]


def list_members(path: Path, fmt: str, limits: ArchiveLimits | None = None) -> tuple[Member, ...]:
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
    limits : ArchiveLimits, optional
        Bounds on the members (default: :meth:`ArchiveLimits.from_env`).

    Raises
    ------
    ArchiveError
        If the archive cannot be read, holds no file, holds the same name twice, names a
        member that would escape its root, or breaks a limit.
    """
    limits = limits or ArchiveLimits.from_env()
    if fmt == "directory":
        members = _list_directory(path)
    else:
        members = {"tar": _list_tar, "zip": _list_zip}[fmt](path, limits)
    if fmt != "directory" and not members:
        raise ArchiveError(f"{path}: archive is empty")
    seen: set[str] = set()
    for member in members:
        if member.name in seen:
            raise ArchiveError(f"{path}: member {member.name!r} is stored twice")
        seen.add(member.name)
    return tuple(members)


def _read_directory(
    path: Path, names: Collection[str], limits: ArchiveLimits
) -> Iterator[tuple[str, bytes]]:
    budget = _Budget(path, limits, totals=False)
    for name in sorted(names):
        try:
            budget.admit(name, (path / name).stat().st_size)
            data = (path / name).read_bytes()
        except OSError as exc:
            raise ArchiveError(f"{path / name}: cannot read ({exc.strerror})") from None
        yield name, data


def _read_tar(
    path: Path, names: Collection[str], limits: ArchiveLimits
) -> Iterator[tuple[str, bytes]]:
    wanted = set(names)
    if not wanted:
        return
    try:
        with tarfile.open(path, mode="r|*") as archive:
            for name, info in _tar_entries(path, limits, archive):
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


def _read_zip(
    path: Path, names: Collection[str], limits: ArchiveLimits
) -> Iterator[tuple[str, bytes]]:
    wanted = set(names)
    try:
        with zipfile.ZipFile(path) as archive:
            for name, info in _zip_entries(path, archive.infolist(), limits):
                if name not in wanted:
                    continue
                data = archive.read(info)
                wanted.discard(name)
                yield name, data
    except _ZIP_ERRORS as exc:
        raise ArchiveError(f"{path}: cannot read zip archive ({exc})") from None
    if wanted:
        raise ArchiveError(f"{path}: member {min(wanted)!r} not found in the archive")


def read_members(
    path: Path, fmt: str, names: Collection[str], limits: ArchiveLimits | None = None
) -> Iterator[tuple[str, bytes]]:
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
    limits : ArchiveLimits, optional
        Bounds checked again as members are met (default: :meth:`ArchiveLimits.from_env`).

    Raises
    ------
    ArchiveError
        If the storage cannot be read, a requested member is not in it, or a member met
        breaks a limit.
    """
    limits = limits or ArchiveLimits.from_env()
    reader = {"directory": _read_directory, "tar": _read_tar, "zip": _read_zip}[fmt]
    return reader(path, names, limits)
