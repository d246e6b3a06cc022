"""Write small synthetic MIAS datasets (Info.txt + PGM files) for tests.

The default dataset, :data:`DEFAULT_ROWS` at :data:`DEFAULT_SHAPE`, has 12 films of 6
patients and every quirk of the real ``Info.txt``: a prose header, NORM rows of 3 columns with
a trailing space, a row without coordinates, a ``*NOTE 3*`` row, films with two rows, and a
film with both a mass and a calcification. Its known answers are in :data:`DEFAULT_LABELS`.

Each image is a bright half-ellipse "breast" against the chest-wall edge (left for odd,
right for even film numbers) on a dark background, with a brighter disc at each Info.txt
centre (origin bottom-left) and a little seeded noise::

    files = mias_files()                          # {"Info.txt": ..., "mdb001.pgm": ..., ...}
    path = write_mias(tmp_path / "mias.tar.gz", files)
    dataset = load_mias(path, image_shape=DEFAULT_SHAPE)
"""

from __future__ import annotations

import io
import tarfile
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from mammo_ray.data.pgm import encode_pgm

__all__ = [
    "DEFAULT_ROWS",
    "DEFAULT_SHAPE",
    "DEFAULT_LABELS",
    "info_text",
    "synthetic_image",
    "mias_files",
    "write_mias",
    "write_archive",
]

DEFAULT_SHAPE = (64, 64)

DEFAULT_ROWS: tuple[str, ...] = (
    "mdb001 G CIRC B 20 45 8",
    "mdb002 G NORM ",
    "mdb003 D CALC M 14 40 4",
    "mdb003 D CALC M 22 22 5",
    "mdb004 D NORM ",
    "mdb005 F CIRC B",
    "mdb006 F NORM ",
    "mdb007 G CALC M *NOTE 3*",
    "mdb008 G NORM ",
    "mdb009 F ARCH M 18 30 10",
    "mdb010 F ASYM B 46 33 6 ",
    "mdb011 D SPIC M 20 20 7",
    "mdb011 D CALC B 12 40 3",
    "mdb012 D NORM ",
)

DEFAULT_LABELS: dict[str, dict[str, str]] = {
    "paper": {
        "mdb001": "mass",
        "mdb002": "normal",
        "mdb003": "calc",
        "mdb004": "normal",
        "mdb005": "mass",
        "mdb006": "normal",
        "mdb007": "calc",
        "mdb008": "normal",
        "mdb009": "mass",
        "mdb010": "mass",
        "mdb011": "calc",
        "mdb012": "normal",
    },
}
DEFAULT_LABELS["strict_mass"] = {
    image_id: label
    for image_id, label in DEFAULT_LABELS["paper"].items()
    if image_id not in ("mdb009", "mdb010")
}

_HEADER = """\
              MAMMOGRAPHIC IMAGE ANALYSIS SOCIETY
                  MiniMammographic Database

Synthetic test copy written by tests/data/mias_factory.py.
=================================================================
INFORMATION:

1st column: MIAS database reference number.

2nd column: Character of background tissue:
                F - Fatty
                G - Fatty-glandular
                D - Dense-glandular

3rd column: Class of abnormality present:
                CALC - Calcification
                CIRC - Well-defined/circumscribed masses
                NORM - Normal

4th column: Severity of abnormality;
                B - Benign
                M - Malignant

5th,6th columns: x,y image-coordinates of centre of abnormality.

7th column: Approximate radius (in pixels) of a circle enclosing
\t    the abnormality.
=================================================================
"""


def info_text(rows: Sequence[str] = DEFAULT_ROWS) -> str:
    """An ``Info.txt`` with the official file's kind of prose header, then ``rows``."""
    return _HEADER + "".join(f"{row}\n" for row in rows) + "=" * 65 + "\n"


def _centres(image_id: str, rows: Sequence[str]) -> list[tuple[int, int, int]]:
    """(x, y, radius) of the rows of ``image_id`` that have 7 numeric-looking columns."""
    centres = []
    for row in rows:
        tokens = row.split()
        if tokens and tokens[0] == image_id and len(tokens) == 7:
            centres.append((int(tokens[4]), int(tokens[5]), int(tokens[6])))
    return centres


