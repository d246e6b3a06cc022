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
from types import MappingProxyType
from typing import Any

import numpy as np

from mammo_ray.data.archive import (
    Member,
    list_members,
    member_source,
    read_members,
    storage_format,
)
from mammo_ray.data.pgm import decode_pgm, validate_pgm
from mammo_ray.errors import ConfigError, MiasFormatError

__all__ = [
    "LABELS",
    "EXCLUDE",
    "LABEL_PRECEDENCE",
    "LABEL_SCHEMES",
    "TISSUES",
    "CLASS_CODES",
    "SEVERITIES",
    "MIAS_IMAGE_SHAPE",
    "dataset_fingerprint",
    "INFO_NAME",
    "RoiCircle",
    "InfoRow",
    "MiasRecord",
    "MiasDataset",
    "parse_info",
    "patient_id",
    "image_label",
    "build_records",
    "load_mias",
]

LABELS: tuple[str, ...] = ("normal", "mass", "calc")
"""Class labels; their order is the class index used everywhere downstream."""

EXCLUDE = "exclude"
"""What a label scheme maps a class code to when films of that class leave the dataset."""

LABEL_PRECEDENCE: tuple[str, ...] = ("calc", "mass", "normal")
"""A film with rows of several labels takes the first of them in this order."""

_PAPER_SCHEME = {
    "NORM": "normal",
    "CALC": "calc",
    "CIRC": "mass",
    "SPIC": "mass",
    "MISC": "mass",
    "ARCH": "mass",
    "ASYM": "mass",
}
LABEL_SCHEMES: Mapping[str, Mapping[str, str]] = MappingProxyType(
    {
        "paper": MappingProxyType(_PAPER_SCHEME),
        "strict_mass": MappingProxyType({**_PAPER_SCHEME, "ARCH": EXCLUDE, "ASYM": EXCLUDE}),
    }
)
"""Label schemes by name. ``paper``: normal = NORM, calc = CALC, mass = CIRC, SPIC, MISC,
ARCH, ASYM (the paper's grouping). ``strict_mass``: as ``paper`` but architectural distortion
and asymmetry are not masses; a film whose only abnormalities are ARCH/ASYM is excluded."""

TISSUES: Mapping[str, str] = MappingProxyType(
    {"F": "fatty", "G": "fatty-glandular", "D": "dense-glandular"}
)
CLASS_CODES: Mapping[str, str] = MappingProxyType(
    {
        "CALC": "calcification",
        "CIRC": "well-defined/circumscribed mass",
        "SPIC": "spiculated mass",
        "MISC": "other, ill-defined mass",
        "ARCH": "architectural distortion",
        "ASYM": "asymmetry",
        "NORM": "normal",
    }
)
SEVERITIES: Mapping[str, str] = MappingProxyType({"B": "benign", "M": "malignant"})
_SEVERITY_RANK = {None: 0, "B": 1, "M": 2}

MIAS_IMAGE_SHAPE: tuple[int, int] = (1024, 1024)
"""(height, width) of every MIAS film (Info.txt, note 2)."""

INFO_NAME = "Info.txt"

_IMAGE_ID = re.compile(r"mdb\d{3}")
_IMAGE_FILE = re.compile(r"(mdb\d{3})\.pgm")
_NUMBER = re.compile(r"\d+(\.\d+)?")
_NOTE_3 = ["*NOTE", "3*"]


@dataclass(frozen=True)
class RoiCircle:
    """A circle enclosing an abnormality, in array coordinates (row down, col right), pixels."""

    row: float
    col: float
    radius: float


@dataclass(frozen=True)
class InfoRow:
    """One data row of ``Info.txt``, as written (x, y with the origin at the bottom-left).

    ``severity`` is None for NORM rows; ``x``, ``y`` and ``radius`` are None when the row
    gives no centre (no coordinates, or ``*NOTE 3*``). ``line`` is the 1-based line number.
    """

    image_id: str
    line: int
    tissue: str
    class_code: str
    severity: str | None
    x: float | None = None
    y: float | None = None
    radius: float | None = None


