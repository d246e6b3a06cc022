"""Shared fixtures: the real MIAS subset (required in CI) and a local Ray cluster."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MIAS_DEV = REPO_ROOT.parent / "shared" / "data" / "mias" / "mias-dev.tar.gz"


SLOW_FIXTURES = frozenset({"ray_local", "mias_dev_path"})
"""A test that starts Ray or reads the real MIAS subset is ``slow`` whether or not it says so."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark ``slow`` every integration test and every test using a fixture of SLOW_FIXTURES,
    so that ``make test-fast`` (``-m "not slow"``) runs the unit tests only."""
    for item in items:
        if item.get_closest_marker("integration") or SLOW_FIXTURES & set(item.fixturenames):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def mias_dev_path() -> Path:
    """Path of the shared 258-image MIAS subset; fails in CI when missing, skips elsewhere."""
    path = Path(os.environ.get("MAMMO_RAY_DATA", DEFAULT_MIAS_DEV))
    if not path.exists():
        message = f"MIAS subset not found at {path} (set MAMMO_RAY_DATA)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def ray_local(tmp_path_factory):
    """A local Ray cluster with 2 CPUs for the whole session, temp files under pytest's tmp."""
    import ray

    tmp = tmp_path_factory.mktemp("ray")
    os.environ.setdefault("RAY_TMPDIR", str(tmp))
    if not ray.is_initialized():
        ray.init(
            num_cpus=2,
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
            _temp_dir=str(tmp),
        )
    yield ray
    ray.shutdown()
