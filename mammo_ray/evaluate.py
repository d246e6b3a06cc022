"""``python -m mammo_ray.evaluate``: kept as an entry point; the command is
:mod:`mammo_ray.learn.evaluate`."""

import sys

from mammo_ray.cli import run_cli
from mammo_ray.learn.evaluate import main

if __name__ == "__main__":
    sys.exit(run_cli(main))