@dataclass(frozen=True)
class MiasRecord:
    """Everything ``Info.txt`` says about one film, under one label scheme.

    Attributes
    ----------
    image_id : str
        ``"mdb001"`` .. ``"mdb322"``.
    patient_id : int
        ``(number + 1) // 2``: films 2k-1 and 2k belong to patient k.
    label : str
        One of :data:`LABELS`.
    tissue : str
        Background tissue code, a key of :data:`TISSUES`.
    severity : str or None
        The most severe over the film's rows: ``"M"`` > ``"B"`` > None.
    classes : tuple of str
        The class code of each of the film's rows, in file order.
    rois : tuple of RoiCircle
        The circles of the rows that give a centre, in file order.
    """

    image_id: str
    patient_id: int
    label: str
    tissue: str
    severity: str | None
    classes: tuple[str, ...]
    rois: tuple[RoiCircle, ...] = ()

    def __post_init__(self) -> None:
        if not _IMAGE_ID.fullmatch(self.image_id):
            raise ValueError(f"image_id {self.image_id!r} is not mdbNNN")
        if self.label not in LABELS:
            raise ValueError(f"{self.image_id}: label {self.label!r} is not one of {LABELS}")
        if self.tissue not in TISSUES:
            raise ValueError(f"{self.image_id}: tissue {self.tissue!r} is not one of F, G, D")
        if self.severity not in _SEVERITY_RANK:
            raise ValueError(f"{self.image_id}: severity {self.severity!r} is not B, M or None")
        unknown = [code for code in self.classes if code not in CLASS_CODES]
        if not self.classes or unknown:
            raise ValueError(f"{self.image_id}: class codes {self.classes!r} are not valid")

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-able form; :meth:`from_dict` reverses it."""
        return {
            "image_id": self.image_id,
            "patient_id": self.patient_id,
            "label": self.label,
            "tissue": self.tissue,
            "severity": self.severity,
            "classes": list(self.classes),
            "rois": [{"row": r.row, "col": r.col, "radius": r.radius} for r in self.rois],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MiasRecord:
        """Rebuild a record from :meth:`to_dict` output.

        Raises
        ------
        ValueError
            If a key is missing or unknown, or a value is invalid.
        """
        expected = {"image_id", "patient_id", "label", "tissue", "severity", "classes", "rois"}
        if set(data) != expected:
            raise ValueError(
                f"record keys {sorted(data)} differ from the expected {sorted(expected)}"
            )
        return cls(
            image_id=data["image_id"],
            patient_id=int(data["patient_id"]),
            label=data["label"],
            tissue=data["tissue"],
            severity=data["severity"],
            classes=tuple(data["classes"]),
            rois=tuple(
                RoiCircle(float(r["row"]), float(r["col"]), float(r["radius"]))
                for r in data["rois"]
            ),
        )


def _check_code(value: str, allowed: Mapping[str, str], what: str, where: str) -> str:
    if value not in allowed:
        choices = ", ".join(allowed)
        raise MiasFormatError(f"{where}: unknown {what} {value!r} (expected one of {choices})")
    return value


def _parse_row(tokens: list[str], line: int, where: str) -> InfoRow:
    """Parse the columns of one data row; ``where`` names the file and line in errors."""
    if not _IMAGE_ID.fullmatch(tokens[0]):
        raise MiasFormatError(f"{where}: reference {tokens[0]!r} is not mdbNNN")
    if len(tokens) < 3:
        raise MiasFormatError(f"{where}: expected at least 3 columns, got {len(tokens)}")
    image_id = tokens[0]
    tissue = _check_code(tokens[1], TISSUES, "background tissue", where)
    code = _check_code(tokens[2], CLASS_CODES, "class", where)
    rest = tokens[3:]
    if code == "NORM":
        if rest:
            raise MiasFormatError(f"{where}: a NORM row has 3 columns, got extra {rest}")
        return InfoRow(image_id, line, tissue, code, None)
    if not rest:
        raise MiasFormatError(f"{where}: {code} row has no severity")
    severity = _check_code(rest[0], SEVERITIES, "severity", where)
    centre = rest[1:]
    if not centre or centre == _NOTE_3:
        return InfoRow(image_id, line, tissue, code, severity)
    if len(centre) != 3 or not all(_NUMBER.fullmatch(value) for value in centre):
        raise MiasFormatError(
            f"{where}: expected 'x y radius' or '*NOTE 3*' after the severity, got {centre}"
        )
    x, y, radius = (float(value) for value in centre)
    if radius <= 0:
        raise MiasFormatError(f"{where}: radius must be positive, got {radius:g}")
    return InfoRow(image_id, line, tissue, code, severity, x, y, radius)


def parse_info(text: str, source: str) -> tuple[InfoRow, ...]:
    """Parse the text of ``Info.txt`` into its data rows, in file order.

    Data rows are the lines whose first column starts with ``mdb``; the prose header and
    separators are skipped, and so is any whitespace around and between columns. A row has
    3 columns (NORM), 4 (class and severity, no centre), 6 (``*NOTE 3*``: calcifications
    spread over the film) or 7 (centre x, y and radius, origin at the bottom-left).

    Parameters
    ----------
    text : str
        The file's contents.
    source : str
        The file or archive member, named in error messages with the line number.

    Raises
    ------
    MiasFormatError
        On a malformed row, or an unknown tissue, class or severity code; the message gives
        the line number.
    """
    rows = []
    for line, content in enumerate(text.splitlines(), start=1):
        tokens = content.split()
        if tokens and tokens[0].startswith("mdb"):
            rows.append(_parse_row(tokens, line, f"{source}: line {line}"))
    return tuple(rows)


def patient_id(image_id: str) -> int:
    """Patient number of a film: ``(n + 1) // 2`` for ``mdbNNN`` (mdb001, mdb002 -> 1)."""
    return (int(image_id[3:]) + 1) // 2


