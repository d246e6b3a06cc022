"""MIAS ``Info.txt``: its codes, its rows, and the per-film records with labels.

``Info.txt`` has one row per abnormality (several rows for some films, none with coordinates for
others); :func:`parse_info` reads it strictly and :func:`build_records` turns the rows into one
:class:`MiasRecord` per film, labelled by a label scheme (the paper's three classes by default:
normal = NORM; calc = CALC; mass = CIRC, SPIC, MISC, ARCH, ASYM). The y coordinate of a circle
has its origin at the bottom-left of the 1024 x 1024 film.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from mammo_ray.errors import ConfigError, MiasFormatError

__all__ = [
    "LABELS",
    "EXCLUDE",
    "LABEL_PRECEDENCE",
    "LABEL_SCHEMES",
    "TISSUES",
    "CLASS_CODES",
    "SEVERITIES",
    "INFO_NAME",
    "RoiCircle",
    "InfoRow",
    "MiasRecord",
    "parse_info",
    "patient_id",
    "image_label",
    "build_records",
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


INFO_NAME = "Info.txt"


_IMAGE_ID = re.compile(r"mdb\d{3}")


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


def _check_normal_alone(film: Sequence[InfoRow], source: str) -> None:
    """A NORM row says the film has no abnormality: it must be the film's only row."""
    if len(film) < 2:
        return
    normal = next((row for row in film if row.class_code == "NORM"), None)
    if normal is not None:
        other = next(row for row in film if row is not normal)
        raise MiasFormatError(
            f"{source}: line {normal.line}: {normal.image_id} is listed as NORM here but as "
            f"{other.class_code} on line {other.line}; a normal film has one row"
        )


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
        If rows of one film disagree on its tissue or list it both as NORM and as something
        else (or as NORM twice), or a centre lies outside the image.
    """
    _scheme(scheme)
    height, width = image_shape
    by_image: dict[str, list[InfoRow]] = {}
    for row in rows:
        by_image.setdefault(row.image_id, []).append(row)
    records, excluded = [], []
    for image_id in sorted(by_image):
        film = by_image[image_id]
        _check_normal_alone(film, source)
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
