"""A small, strict reader (and writer) of binary greyscale PGM images (netpbm ``P5``).

Format (netpbm ``pgm(5)``): the magic ``P5``, whitespace, the width, whitespace, the height,
whitespace, the maximum grey value ``maxval`` (1..65535), then exactly one whitespace character
and the raster: ``height`` rows of ``width`` samples, one byte each when ``maxval < 256`` and
two bytes, most significant first, otherwise. A ``#`` before that last whitespace starts a
comment running to the end of the line.

Every image leaves this module as ``uint8``; a ``maxval`` other than 255 is scaled as
``round(v * 255 / maxval)`` (halves rounded up), so a 16-bit image and its 8-bit conversion
decode to the same array. Anything else in the file -- a wrong magic, a malformed header,
a short raster, bytes other than whitespace after the raster, a sample above ``maxval`` -- is a
:class:`~mammo_ray.errors.MiasFormatError` naming the file (or archive member) and the problem.

References
----------
Netpbm, "pgm - Netpbm grayscale image format", https://netpbm.sourceforge.net/doc/pgm.html
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mammo_ray.errors import MiasFormatError

__all__ = ["read_pgm_header", "validate_pgm", "decode_pgm", "read_pgm", "encode_pgm"]

_MAGIC = b"P5"
_WHITESPACE = b" \t\n\v\f\r"
_MAX_MAXVAL = 65535
_MAX_TOKEN_DIGITS = 9


def _next_token(data: bytes, pos: int, source: str, what: str) -> tuple[int, int]:
    """Skip whitespace and comments from ``pos``; parse one decimal token; return (value, end)."""
    size = len(data)
    while pos < size:
        byte = data[pos : pos + 1]
        if byte in _WHITESPACE:
            pos += 1
        elif byte == b"#":
            newline = min(
                (i for i in (data.find(b"\n", pos), data.find(b"\r", pos)) if i >= 0),
                default=size,
            )
            pos = newline
        else:
            break
    end = pos
    while end < size and data[end : end + 1] not in _WHITESPACE and data[end : end + 1] != b"#":
        end += 1
    token = data[pos:end]
    if not token:
        raise MiasFormatError(f"{source}: malformed PGM header: missing {what}")
    if not token.isdigit() or len(token) > _MAX_TOKEN_DIGITS:
        shown = token[:20].decode("ascii", errors="replace")
        raise MiasFormatError(f"{source}: malformed PGM header: {what} is {shown!r}, not a number")
    return int(token), end


def read_pgm_header(data: bytes, source: str) -> tuple[int, int, int, int]:
    """Parse the header of a binary PGM image without touching its raster.

    Parameters
    ----------
    data : bytes
        The file's bytes (only the header is read, so a prefix holding the header is enough).
    source : str
        The file or archive member, named in error messages.

    Returns
    -------
    tuple of int
        ``(width, height, maxval, offset)``: the image size, the maximum grey value and the
        byte offset of the raster (just past the single whitespace that follows ``maxval``).

    Raises
    ------
    MiasFormatError
        If the magic is not ``P5``, a field is missing or not a positive decimal number,
        ``maxval`` is outside 1..65535, or ``maxval`` is not followed by one whitespace byte.

    Examples
    --------
    >>> read_pgm_header(b"P5\\n# made by hand\\n3 2\\n255\\n" + bytes(6), "x.pgm")
    (3, 2, 255, 26)
    """
    if data[:2] != _MAGIC:
        shown = data[:2].decode("latin-1")
        raise MiasFormatError(f"{source}: not a binary PGM image (magic {shown!r}, expected 'P5')")
    width, pos = _next_token(data, 2, source, "width")
    height, pos = _next_token(data, pos, source, "height")
    maxval, pos = _next_token(data, pos, source, "maxval")
    if width < 1 or height < 1:
        raise MiasFormatError(f"{source}: malformed PGM header: image size {width}x{height}")
    if not 1 <= maxval <= _MAX_MAXVAL:
        raise MiasFormatError(f"{source}: PGM maxval {maxval} is outside 1..{_MAX_MAXVAL}")
    if pos >= len(data) or data[pos : pos + 1] not in _WHITESPACE:
        raise MiasFormatError(
            f"{source}: malformed PGM header: maxval must be followed by one whitespace byte"
        )
    return width, height, maxval, pos + 1


def validate_pgm(data: bytes, source: str) -> tuple[int, int, int, int]:
    """Check a whole binary PGM file: its header, the raster length and what follows it.

    The raster holds ``width * height * b`` bytes, ``b = 1`` if ``maxval < 256`` else 2;
    only whitespace may follow it; no sample may exceed ``maxval`` (one vectorised pass, about
    0.1 ms per MB).

    Returns
    -------
    tuple of int
        ``(width, height, maxval, offset)`` as :func:`read_pgm_header`.

    Raises
    ------
    MiasFormatError
        On a bad header, a truncated raster, trailing bytes other than whitespace, or a
        sample above ``maxval``.
    """
    width, height, maxval, offset = read_pgm_header(data, source)
    end = offset + width * height * (1 if maxval < 256 else 2)
    if len(data) < end:
        raise MiasFormatError(
            f"{source}: truncated PGM raster: {len(data) - offset} bytes, "
            f"expected {end - offset} for {width}x{height} maxval {maxval}"
        )
    if data[end:].strip(_WHITESPACE):
        raise MiasFormatError(
            f"{source}: {len(data) - end} unexpected bytes after the PGM raster "
            f"({width}x{height} maxval {maxval})"
        )
    if maxval not in (255, _MAX_MAXVAL):
        peak = int(_samples(data, width, height, maxval, offset).max())
        if peak > maxval:
            raise MiasFormatError(f"{source}: PGM sample value {peak} exceeds maxval {maxval}")
    return width, height, maxval, offset


def _samples(data: bytes, width: int, height: int, maxval: int, offset: int) -> np.ndarray:
    """The raster as a read-only ``(height, width)`` view of ``data``."""
    dtype = np.dtype(np.uint8) if maxval < 256 else np.dtype(">u2")
    return np.frombuffer(data, dtype=dtype, count=width * height, offset=offset).reshape(
        height, width
    )


def decode_pgm(data: bytes, source: str) -> np.ndarray:
    """Decode a binary PGM image to ``uint8``.

    Samples are scaled as ``round(v * 255 / maxval)`` (halves rounded up, exact integer
    arithmetic) unless ``maxval`` is 255; 16-bit samples are big-endian (``>u2``).

    Parameters
    ----------
    data : bytes
        The whole file.
    source : str
        The file or archive member, named in error messages.

    Returns
    -------
    numpy.ndarray
        ``uint8`` array of shape ``(height, width)``, writable and owning its memory.

    Raises
    ------
    MiasFormatError
        As :func:`validate_pgm`.
    """
    width, height, maxval, offset = validate_pgm(data, source)
    samples = _samples(data, width, height, maxval, offset)
    if maxval == 255:
        return samples.copy()
    wide = samples.astype(np.uint32)
    return ((wide * (2 * 255) + maxval) // (2 * maxval)).astype(np.uint8)


def read_pgm(path: str | Path) -> np.ndarray:
    """Read and decode a binary PGM file to ``uint8`` (see :func:`decode_pgm`).

    Raises
    ------
    MiasFormatError
        If the file cannot be read or is not a valid binary PGM image.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise MiasFormatError(f"{path}: cannot read PGM image ({exc.strerror})") from None
    return decode_pgm(data, str(path))