def image_label(classes: Sequence[str], scheme: str) -> str | None:
    """Label of a film with rows of the given class codes under a scheme; None if excluded.

    The film takes, of its rows' labels other than :data:`EXCLUDE`, the first in
    :data:`LABEL_PRECEDENCE` (calc > mass > normal).

    Raises
    ------
    ConfigError
        If ``scheme`` is not a key of :data:`LABEL_SCHEMES`.
    KeyError
        If a class code is not in the scheme.
    """
    mapping = _scheme(scheme)
    labels = {mapping[code] for code in classes} - {EXCLUDE}
    return next((label for label in LABEL_PRECEDENCE if label in labels), None)


def _scheme(scheme: str) -> Mapping[str, str]:
    if scheme not in LABEL_SCHEMES:
        choices = ", ".join(LABEL_SCHEMES)
        raise ConfigError(f"unknown label scheme {scheme!r} (expected one of {choices})")
    return LABEL_SCHEMES[scheme]


def build_records(
    rows: Iterable[InfoRow], scheme: str, image_shape: tuple[int, int], source: str
) -> tuple[tuple[MiasRecord, ...], tuple[str, ...]]:
    """Group ``Info.txt`` rows by film and label each film under ``scheme``.

    A centre ``(x, y)`` becomes ``RoiCircle(row=height - 1 - y, col=x, radius)``.

    Parameters
    ----------
    rows : iterable of InfoRow
        As :func:`parse_info` returns them.
    scheme : str
        A key of :data:`LABEL_SCHEMES`.
    image_shape : tuple of int
        ``(height, width)`` of the films, used to flip the y axis and bound the centres.
    source : str
        The ``Info.txt`` file, named in error messages.

    Returns
    -------
    records : tuple of MiasRecord
        The labelled films, sorted by image id.
    excluded : tuple of str
        The ids of the films the scheme leaves out, sorted.

    Raises
    ------
    MiasFormatError
        If rows of one film disagree on its tissue, or a centre lies outside the image.
    """
    _scheme(scheme)
    height, width = image_shape
    by_image: dict[str, list[InfoRow]] = {}
    for row in rows:
        by_image.setdefault(row.image_id, []).append(row)
    records, excluded = [], []
    for image_id in sorted(by_image):
        film = by_image[image_id]
        for row in film:
            where = f"{source}: line {row.line}"
            if row.tissue != film[0].tissue:
                raise MiasFormatError(
                    f"{where}: {image_id} has tissue {row.tissue!r} here but "
                    f"{film[0].tissue!r} on line {film[0].line}"
                )
            if row.x is not None and not (0 <= row.x < width and 0 <= row.y < height):
                raise MiasFormatError(
                    f"{where}: centre ({row.x:g}, {row.y:g}) lies outside the "
                    f"{width}x{height} image"
                )
        classes = tuple(row.class_code for row in film)
        label = image_label(classes, scheme)
        if label is None:
            excluded.append(image_id)
            continue
        records.append(
            MiasRecord(
                image_id=image_id,
                patient_id=patient_id(image_id),
                label=label,
                tissue=film[0].tissue,
                severity=max((row.severity for row in film), key=_SEVERITY_RANK.__getitem__),
                classes=classes,
                rois=tuple(
                    RoiCircle(row=height - 1 - row.y, col=row.x, radius=row.radius)
                    for row in film
                    if row.x is not None
                ),
            )
        )
    return tuple(records), tuple(excluded)


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
            stacklevel=2,
        )
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
