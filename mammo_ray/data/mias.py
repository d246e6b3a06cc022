"""The MIAS MiniMammographic Database: ``Info.txt``, label schemes and the dataset reader.

The database (Suckling et al. 1994) is 322 films of 161 patients, each a 1024 x 1024 PGM
file ``mdbNNN.pgm`` at 200 micron pixel edge; films ``2k - 1`` and ``2k`` are the right and
left breast of patient ``k``. ``Info.txt`` describes them, after a prose header, in rows of
up to seven columns::

    mdb001 G CIRC B 535 425 197     reference, tissue, class, severity, x, y, radius
    mdb002 G NORM                   normal films have three columns
    mdb059 F CIRC B                 a class and severity but no centre
    mdb233 G CALC M *NOTE 3*        calcifications spread over the film: no single centre
    mdb239 D CALC M 645 755 40      several rows for one film: one per abnormality
    mdb239 D CALC M 567 808 25

The (x, y) origin is the bottom-left corner, so a centre sits at ``row = height - 1 - y``,
``col = x`` of the image array.

Label schemes are data (:data:`LABEL_SCHEMES`): each maps every class code to a label of
:data:`LABELS` or to :data:`EXCLUDE`. A film takes the label of its rows that comes first in
:data:`LABEL_PRECEDENCE` (``calc``, then ``mass``, then ``normal``), ignoring excluded codes; a
film whose rows are all excluded is left out of the dataset.

References
----------
J. Suckling et al., "The Mammographic Image Analysis Society Digital Mammogram Database",
Excerpta Medica International Congress Series 1069, pp. 375-378, 1994.
"""

from __future__ import annotations

import hashlib
import re
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mammo_ray.data.archive import (
    Member,
    list_members,
    member_source,
    read_members,
    storage_format,
)
from mammo_ray.data.mias_info import (
    INFO_NAME,
    InfoRow,
    MiasRecord,
    _scheme,
    build_records,
    parse_info,
)
from mammo_ray.data.pgm import decode_pgm, validate_pgm
from mammo_ray.errors import MiasFormatError

__all__ = ["MIAS_IMAGE_SHAPE", "MiasDataset", "dataset_fingerprint", "load_mias"]


MIAS_IMAGE_SHAPE: tuple[int, int] = (1024, 1024)
"""(height, width) of every MIAS film (Info.txt, note 2)."""


_IMAGE_FILE = re.compile(r"(mdb\d{3})\.pgm")


@dataclass(frozen=True)
class MiasDataset:
    """The films of a MIAS directory or archive, labelled under one scheme.

    Build it with :func:`load_mias`. Images are read only when iterated, straight from the
    directory or archive.

    Attributes
    ----------
    path : Path
        The directory or archive.
    scheme : str
        The label scheme (a key of :data:`LABEL_SCHEMES`).
    records : tuple of MiasRecord
        The labelled films, sorted by image id.
    fingerprint : str
        Hex digest identifying the stored contents (see :func:`load_mias`).
    image_shape : tuple of int or None
        ``(height, width)`` every image must have; None skips the check.
    storage : str
        ``"directory"``, ``"tar"`` or ``"zip"``.
    members : Mapping[str, str]
        Image id -> member name of its PGM file, for every film in ``records``.
    excluded : tuple of str
        Ids of the films in ``Info.txt`` that the scheme leaves out.
    """

    path: Path
    scheme: str
    records: tuple[MiasRecord, ...]
    fingerprint: str
    image_shape: tuple[int, int] | None
    storage: str
    members: Mapping[str, str] = field(repr=False)
    excluded: tuple[str, ...] = ()
    _index: dict[str, MiasRecord] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_index", {r.image_id: r for r in self.records})

    def _select(self, ids: Iterable[str] | None) -> dict[str, MiasRecord]:
        """Member name -> record for the requested ids (all records when None)."""
        if ids is None:
            return {self.members[r.image_id]: r for r in self.records}
        selected = {}
        for image_id in ids:
            if image_id not in self._index:
                why = "excluded by the scheme" if image_id in self.excluded else "not an image"
                raise KeyError(f"{image_id!r} is {why} of {self.path} (scheme {self.scheme})")
            selected[self.members[image_id]] = self._index[image_id]
        return selected

    def _source(self, record: MiasRecord) -> str:
        return member_source(self.path, self.storage, self.members[record.image_id])

    def iter_pgm_bytes(
        self, ids: Iterable[str] | None = None
    ) -> Iterator[tuple[MiasRecord, bytes]]:
        """Yield ``(record, PGM file bytes)`` for the requested films (all when None).

        Films come in storage order (archive order for tar and zip, id order for a
        directory), each once; a tar archive is read in one sequential pass. Every file is
        checked before it is yielded: its header, its size against ``image_shape`` and the
        length of its raster.

        Raises
        ------
        KeyError
            If an id is not one of ``records``.
        MiasFormatError
            If a PGM file is malformed, truncated or of the wrong size.
        ArchiveError
            If the archive cannot be read.
        """
        selected = self._select(ids)
        for name, data in read_members(self.path, self.storage, selected):
            record = selected[name]
            source = self._source(record)
            width, height, _, _ = validate_pgm(data, source)
            if self.image_shape is not None and (height, width) != self.image_shape:
                expected_h, expected_w = self.image_shape
                raise MiasFormatError(
                    f"{source}: image is {width}x{height} pixels, expected "
                    f"{expected_w}x{expected_h} (width x height)"
                )
            yield record, data

    def iter_images(
        self, ids: Iterable[str] | None = None
    ) -> Iterator[tuple[MiasRecord, np.ndarray]]:
        """Yield ``(record, uint8 image of shape (height, width))`` as :meth:`iter_pgm_bytes`."""
        for record, data in self.iter_pgm_bytes(ids):
            yield record, decode_pgm(data, self._source(record))

    def read_image(self, image_id: str) -> np.ndarray:
        """Decode one film to a ``uint8`` array of shape ``(height, width)``."""
        ((_, image),) = self.iter_images([image_id])
        return image


