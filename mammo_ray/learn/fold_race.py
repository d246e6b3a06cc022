"""Cross-validation one fold at a time, reporting after each fold: what a search races.

A cross-validated trial trains fold 0, predicts that fold's held-out patients, reports the
out-of-fold measures over the folds done so far, then goes on to fold 1, and so on. A
scheduler that compares trials after each fold (ASHA with folds as its rungs) can so stop a
poor configuration after its first fold and let a good one run all k: fold racing. The same
folds (same seed) for every trial make the comparison at a rung a fair one.

What a trial has done between two folds — its fold models and their out-of-fold predictions —
is a :class:`FoldProgress`; :func:`save_progress` / :func:`load_progress` put it in a checkpoint
directory so a restored trial continues at its next fold instead of its first. The directory's
``model.pt`` is the fold ensemble of the folds done
(:class:`~mammo_ray.learn.ensemble.FoldEnsemble`; the single model after one fold), so it
evaluates, explains and predicts like any checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from mammo_ray.config import from_dict
from mammo_ray.data.mias_info import LABELS
from mammo_ray.errors import CheckpointError, ConfigError
from mammo_ray.files import write_json_atomic
from mammo_ray.learn.bilateral_maps import film_statistics
from mammo_ray.learn.checkpoint import load_trained, save_checkpoint
from mammo_ray.learn.config import TrainConfig
from mammo_ray.learn.cv import (
    FOLD_MEASURES,
    FoldResult,
    fit_fold,
    fold_summary,
    normal_vs_abnormal_auc,
    out_of_fold,
)
from mammo_ray.learn.ensemble import FoldEnsemble, members_of
from mammo_ray.learn.metrics import patient_bootstrap_ci
from mammo_ray.learn.patch_cv import aggregate_folds, fit_patch_fold
from mammo_ray.learn.splits import cross_validation
from mammo_ray.learn.trial import trial_arrays, validation_metrics
from mammo_ray.learn.weights import READ_ERRORS
from mammo_ray.preprocess.prepared import PreparedData

__all__ = [
    "FoldProgress",
    "FoldCallback",
    "race_folds",
    "fold_report",
    "save_progress",
    "load_progress",
]


@dataclasses.dataclass(frozen=True)
class FoldProgress:
    """The folds a cross-validated trial has finished, in order (empty: none yet)."""

    folds: tuple[FoldResult, ...] = ()

    @property
    def done(self) -> int:
        return len(self.folds)

    @property
    def model(self) -> nn.Module:
        """The fold models as one: their ensemble, or the only one."""
        members = [f.model for f in self.folds]
        return members[0] if len(members) == 1 else FoldEnsemble(members)


FoldCallback = Callable[[dict[str, Any], FoldProgress], None]
"""``on_fold(report, progress)``, called by :func:`race_folds` after each fold."""


def race_folds(
    config: dict[str, Any],
    data: PreparedData,
    on_fold: FoldCallback,
    progress: FoldProgress = FoldProgress(),
) -> FoldProgress:
    """Train the folds of ``config`` (``split.method: cv``) from ``progress.done`` on; after
    each, call ``on_fold`` with the progress so far and :func:`fold_report` plus
    ``fold_epochs`` (epochs trained), ``train_loss`` (of the fold's best epoch),
    ``images_per_s`` (mean over its epochs) and ``curves`` (its per-epoch metrics, as a JSON
    text: loggers that take numbers only pass over it).

    Each fold is :func:`~mammo_ray.learn.cv.fit_fold`: its best epoch by the selection metric
    on the fold's inner validation part predicts the fold's held-out part. With ``input.mode``
    ``patch`` or ``patch+bilateral`` it is :func:`~mammo_ray.learn.patch_cv.fit_patch_fold`
    (the map features of the held-out films), and after each fold the aggregation of every
    fold's features is scored out of fold and becomes the fold models' head
    (:func:`~mammo_ray.learn.patch_cv.aggregate_folds`): the report is then that of the
    patch-and-aggregation model as ``train cv`` would give it after these folds.

    Raises
    ------
    ConfigError
        When the split is not ``cv``, the folds cannot be made, or ``progress`` has more folds
        than the config.
    """
    cfg = from_dict(TrainConfig, config, where="trial config")
    if cfg.split.method != "cv":
        raise ConfigError(f"fold racing needs split.method=cv, got {cfg.split.method!r}")
    arrays = trial_arrays(cfg, data, 0)
    cv = cross_validation(
        [LABELS[i] for i in arrays.labels], arrays.patient_ids.tolist(), cfg.split
    )
    if progress.done > len(cv.folds):
        raise ConfigError(f"{progress.done} folds done, but the config has {len(cv.folds)}")
    statistics = film_statistics(arrays.images) if cfg.input.bilateral else None
    for k in range(progress.done, len(cv.folds)):
        with tempfile.TemporaryDirectory(prefix="mammo-ray-fold-") as tmp:
            best = Path(tmp) / "model.pt"
            if cfg.input.patches:
                fold, history = fit_patch_fold(cfg, data, arrays, cv, k, best, statistics)
            else:
                fold, history = fit_fold(cfg, data, arrays, cv, k, best)
        folds = [*progress.folds, fold]
        if cfg.input.patches:
            folds = aggregate_folds(folds, arrays.labels, arrays.patient_ids, cfg.seed)[0]
        progress = FoldProgress(tuple(folds))
        report = fold_report(progress, arrays.labels, arrays.patient_ids, len(cv.folds), cfg.seed)
        on_fold(
            report
            | {
                "fold_epochs": len(history),
                "train_loss": history[fold.best_epoch - 1]["train_loss"],
                "images_per_s": float(np.mean([h["images_per_s"] for h in history])),
                "curves": json.dumps(history),
            },
            progress,
        )
    return progress


def fold_report(
    progress: FoldProgress, labels: np.ndarray, patients: np.ndarray, n_folds: int, seed: int
) -> dict[str, Any]:
    """What a cross-validated trial reports after a fold.

    ``val_*``: :func:`~mammo_ray.learn.trial.validation_metrics` of the out-of-fold predictions
    of the folds done so far (the racing metric), with ``val_n`` films, the patient-bootstrap
    95% interval of their balanced accuracy (``val_balanced_accuracy_ci_low/high``) and their
    ``val_auc_normal_vs_abnormal`` (:func:`~mammo_ray.learn.cv.normal_vs_abnormal_auc`, NaN
    when one side is missing);
    ``fold_*``: the last fold's own held-out measures, best epoch and epochs trained;
    ``cv_mean_*`` / ``cv_sd_*``: mean and sample sd of the folds' measures; ``fold`` (folds
    done) of ``folds``.
    """
    rows, proba = out_of_fold(list(progress.folds), len(labels))
    ci = patient_bootstrap_ci(
        labels[rows], proba.argmax(1), patients[rows], n_classes=len(LABELS), seed=seed
    )
    auc = normal_vs_abnormal_auc(labels[rows], proba)
    last = progress.folds[-1]
    summary = fold_summary(list(progress.folds))
    return {
        "fold": progress.done,
        "folds": n_folds,
        **{f"val_{k}": v for k, v in validation_metrics(proba, labels[rows]).items()},
        "val_n": int(rows.size),
        "val_balanced_accuracy_ci_low": ci["balanced_accuracy"][0],
        "val_balanced_accuracy_ci_high": ci["balanced_accuracy"][1],
        "val_auc_normal_vs_abnormal": auc if auc is not None else float("nan"),
        **{f"fold_{m}": last.metrics[m] for m in FOLD_MEASURES},
        "fold_best_epoch": last.best_epoch,
        **{f"cv_mean_{m}": v for m, v in summary["mean"].items()},
        **{f"cv_sd_{m}": v for m, v in summary["sd"].items()},
    }


def save_progress(
    directory: str | Path, progress: FoldProgress, config: dict[str, Any], preprocess_key: str
) -> None:
    """Write ``model.pt`` (the folds' ensemble) and ``folds.json`` + ``folds.npz`` (each fold's
    index, held-out rows, probabilities, measures, best epoch and, for patch folds, map
    features) into ``directory``."""
    directory = Path(directory)
    save_checkpoint(
        directory / "model.pt",
        progress.model,
        config=config,
        labels=list(LABELS),
        preprocess_key=preprocess_key,
    )
    arrays = {f"rows_{i}": f.rows for i, f in enumerate(progress.folds)}
    arrays |= {f"proba_{i}": f.proba for i, f in enumerate(progress.folds)}
    arrays |= {
        f"features_{i}": f.features for i, f in enumerate(progress.folds) if f.features is not None
    }
    np.savez(directory / "folds.npz", **arrays)
    write_json_atomic(
        directory / "folds.json",
        [
            {"index": f.index, "metrics": f.metrics, "best_epoch": f.best_epoch}
            for f in progress.folds
        ],
    )


def load_progress(directory: str | Path) -> FoldProgress:
    """The :class:`FoldProgress` that :func:`save_progress` wrote into ``directory``.

    Raises
    ------
    CheckpointError
        When a file is missing or does not fit the others.
    """
    directory = Path(directory)
    model = load_trained(directory / "model.pt").model
    members = members_of(model)
    try:
        folds = json.loads((directory / "folds.json").read_text(encoding="utf-8"))
        with np.load(directory / "folds.npz") as arrays:
            loaded = tuple(
                FoldResult(
                    int(f["index"]),
                    arrays[f"rows_{i}"],
                    arrays[f"proba_{i}"],
                    {k: float(v) for k, v in f["metrics"].items()},
                    int(f["best_epoch"]),
                    member,
                    arrays[f"features_{i}"] if f"features_{i}" in arrays.files else None,
                )
                for i, (f, member) in enumerate(zip(folds, members, strict=True))
            )
    except (*READ_ERRORS, zipfile.BadZipFile) as exc:
        raise CheckpointError(
            f"{directory}: not the fold progress of a cross-validated trial "
            f"({type(exc).__name__}: {exc})"
        ) from None
    return FoldProgress(loaded)
