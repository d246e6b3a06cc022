"""Evaluate a trained model: ``metrics.json``, ``predictions.csv``, ``confusion_matrix.png``.

    python -m mammo_ray.evaluate --checkpoint runs/train/model.pt --data PATH --out DIR

The checkpoint carries its training config; the data are preprocessed with the checkpoint's
own preprocessing config (through the cache), so a dataset never seen before works. Every image
of the dataset is evaluated; confidence intervals resample patients.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mammo_ray.cli import check_outputs, data_options, resolve_data
from mammo_ray.data.mias import MIAS_IMAGE_SHAPE
from mammo_ray.data.mias_info import LABELS
from mammo_ray.learn.checkpoint import load_trained
from mammo_ray.learn.inference import autocast_dtype, predict
from mammo_ray.learn.metrics import (
    classification_metrics,
    write_metrics_json,
    write_predictions_csv,
)
from mammo_ray.learn.trial import TrialArrays, input_images
from mammo_ray.plots import plot_confusion_matrix
from mammo_ray.preprocess.prepared import prepare_data
from mammo_ray.tracking import TrainingRun

__all__ = [
    "evaluate_arrays",
    "predict_images",
    "write_evaluation",
    "evaluate_test_split",
    "evaluate_and_log",
    "evaluate_checkpoint",
    "TEST_METRICS",
    "EVALUATION_FILES",
]


def evaluate_arrays(
    model: torch.nn.Module,
    images: np.ndarray,
    labels: np.ndarray,
    image_ids: Sequence[str],
    patient_ids: np.ndarray,
    out_dir: str | Path,
    *,
    title: str = "Confusion matrix",
    seed: int = 0,
) -> dict[str, Any]:
    """Predict ``images`` (N, S, S) uint8, write the three evaluation files, return the metrics."""
    proba = predict_images(model, images)
    return write_evaluation(proba, labels, image_ids, patient_ids, out_dir, title=title, seed=seed)


def predict_images(model: torch.nn.Module, images: np.ndarray) -> np.ndarray:
    """Class probabilities (N, C) of uint8 images (N, S, S) on the model's device (autocast
    where that device supports it)."""
    device = next(model.parameters()).device
    return predict(
        model,
        torch.from_numpy(np.ascontiguousarray(images)),
        device=device,
        amp_dtype=autocast_dtype("auto", device),
    )


def write_evaluation(
    proba: np.ndarray,
    labels: np.ndarray,
    image_ids: Sequence[str],
    patient_ids: np.ndarray,
    out_dir: str | Path,
    *,
    title: str = "Confusion matrix",
    seed: int = 0,
) -> dict[str, Any]:
    """From class probabilities (N, C): ``metrics.json`` (patient-bootstrap CIs),
    ``predictions.csv`` and ``confusion_matrix.png`` in ``out_dir``; returns the metrics."""
    pred = proba.argmax(1)
    metrics = classification_metrics(
        labels.tolist(), pred.tolist(), proba, list(LABELS), groups=patient_ids.tolist(), seed=seed
    )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_metrics_json(out_dir / "metrics.json", metrics)
    write_predictions_csv(
        out_dir / "predictions.csv",
        list(image_ids),
        labels.tolist(),
        pred.tolist(),
        proba,
        list(LABELS),
    )
    plot_confusion_matrix(
        np.asarray(metrics["confusion_matrix"]),
        list(LABELS),
        out_dir / "confusion_matrix.png",
        title=f"{title} (n={metrics['n']}, accuracy {metrics['accuracy']:.3f})",
    )
    return metrics


def evaluate_test_split(
    model: torch.nn.Module, arrays: TrialArrays, out_dir: str | Path, *, title: str, seed: int = 0
) -> dict[str, Any]:
    """:func:`evaluate_arrays` on the test rows of a :class:`~mammo_ray.learn.trial.TrialArrays`:
    what a training run and a search do, once, with the checkpoint validation selected."""
    test = np.asarray(arrays.split.test, dtype=np.int64)
    return evaluate_arrays(
        model,
        arrays.images[test],
        arrays.labels[test],
        [arrays.image_ids[i] for i in test],
        arrays.patient_ids[test],
        out_dir,
        title=title,
        seed=seed,
    )


TEST_METRICS = ("accuracy", "balanced_accuracy", "macro_f1")
"""Test measures logged to MLflow as ``test_<name>`` by :func:`evaluate_and_log`."""

EVALUATION_FILES = ("metrics.json", "predictions.csv", "confusion_matrix.png")
"""What :func:`evaluate_arrays` writes."""


def evaluate_and_log(
    model: torch.nn.Module,
    arrays: TrialArrays,
    out_dir: Path,
    run: TrainingRun,
    *,
    title: str,
    seed: int = 0,
    artifact_path: str | None = None,
    prefix: str = "test_",
) -> dict[str, Any]:
    """The held-out evaluation of a training run or a search's best trial, done once:
    :func:`evaluate_test_split` into ``out_dir``, ``<prefix><name>`` metrics
    (:data:`TEST_METRICS`) and the :data:`EVALUATION_FILES` logged to the MLflow ``run``."""
    metrics = evaluate_test_split(model, arrays, out_dir, title=title, seed=seed)
    run.log_metrics({f"{prefix}{k}": metrics[k] for k in TEST_METRICS})
    run.log_artifacts([out_dir / name for name in EVALUATION_FILES], artifact_path)
    return metrics


def evaluate_checkpoint(
    checkpoint: str | Path,
    data_path: str | Path,
    out_dir: str | Path,
    *,
    cache_root: str | Path = "runs/cache",
    workers: int = 2,
    address: str | None = None,
    image_shape: tuple[int, int] | None = MIAS_IMAGE_SHAPE,
    progress: bool = False,
) -> dict[str, Any]:
    """Evaluate a checkpoint on every image of a dataset, preprocessed its own way.

    The checkpoint's training config gives the preprocessing (through the cache under
    ``cache_root``) and the input array; patients group the bootstrap intervals.

    Raises
    ------
    CheckpointError
        The file is missing, not a checkpoint, or its labels are not :data:`LABELS`.
    ConfigError
        The checkpoint's config is not a valid training config.
    """

    model, cfg, _ = load_trained(checkpoint)
    data = prepare_data(
        cfg.preprocess,
        data_path,
        cache_root,
        workers=workers,
        address=address,
        image_shape=image_shape,
        progress=progress,
    )
    return evaluate_arrays(
        model,
        input_images(cfg, data),
        data.labels,
        data.image_ids,
        data.patient_ids,
        out_dir,
        title=f"{cfg.model.backbone} on {Path(data_path).name}",
        seed=cfg.seed,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mammo_ray.evaluate",
        description="Evaluate a trained checkpoint on every image of a MIAS dataset; writes "
        "metrics.json (per-class counts, accuracy, balanced accuracy, macro-F1, AUC, patient-"
        "bootstrap 95% CIs), predictions.csv and confusion_matrix.png.",
        parents=[data_options()],
    )
    parser.add_argument("--checkpoint", required=True, help="model.pt written by training")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    check_outputs(args)
    metrics = evaluate_checkpoint(
        args.checkpoint,
        resolve_data(args.data),
        args.out,
        cache_root=args.cache,
        workers=args.workers,
        address=args.address,
        progress=not args.quiet,
    )
    lo, hi = metrics["ci95"]["accuracy"]
    print(
        f"n={metrics['n']} accuracy {metrics['accuracy']:.3f} (95% CI {lo:.3f}-{hi:.3f}) "
        f"balanced accuracy {metrics['balanced_accuracy']:.3f} macro-F1 {metrics['macro_f1']:.3f}"
    )
    print(f"written: {Path(args.out) / 'metrics.json'}, predictions.csv, confusion_matrix.png")
    return 0
