"""``python -m mammo_ray.search``: see :mod:`mammo_ray.search.run`."""

import sys

from mammo_ray.cli import run_cli
from mammo_ray.search.run import main

sys.exit(run_cli(main))
