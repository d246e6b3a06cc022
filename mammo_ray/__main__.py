"""``python -m mammo_ray <command> ...`` and the ``mammo-ray`` console script.

Each command is the ``main(argv)`` of one module, also runnable as ``python -m <module>``.
The module is imported only once its command is chosen, so ``mammo-ray data summary`` never
loads Ray, MLflow or LIME.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

from mammo_ray import __version__
from mammo_ray.cli import run_cli

COMMANDS: dict[str, tuple[str, str]] = {
    "data": ("mammo_ray.data.__main__", "fetch MIAS or summarise a copy of it"),
    "preprocess": ("mammo_ray.preprocess.__main__", "build the preprocessing cache; quality"),
    "train": ("mammo_ray.learn.run", "train one configuration (or 'train audit')"),
    "evaluate": ("mammo_ray.learn.evaluate", "evaluate a checkpoint on a dataset"),
    "explain": ("mammo_ray.explain.command", "LIME explanations of a checkpoint"),
    "search": ("mammo_ray.search.command", "the main job: Ray Tune + Optuna search"),
    "report": ("mammo_ray.report.document", "write report.md of a finished search"),
}
"""Command name -> (module whose ``main(argv)`` runs it, one-line summary)."""


def usage() -> str:
    """The top-level help: one line per command."""
    width = max(map(len, COMMANDS))
    lines = [f"usage: mammo-ray <command> [options]   (mammo_ray {__version__})", "", "commands:"]
    lines += [f"  {name:<{width}}  {summary}" for name, (_, summary) in COMMANDS.items()]
    lines += ["", "'mammo-ray <command> --help' explains a command's options."]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``argv[0]``'s command with the rest of ``argv``; no command prints :func:`usage`."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(usage())
        return 0 if args else 2
    name, rest = args[0], args[1:]
    if name not in COMMANDS:
        print(f"error: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    # Imported here, not at the top: a light command must not load the heavy ones.
    module = importlib.import_module(COMMANDS[name][0])
    return run_cli(module.main, rest)


def console() -> None:
    """Entry point of the ``mammo-ray`` console script."""
    sys.exit(main())


if __name__ == "__main__":
    console()
