"""``python -m mammo_ray.explain``: see :mod:`mammo_ray.explain.command`."""

import sys

from mammo_ray.cli import run_cli
from mammo_ray.explain.command import main

sys.exit(run_cli(main))