def _find_root(members: Sequence[Member], path: Path) -> str:
    """Prefix (``""`` or ``"folder/"``) of the folder that holds ``Info.txt``."""
    names = {member.name for member in members}
    if INFO_NAME in names:
        return ""
    folders = sorted(
        name[: -len(INFO_NAME)]
        for name in names
        if name.count("/") == 1 and name.endswith("/" + INFO_NAME)
    )
    if not folders:
        raise MiasFormatError(f"{path}: no {INFO_NAME} at the top level or in a top-level folder")
    if len(folders) > 1:
        raise MiasFormatError(f"{path}: several folders hold {INFO_NAME}: {', '.join(folders)}")
    return folders[0]


def _image_members(members: Sequence[Member], root: str, path: Path, fmt: str) -> dict[str, Member]:
    """Image id -> member for the ``mdbNNN.pgm`` files directly in ``root``."""
    images = {}
    for member in members:
        if not member.name.startswith(root) or "/" in member.name[len(root) :]:
            continue
        filename = member.name[len(root) :]
        match = _IMAGE_FILE.fullmatch(filename)
        if match:
            images[match.group(1)] = member
        elif filename.lower().endswith(".pgm"):
            warnings.warn(
                f"{member_source(path, fmt, member.name)}: not a MIAS image name "
                "(mdbNNN.pgm); ignored",
                stacklevel=3,
            )
    return images


