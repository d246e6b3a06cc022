"""Tests of the search's Ray Tune side: the time budget, its validation, starting Ray."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mammo_ray.errors import ConfigError
from mammo_ray.search.run import SearchOptions
from mammo_ray.search.space import load_search_space

SMOKE = Path(__file__).resolve().parents[1] / "search_spaces" / "smoke.yaml"

# Three finished trials, the middle one cut before its first result, in a fresh process: a
# Tune run earlier in the same process (the search tests) changes how Ray prints its tables.
FINAL_TABLE = textwrap.dedent(
    """
    import sys, tempfile
    import ray
    from ray.train._internal.storage import StorageContext
    from ray.tune.experiment import Trial
    from mammo_ray.search.space import load_search_space
    from mammo_ray.search.tune import progress_reporter

    ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False)
    space = load_search_space(sys.argv[1])
    metric = space.settings.metric
    config = {"model.backbone": "resnet18", "optim.lr": 0.001, "segmentation": True,
              "augment.mode": "x5"}
    root = tempfile.mkdtemp()
    trials = []
    for trial_id, result in (("t0", {metric: 0.4}), ("t1", {}), ("t2", {metric: 0.5})):
        storage = StorageContext(storage_path=root, experiment_dir_name="tune",
                                 trial_dir_name=trial_id)
        trial = Trial("__fake", stub=True, config=config, trial_id=trial_id, storage=storage)
        trial.status = Trial.TERMINATED
        trial.run_metadata.last_result = {**result, "config": config}
        trials.append(trial)
    progress_reporter(space, space.settings).report(trials, done=True)
    """
)


@pytest.mark.slow
def test_final_table_survives_a_trial_cut_before_its_first_result(tmp_path):
    """What ended `make search` on a slow CPU: the budget stopped a trial before it reported,
    and Tune's final table sorted None against the others' metric (TypeError)."""
    run = subprocess.run(
        [sys.executable, "-c", FINAL_TABLE, str(SMOKE)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert all(f"t{i}" in run.stdout for i in range(3))
    assert "Current best trial: t2" in run.stdout


def test_a_negative_time_budget_on_the_command_line_is_a_config_error():
    space = load_search_space(SMOKE)
    with pytest.raises(ConfigError, match="--time-budget: time_budget_s must be > 0"):
        SearchOptions(time_budget_s=-5).settings_for(space)
    assert SearchOptions(time_budget_s=30).settings_for(space).time_budget_s == 30


@pytest.mark.slow
def test_a_command_starts_its_own_ray_even_when_another_cluster_is_named(tmp_path):
    """With $RAY_ADDRESS (or a leftover /tmp/ray/ray_current_cluster) naming a cluster, a plain
    ray.init() tried to join it and refused num_cpus; ensure_ray(None, n) starts its own."""
    code = (
        "import ray; from mammo_ray.preprocess.pipeline import ensure_ray; "
        "ensure_ray(None, 1); print(ray.cluster_resources()['CPU'])"
    )
    run = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "RAY_ADDRESS": "127.0.0.1:1"},
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip().splitlines()[-1] == "1.0"
