"""What every command shares: ``--data`` (or ``$MAMMO_RAY_DATA``) and the exit codes.

:func:`run_cli` turns a :class:`~mammo_ray.errors.MammoRayError` into one line and exit code 2.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType

from mammo_ray.errors import ConfigError, MammoRayError
from mammo_ray.files import check_writable_dir, check_writable_file
from mammo_ray.process import signal_handlers

__all__ = [
    "DATA_ENV",
    "add_data_argument",
    "check_outputs",
    "data_options",
    "resolve_data",
    "run_cli",
    "text_table",
]

DATA_ENV = "MAMMO_RAY_DATA"


def add_data_argument(parser: argparse.ArgumentParser) -> None:
    """``--data PATH``: a MIAS folder or archive; resolved by :func:`resolve_data`."""
    parser.add_argument(
        "--data", metavar="PATH", help=f"MIAS folder or archive (default: ${DATA_ENV})"
    )


def data_options(*, workers: bool = True) -> argparse.ArgumentParser:
    """The options of every command that reads films, as an argparse parent
    (``ArgumentParser(parents=[data_options()])``): ``--data``, ``--cache``, ``--address`` and,
    with ``workers``, ``--workers`` (Ray Data workers for preprocessing)."""
    parent = argparse.ArgumentParser(add_help=False)
    add_data_argument(parent)
    parent.add_argument(
        "--cache", default="runs/cache", help="preprocessing cache root (default: runs/cache)"
    )
    if workers:
        parent.add_argument(
            "--workers",
            type=int,
            default=os.cpu_count() or 1,
            help="Ray Data workers for preprocessing (default: all CPUs)",
        )
    parent.add_argument(
        "--address", help="Ray cluster: 'auto' or ray://host:10001 (default: a local Ray)"
    )
    return parent


def resolve_data(value: str | None) -> Path:
    """``--data`` if given, else ``$MAMMO_RAY_DATA``; neither is a one-line :class:`ConfigError`
    that says how to get MIAS."""
    value = value or os.environ.get(DATA_ENV)
    if not value:
        raise ConfigError(
            f"no MIAS data given: pass --data PATH or set {DATA_ENV} "
            "(download it with 'python -m mammo_ray.data fetch')"
        )
    return Path(value)


def check_outputs(
    args: argparse.Namespace, *, dirs: Sequence[str] = ("out", "cache"), files: Sequence[str] = ()
) -> None:
    """Check, before any work, that each output option of ``args`` that is set can be written:
    ``dirs`` name folder options (``--out``, ``--cache``), ``files`` file options; URIs
    (``s3://...``) are left to their storage. One :class:`ConfigError` line for the first that
    cannot."""
    for names, check in ((dirs, check_writable_dir), (files, check_writable_file)):
        for name in names:
            value = getattr(args, name, None)
            if value is not None and "://" not in str(value):
                check(value, "--" + name.replace("_", "-"))


def text_table(
    header: Sequence[str], rows: Sequence[Sequence[object]], align: str | None = None
) -> list[str]:
    """The lines of an aligned text table, two spaces between columns, for the terminal.

    ``align`` has ``l`` or ``r`` per column (default: the first column left, the rest right).

    >>> print("\\n".join(text_table(("class", "n"), [("normal", 207), ("calc", 25)])))
    class     n
    normal  207
    calc     25
    """
    align = align or "l" + "r" * (len(header) - 1)
    cells = [[str(value) for value in row] for row in [header, *rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    return [
        "  ".join(
            cell.rjust(width) if side == "r" else cell.ljust(width)
            for cell, width, side in zip(row, widths, align, strict=True)
        ).rstrip()
        for row in cells
    ]


def run_cli(
    main: Callable[[Sequence[str] | None], int | None], argv: Sequence[str] | None = None
) -> int:
    """Run ``main(argv)``; print a :class:`MammoRayError` as ``error: <message>`` and return 2.

    Ctrl-C and SIGTERM end it as :class:`KeyboardInterrupt` (so every whole-or-absent write
    cleans up): ``interrupted`` (with how to continue, for
    :class:`~mammo_ray.errors.Interrupted`) and 130. Other exceptions propagate with their
    traceback: they are bugs, not bad input.
    """
    with signal_handlers({signal.SIGTERM: _interrupt}):
        try:
            return int(main(argv) or 0)
        except MammoRayError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        except KeyboardInterrupt as exc:
            print(f"interrupted: {exc}" if str(exc) else "interrupted", file=sys.stderr)
            return 130


def _interrupt(signum: int, frame: FrameType | None) -> None:
    """SIGTERM as Ctrl-C: a :class:`KeyboardInterrupt` in the main thread."""
    raise KeyboardInterrupt
