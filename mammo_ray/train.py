"""``python -m mammo_ray.train``: the training command, :mod:`mammo_ray.learn.run`."""

import sys

from mammo_ray.cli import run_cli
from mammo_ray.learn.run import main

if __name__ == "__main__":
    sys.exit(run_cli(main))