def synthetic_image(
    image_id: str, rows: Sequence[str] = DEFAULT_ROWS, shape: tuple[int, int] = DEFAULT_SHAPE
) -> np.ndarray:
    """A deterministic ``uint8`` film: breast half-ellipse, lesion discs, seeded noise.

    Background 10, breast 90..150 (brighter towards the chest wall), lesions 230, plus
    uniform noise in [0, 8), seeded by the film number.
    """
    height, width = shape
    number = int(image_id[3:])
    rows_idx, cols_idx = np.mgrid[0:height, 0:width].astype(np.float64)
    wall = 0.0 if number % 2 else width - 1.0
    depth = np.abs(cols_idx - wall) / (0.6 * width)
    spread = (rows_idx - (height - 1) / 2) / (0.45 * height)
    breast = depth**2 + spread**2 <= 1.0
    image = np.where(breast, 150.0 - 60.0 * np.clip(depth, 0.0, 1.0), 10.0)
    for x, y, radius in _centres(image_id, rows):
        row = height - 1 - y
        image[(rows_idx - row) ** 2 + (cols_idx - x) ** 2 <= radius**2] = 230.0
    noise = np.random.default_rng(number).integers(0, 8, size=shape)
    return np.clip(image + noise, 0, 255).astype(np.uint8)


def mias_files(
    rows: Sequence[str] = DEFAULT_ROWS,
    *,
    shape: tuple[int, int] = DEFAULT_SHAPE,
    maxval: int = 255,
) -> dict[str, bytes]:
    """``Info.txt``, ``Licence.txt`` and one ``mdbNNN.pgm`` per film named in ``rows``.

    With ``maxval`` other than 255 the 8-bit film ``v`` is stored as
    ``round(v * maxval / 255)``, which decodes back to ``v``.
    """
    files = {
        "Info.txt": info_text(rows).encode("ascii"),
        "Licence.txt": b"Synthetic data for tests; no licence needed.\n",
    }
    for image_id in sorted({row.split()[0] for row in rows if row.strip()}):
        image = synthetic_image(image_id, rows, shape).astype(np.int64)
        stored = image if maxval == 255 else (image * maxval * 2 + 255) // (2 * 255)
        files[f"{image_id}.pgm"] = encode_pgm(stored, maxval=maxval)
    return files


def write_archive(path: Path, members: Mapping[str, bytes]) -> Path:
    """Write ``members`` (name -> bytes, names kept verbatim) as a .tar.gz/.tgz/.tar/.zip."""
    name = path.name.lower()
    if name.endswith(".zip"):
        with zipfile.ZipFile(path, "w") as archive:
            for member, data in members.items():
                info = zipfile.ZipInfo(member)
                info.compress_type = zipfile.ZIP_DEFLATED
                archive.writestr(info, data)
        return path
    mode = "w:gz" if name.endswith((".tar.gz", ".tgz")) else "w"
    if mode == "w" and not name.endswith(".tar"):
        raise ValueError(f"{path}: not an archive name (.tar.gz, .tgz, .tar, .zip)")
    with tarfile.open(path, mode) as archive:
        for member, data in members.items():
            info = tarfile.TarInfo(member)
            info.size = len(data)
            info.mtime = 790_000_000
            archive.addfile(info, io.BytesIO(data))
    return path


def write_mias(path: Path, files: Mapping[str, bytes] | None = None, *, folder: str = "") -> Path:
    """Write a dataset as a directory, or as an archive when ``path`` has an archive suffix.

    Parameters
    ----------
    path : Path
        Directory to create, or ``*.tar.gz``, ``*.tgz``, ``*.tar`` or ``*.zip`` file.
    files : mapping of str to bytes, optional
        Name -> contents; :func:`mias_files` by default.
    folder : str
        Put the files inside this top-level folder (e.g. ``"all-mias"``).
    """
    files = mias_files() if files is None else files
    prefix = f"{folder}/" if folder else ""
    if path.name.lower().endswith((".tar.gz", ".tgz", ".tar", ".zip")):
        return write_archive(path, {prefix + name: data for name, data in files.items()})
    for name, data in files.items():
        target = path / prefix / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    return path