def encode_pgm(image: np.ndarray, maxval: int = 255) -> bytes:
    """Encode a 2-D integer image as a binary PGM file with the given ``maxval``.

    Samples are written as they are (no scaling), one byte each for ``maxval < 256`` and two
    big-endian bytes otherwise; the header is ``P5\\n<width> <height>\\n<maxval>\\n`` as in the
    MIAS files.

    Raises
    ------
    ValueError
        If the image is not a non-empty 2-D integer array, ``maxval`` is outside 1..65535,
        or a sample is negative or above ``maxval``.
    """
    image = np.asarray(image)
    if image.ndim != 2 or image.size == 0 or not np.issubdtype(image.dtype, np.integer):
        raise ValueError(
            f"PGM image must be a non-empty 2-D integer array, got {image.dtype} {image.shape}"
        )
    if not 1 <= maxval <= _MAX_MAXVAL:
        raise ValueError(f"PGM maxval must be in 1..{_MAX_MAXVAL}, got {maxval}")
    if image.min() < 0 or image.max() > maxval:
        raise ValueError(f"PGM samples must lie in 0..{maxval}, got {image.min()}..{image.max()}")
    height, width = image.shape
    raster = image.astype(np.uint8 if maxval < 256 else ">u2").tobytes()
    return b"P5\n%d %d\n%d\n" % (width, height, maxval) + raster
