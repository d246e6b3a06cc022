"""Download the official MIAS archive (``all-mias.tar.gz``) and check that it parses.

The download streams to ``<dest>/all-mias.tar.gz.part``, is opened with
:func:`~mammo_ray.data.mias.load_mias` while it still has that name, and only then is renamed
(atomically, :func:`os.replace`) to ``<dest>/all-mias.tar.gz``: the final name only ever
holds an archive that parses, and a failure leaves no file behind.
"""

from __future__ import annotations

import dataclasses
import http.client
import os
import urllib.error
import urllib.request
import warnings
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from mammo_ray import __version__
from mammo_ray.data.mias import MiasDataset, load_mias
from mammo_ray.errors import FetchError, MammoRayError

__all__ = [
    "MIAS_URL",
    "ARCHIVE_NAME",
    "MIAS_IMAGE_COUNT",
    "FetchResult",
    "default_dest",
    "download",
    "fetch_mias",
]

MIAS_URL = "http://peipa.essex.ac.uk/pix/mias/all-mias.tar.gz"
"""Where the MIAS MiniMammographic Database is distributed (PEIPA, University of Essex)."""

ARCHIVE_NAME = "all-mias.tar.gz"
MIAS_IMAGE_COUNT = 322
"""Number of films in the official archive."""

_CHUNK = 1 << 16


@dataclass(frozen=True)
class FetchResult:
    """The archive on disk, the dataset it holds, and whether this call downloaded it."""

    path: Path
    dataset: MiasDataset
    downloaded: bool


def default_dest() -> Path:
    """Folder for downloads: ``$MAMMO_RAY_HOME`` if set, else ``~/.cache/mammo_ray``."""
    home = os.environ.get("MAMMO_RAY_HOME")
    return Path(home) if home else Path.home() / ".cache" / "mammo_ray"


def download(url: str, target: Path, *, progress: bool | None = None, timeout: float = 60.0) -> int:
    """Stream ``url`` into the file ``target`` (overwritten) and return the number of bytes.

    Shows a tqdm progress bar sized by ``Content-Length`` when the server sends one.

    Parameters
    ----------
    url : str
        What to download.
    target : Path
        Where to write it; a failed download may leave it partly written.
    progress : bool or None
        Show the progress bar; None shows it only on a terminal.
    timeout : float
        Seconds to wait for the connection and for each read.

    Raises
    ------
    FetchError
        On an HTTP error status, a network or write error, or fewer bytes than announced.
    """
    request = urllib.request.Request(url, headers={"User-Agent": f"mammo_ray/{__version__}"})
    received = 0
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            length = response.headers.get("Content-Length", "")
            total = int(length) if length.isdigit() else None
            with (
                target.open("wb") as out,
                tqdm(
                    total=total,
                    unit="B",
                    unit_scale=True,
                    unit_divisor=1024,
                    desc=target.name,
                    disable=None if progress is None else not progress,
                ) as bar,
            ):
                while chunk := response.read(_CHUNK):
                    out.write(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
    except urllib.error.HTTPError as exc:
        raise FetchError(f"{url}: HTTP error {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        raise FetchError(f"{url}: cannot connect ({exc.reason})") from None
    except (OSError, http.client.HTTPException) as exc:
        raise FetchError(f"{url}: download to {target} failed ({exc!r})") from None
    if total is not None and received != total:
        raise FetchError(f"{url}: incomplete download, {received} of {total} bytes")
    return received


def fetch_mias(
    dest: Path, *, url: str = MIAS_URL, force: bool = False, progress: bool | None = None
) -> FetchResult:
    """Make sure ``dest/all-mias.tar.gz`` holds a MIAS archive that parses; download it if not.

    An archive already there that parses is kept unless ``force``; one that does not parse is
    downloaded again (with a warning).

    Parameters
    ----------
    dest : Path
        Folder for the archive (created if missing).
    url : str
        Where to download from.
    force : bool
        Download even if a valid archive is already there.
    progress : bool or None
        Progress bar, as in :func:`download`.

    Raises
    ------
    FetchError
        If the folder cannot be created, the download fails, or what it gives does not parse
        as MIAS; nothing is left at ``dest`` in that case.
    """
    final = dest / ARCHIVE_NAME
    if final.exists() and not force:
        try:
            return FetchResult(final, load_mias(final), downloaded=False)
        except MammoRayError as exc:
            warnings.warn(f"{final}: does not parse ({exc}); downloading again", stacklevel=2)
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FetchError(f"{url}: cannot create the folder {dest} ({exc.strerror})") from None
    part = final.with_name(final.name + ".part")
    try:
        download(url, part, progress=progress)
        try:
            dataset = load_mias(part, archive_format="tar")
        except MammoRayError as exc:
            raise FetchError(f"{url}: the download is not a MIAS archive ({exc})") from None
        os.replace(part, final)
    finally:
        part.unlink(missing_ok=True)
    return FetchResult(final, dataclasses.replace(dataset, path=final), downloaded=True)