def _fingerprint(path: Path, fmt: str, info: bytes, images: Iterable[Member]) -> str:
    """blake2b-128 of the archive's bytes, or of Info.txt and (name, size, mtime) of images."""
    digest = hashlib.blake2b(digest_size=16)
    if fmt != "directory":
        with path.open("rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
        return digest.hexdigest()
    digest.update(info)
    for member in sorted(images, key=lambda m: m.name):
        stat = (path / member.name).stat()
        digest.update(f"\0{member.name}\0{stat.st_size}\0{stat.st_mtime_ns}".encode())
    return digest.hexdigest()


def dataset_fingerprint(path: str | Path, *, archive_format: str | None = None) -> str:
    """The ``fingerprint`` that :func:`load_mias` gives ``path``, without opening an archive.

    For an archive it hashes the file's bytes only (no decompression, no member listing), so
    a cache lookup costs about 0.1 s per 100 MB; for a directory it reads the listing and
    ``Info.txt``.
    """
    path = Path(path)
    fmt = storage_format(path, archive_format)
    if fmt != "directory":
        return _fingerprint(path, fmt, b"", ())
    members = list_members(path, fmt)
    root = _find_root(members, path)
    ((_, info),) = read_members(path, fmt, [root + INFO_NAME])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        images = _image_members(members, root, path, fmt)
    return _fingerprint(path, fmt, info, images.values())


def _check_shape(image_shape: tuple[int, int] | None) -> tuple[int, int] | None:
    if image_shape is None:
        return None
    shape = tuple(image_shape)
    if len(shape) != 2 or not all(isinstance(n, int) and n > 0 for n in shape):
        raise ValueError(f"image_shape must be (height, width) positive ints, got {image_shape!r}")
    return shape


def _match_rows_to_images(
    rows: Sequence[InfoRow],
    images: Mapping[str, Member],
    root: str,
    path: Path,
    fmt: str,
    info_source: str,
) -> None:
    """Raise :class:`MiasFormatError` (naming the Info.txt line) when a listed film has no
    image; warn, for each image, when Info.txt has no row for it (it is left out)."""
    listed: dict[str, InfoRow] = {}
    for row in rows:
        listed.setdefault(row.image_id, row)
    missing = [row for image_id, row in listed.items() if image_id not in images]
    if missing:
        first = missing[0]
        others = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise MiasFormatError(
            f"{info_source}: line {first.line}: {first.image_id} is listed but "
            f"{root}{first.image_id}.pgm is not in {path}{others}"
        )
    for image_id in sorted(set(images) - set(listed)):
        warnings.warn(
            f"{member_source(path, fmt, images[image_id].name)}: no row in {INFO_NAME}; "
            "image left out",
            stacklevel=3,
        )


def load_mias(
    path: str | Path,
    *,
    scheme: str = "paper",
    image_shape: tuple[int, int] | None = MIAS_IMAGE_SHAPE,
    archive_format: str | None = None,
) -> MiasDataset:
    """Open the MIAS database stored in a directory or an archive, without decoding images.

    Reads the member list and ``Info.txt`` only. ``Info.txt`` and the ``mdbNNN.pgm`` files
    may sit at the top level (as in the official ``all-mias.tar.gz``) or together in one
    top-level folder.

    The dataset's ``fingerprint`` is cheap and changes whenever the contents do: for an
    archive, the blake2b-128 digest of the archive file's bytes (no decompression; about
    0.1 s for 90 MB); for a directory, the digest of ``Info.txt``'s bytes followed by the
    name, size and modification time (ns) of every image file -- so touching a file changes
    it. It identifies the stored contents, not the label scheme.

    Parameters
    ----------
    path : str or Path
        A directory, or a ``.tar.gz``, ``.tgz``, ``.tar`` or ``.zip`` file.
    scheme : str
        Label scheme, a key of :data:`LABEL_SCHEMES`.
    image_shape : tuple of int or None
        ``(height, width)`` every image must have, checked as images are read; None skips
        the check. It is also the height used to flip Info.txt's y axis (with None,
        :data:`MIAS_IMAGE_SHAPE`).
    archive_format : {"tar", "zip"}, optional
        Format of an archive whose file name does not tell it.

    Returns
    -------
    MiasDataset

    Raises
    ------
    ArchiveError
        If ``path`` does not exist, is of an unsupported type, or is an unreadable, empty or
        unsafe archive.
    MiasFormatError
        If ``Info.txt`` is missing or malformed, or lists a film whose image is missing.
    ConfigError
        If ``scheme`` is unknown.

    Warns
    -----
    UserWarning
        For each image without a row in ``Info.txt`` (left out of the dataset).
    """
    _scheme(scheme)
    image_shape = _check_shape(image_shape)
    path = Path(path)
    fmt = storage_format(path, archive_format)
    members = list_members(path, fmt)
    root = _find_root(members, path)
    info_name = root + INFO_NAME
    ((_, info),) = read_members(path, fmt, [info_name])
    info_source = member_source(path, fmt, info_name)
    rows = parse_info(info.decode("latin-1"), info_source)
    images = _image_members(members, root, path, fmt)
    _match_rows_to_images(rows, images, root, path, fmt, info_source)
    records, excluded = build_records(rows, scheme, image_shape or MIAS_IMAGE_SHAPE, info_source)
    return MiasDataset(
        path=path,
        scheme=scheme,
        records=records,
        fingerprint=_fingerprint(path, fmt, info, images.values()),
        image_shape=image_shape,
        storage=fmt,
        members={r.image_id: images[r.image_id].name for r in records},
        excluded=excluded,
    )
