"""The best trial of a search, once tuning is over: evaluated once on the test split (the
outer test part of a cross-validated search: the trial's fold ensemble), logged as an MLflow
model, and explained with LIME on test images, all into the search's parent run. The best
ResNet-18 trial, the paper's pick, gets the same when another backbone won."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import mlflow
import numpy as np
import torch
from ray import tune
from torch import nn

from mammo_ray.explain.command import explain_films
from mammo_ray.learn.bilateral_maps import is_patch_film_model
from mammo_ray.learn.checkpoint import load_trained
from mammo_ray.learn.config import TrainConfig
from mammo_ray.learn.evaluate import evaluate_and_log
from mammo_ray.learn.trial import TrialArrays, held_out_arrays
from mammo_ray.preprocess.prepared import PreparedData
from mammo_ray.tracking import TrainingRun

__all__ = ["finish_best", "lime_samples_for", "LIME_SAMPLES", "PATCH_LIME_SAMPLES"]

LIME_SAMPLES = 300
"""LIME perturbations per image for a whole-film winner, unless given (about 90 images/s at
224 px in bf16 on a 2-core AVX-512 Xeon: seconds per image)."""

PATCH_LIME_SAMPLES = 50
"""The same for a patch winner: each perturbation maps the film (pair) with every fold model,
and 300 took 5.2-5.5 minutes per image for a 5-fold ``patch+bilateral`` MobileNet-V2 on that
CPU, 21 of a 31-minute finish; its score maps are the explanation it is built to give."""


def finish_best(
    checkpoint: tune.Checkpoint,
    data: PreparedData,
    parent: TrainingRun,
    out: Path,
    *,
    name: str = "best",
    explain_n: int,
    lime_samples: int | None,
    seed: int,
) -> None:
    """Copy a trial's checkpoint to ``out/<name>/model.pt``, evaluate it once on the held-out
    test part (the outer test part of a cross-validated search), explain ``explain_n`` test
    images (``out/explain``, or ``out/<name>/explain`` for another than ``best``) with
    ``lime_samples`` perturbations (default :data:`LIME_SAMPLES`, :data:`PATCH_LIME_SAMPLES`
    for a patch model), and log it all to the parent run under ``<name>``; ``best`` is also
    logged as an MLflow model."""
    best_dir = out / name
    best_dir.mkdir(parents=True, exist_ok=True)
    with checkpoint.as_directory() as directory:
        shutil.copyfile(Path(directory) / "model.pt", best_dir / "model.pt")
    model, cfg, _ = load_trained(best_dir / "model.pt")
    arrays = held_out_arrays(cfg, data)
    what = "fold ensemble, outer test" if cfg.split.method == "cv" else "test"
    evaluate_and_log(
        model,
        arrays,
        best_dir,
        parent,
        title=f"{name}: {cfg.model.backbone}, {cfg.split.method} split, {what}",
        seed=cfg.seed,
        artifact_path=name,
        prefix="test_" if name == "best" else f"{name}_test_",
    )
    if name == "best":
        _log_model(parent, model, arrays.images.shape[1:])
    if explain_n > 0:
        lime_samples = lime_samples_for(model, lime_samples)
        explain_dir = out / "explain" if name == "best" else best_dir / "explain"
        _explain(
            model, cfg, arrays, data, explain_dir, n=explain_n, samples=lime_samples, seed=seed
        )
        parent.log_artifacts([explain_dir], f"{name}/explain" if name != "best" else "explain")


def lime_samples_for(model: nn.Module, given: int | None) -> int:
    """``given``, or :data:`PATCH_LIME_SAMPLES` for a patch film model (said in one line) and
    :data:`LIME_SAMPLES` for another."""
    if given is not None:
        return given
    if is_patch_film_model(model):
        print(f"LIME on a patch model: {PATCH_LIME_SAMPLES} perturbations per image")
        return PATCH_LIME_SAMPLES
    return LIME_SAMPLES


def _explain(
    model: nn.Module,
    cfg: TrainConfig,
    arrays: TrialArrays,
    data: PreparedData,
    out: Path,
    *,
    n: int,
    samples: int,
    seed: int,
) -> None:
    """LIME (and a patch model's score maps) on ``n`` test films, abnormal ones first (they
    have circles to compare with), the rest drawn at random with ``seed``."""
    test = list(dict.fromkeys(arrays.source_index[np.asarray(arrays.split.test)].tolist()))
    has_circle = [bool(data.manifest.records[i].rois) for i in test]
    rng = np.random.default_rng(seed)
    order = sorted(range(len(test)), key=lambda j: (not has_circle[j], rng.random()))
    rows = [int(test[j]) for j in sorted(order[:n])]
    explain_films(model, cfg, data, rows, out, num_samples=samples, seed=seed)


def _log_model(parent: TrainingRun, model: nn.Module, image_shape: tuple[int, ...]) -> None:
    """Log the best model to the parent run as an MLflow model (PyTorch; torch.export format,
    or for a film model of patches, which ``torch.export`` cannot trace, pickled).

    The input example, two normalised grayscale images (2, 1, H, W) float32 of the shape the
    model reads (a film, or a film pair for ``patch+bilateral``), gives the model signature;
    two rather than one keeps the exported batch dimension dynamic. Runs inside
    :func:`~mammo_ray.tracking.global_tracking_uri` of the search's store.
    """
    example = np.zeros((2, 1, *image_shape), np.float32)
    with mlflow.start_run(run_id=parent.run_id):
        cpu_model = copy.deepcopy(model).cpu().to(memory_format=torch.contiguous_format).eval()
        mlflow.pytorch.log_model(
            cpu_model,
            name="best_model",
            input_example=example,
            serialization_format="pickle" if is_patch_film_model(model) else "pt2",
        )
