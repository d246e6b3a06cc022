"""``python -m mammo_ray.report``: see :mod:`mammo_ray.report.document`."""

import sys

from mammo_ray.cli import run_cli
from mammo_ray.report.document import main

sys.exit(run_cli(main))
