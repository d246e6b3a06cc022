"""Every scored trial once on the held-out test part, for the report only.

How well did the search's selection metric predict what a configuration does on patients it
never saw? The best trial is chosen before these numbers exist, and nothing selects on them;
the report plots the selection metric against them and gives their Spearman correlation.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from ray.tune import Checkpoint, ResultGrid
from tqdm import tqdm

from mammo_ray.errors import MammoRayError
from mammo_ray.learn.checkpoint import load_trained
from mammo_ray.learn.evaluate import predict_images
from mammo_ray.learn.trial import held_out_arrays, validation_metrics
from mammo_ray.preprocess.prepared import PreparedData
from mammo_ray.search.results import best_checkpoint

__all__ = ["test_every_trial"]


def test_every_trial(
    results: ResultGrid, data: PreparedData, metric: str, mode: str
) -> dict[str, dict[str, float]]:
    """``{trial folder: {"balanced_accuracy", "accuracy", "n"}}`` of each trial's checkpoint
    (its best epoch, or a cross-validated trial's fold ensemble) on the held-out test part;
    trials without a checkpoint, or whose checkpoint cannot be scored (said in one line each:
    these figures are for the report, so they never stop the search), are left out."""
    scores: dict[str, dict[str, float]] = {}
    for result in tqdm(list(results), desc="every trial on test", unit="trial", file=sys.stderr):
        checkpoint = best_checkpoint(result, metric, mode)
        if checkpoint is None:
            continue
        trial = Path(result.path).name
        try:
            scores[trial] = _score(checkpoint, data)
        except (MammoRayError, OSError) as exc:
            print(f"{trial}: not scored on the test part ({exc})", file=sys.stderr)
    return scores


def _score(checkpoint: Checkpoint, data: PreparedData) -> dict[str, float]:
    with checkpoint.as_directory() as directory:
        model, cfg, _ = load_trained(Path(directory) / "model.pt")
    arrays = held_out_arrays(cfg, data)
    rows = np.asarray(arrays.split.test, dtype=np.int64)
    measures = validation_metrics(predict_images(model, arrays.images[rows]), arrays.labels[rows])
    return {
        "balanced_accuracy": measures["balanced_accuracy"],
        "accuracy": measures["accuracy"],
        "n": int(rows.size),
    }
