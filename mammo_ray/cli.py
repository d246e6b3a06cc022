"""Where a command turns a :class:`~mammo_ray.errors.MammoRayError` into exit code 2."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

from mammo_ray.errors import MammoRayError

__all__ = ["run_cli"]


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
