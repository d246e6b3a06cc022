"""``python -m mammo_ray.search``: see :mod:`mammo_ray.search.run` and, for its options,
:mod:`mammo_ray.search.command`."""

import sys

from mammo_ray.cli import run_cli
from mammo_ray.search.command import main

sys.exit(run_cli(main))
