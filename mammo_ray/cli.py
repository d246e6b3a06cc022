"""What every command shares: ``--data`` (or ``$MAMMO_RAY_DATA``) and the exit codes.

:func:`run_cli` turns a :class:`~mammo_ray.errors.MammoRayError` into one line and exit code 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from mammo_ray.errors import ConfigError, MammoRayError

__all__ = ["DATA_ENV", "add_data_argument", "resolve_data", "run_cli"]

DATA_ENV = "MAMMO_RAY_DATA"


def add_data_argument(parser: argparse.ArgumentParser) -> None:
    """``--data PATH``: a MIAS folder or archive; resolved by :func:`resolve_data`."""
    parser.add_argument(
        "--data", metavar="PATH", help=f"MIAS folder or archive (default: ${DATA_ENV})"
    )


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


def run_cli(
    main: Callable[[Sequence[str] | None], int | None], argv: Sequence[str] | None = None
) -> int:
    """Run ``main(argv)``; print a :class:`MammoRayError` as ``error: <message>`` and return 2.

    Other exceptions propagate with their traceback: they are bugs, not bad input.
    """
    try:
        return int(main(argv) or 0)
    except MammoRayError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
