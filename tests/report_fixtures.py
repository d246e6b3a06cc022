"""A synthetic finished-search directory, in the layout ``mammo_ray.search`` writes.

:func:`write_search_dir` writes ``search.json`` (several backbones, a partly filled
segmentation x augmentation grid, a failed trial), ``best/metrics.json`` from
:func:`mammo_ray.learn.metrics.classification_metrics` on known predictions,
``best/confusion_matrix.png``, ``explain/lime.json`` with tiny PNGs, ``audit.json`` and
``quality.csv``; each optional part can be left out. The numbers are chosen so that every
table of the report has a known answer (see the constants below).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib.image
import numpy as np
import pandas as pd

from mammo_ray.learn.metrics import classification_metrics

__all__ = [
    "LABELS",
    "BEST_TRIAL",
    "Y_TRUE",
    "Y_PRED",
    "LIME_IMAGES",
    "make_trial",
    "write_search_dir",
]

LABELS = ["normal", "mass", "calc"]
BEST_TRIAL = "t_res_a"
Y_TRUE = [0, 0, 0, 0, 0, 0, 1, 1, 1, 2, 2]
Y_PRED = [0, 0, 0, 0, 0, 1, 1, 1, 1, 0, 2]
"""Confusion matrix [[5, 1, 0], [0, 3, 0], [1, 0, 1]]: 9 of 11 right."""
PATIENTS = [1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6]
LIME_IMAGES = ["mdb001", "mdb002", "mdb003", "mdb004", "mdb005"]


def make_trial(
    trial_id: str,
    backbone: str,
    accuracies: list[float],
    balanced: list[float],
    *,
    segmentation: bool | None = True,
    augment: str | None = "x5",
    status: str = "TERMINATED",
    error: str | None = None,
    test: float | None = None,
) -> dict[str, Any]:
    """One trial of ``search.json``; epoch ``e`` has ``val_accuracy = accuracies[e - 1]``,
    ``val_balanced_accuracy = balanced[e - 1]``, macro precision / recall / F1 = accuracy
    minus 0.01 / 0.02 / 0.03. ``best`` is the epoch of highest balanced accuracy (``None``
    without epochs); ``segmentation`` / ``augment`` ``None`` leave the key out of params;
    ``test``: the trial's test balanced accuracy (its accuracy 0.05 more)."""
    history = [
        {
            "epoch": epoch,
            "train_loss": 1.0 / epoch,
            "val_loss": 1.1 / epoch,
            "val_accuracy": acc,
            "val_balanced_accuracy": bal,
            "val_macro_f1": round(acc - 0.03, 6),
            "val_macro_precision": round(acc - 0.01, 6),
            "val_macro_recall": round(acc - 0.02, 6),
        }
        for epoch, (acc, bal) in enumerate(zip(accuracies, balanced, strict=True), start=1)
    ]
    params: dict[str, Any] = {"model.backbone": backbone, "optim.lr": 0.001}
    if segmentation is not None:
        params["segmentation"] = segmentation
    if augment is not None:
        params["augment.mode"] = augment
    return {
        "trial_id": trial_id,
        "status": status,
        "failures": 2 if status == "ERROR" else 0,
        "params": params,
        "best": max(history, key=lambda row: row["val_balanced_accuracy"]) if history else None,
        "history": history,
        "error": error,
        "test": None
        if test is None
        else {"balanced_accuracy": test, "accuracy": test + 0.05, "n": 11},
    }


def _trials(ablation: bool) -> list[dict[str, Any]]:
    grid = [
        # trial id, backbone, accuracies, balanced, segmentation, augment, test bacc
        ("t_res_a", "resnet18", [0.5, 0.8, 0.9], [0.45, 0.75, 0.85], True, "x5", 0.6),
        ("t_res_b", "resnet18", [0.6, 0.95], [0.55, 0.7], True, "x5", 0.5),
        ("t_res_c", "resnet18", [0.4, 0.7], [0.35, 0.65], False, "none", 0.55),
        ("t_res_d", "resnet18", [0.6, 0.85], [0.5, 0.8], True, "none", 0.4),
        ("t_dense", "densenet121", [0.45, 0.75], [0.4, 0.72], True, "online", 0.45),
        ("t_mnas", "mnasnet_100", [0.3, 0.55], [0.3, 0.5], False, "x5", 0.3),
    ]
    trials = [
        make_trial(
            trial_id,
            backbone,
            acc,
            bal,
            segmentation=seg if ablation else None,
            augment=aug if ablation else None,
            test=test,
        )
        for trial_id, backbone, acc, bal, seg, aug, test in grid
    ]
    trials.append(
        make_trial(
            "t_vgg",
            "vgg16_bn",
            [],
            [],
            status="ERROR",
            error="CUDA out of memory | tried to allocate 2 GiB\nTraceback (most recent call last)",
        )
    )
    return trials


def _tiny_png(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).random((4, 4))
    matplotlib.image.imsave(path, pixels, cmap="gray", format="png")


def _quality() -> pd.DataFrame:
    enhancement = pd.DataFrame(
        {
            "name": ["none", "he", "clahe", "paper"],
            "psnr_mean": [np.inf, 18.5, 24.25, 30.125],
            "psnr_sd": [np.nan, 1.5, 2.0, 2.5],
            "ssim_mean": [1.0, 0.5, 0.75, 0.875],
            "ssim_sd": [0.0, 0.05, 0.04, 0.03],
            "eme_mean": [3.0, 9.0, 7.0, 5.0],
            "eme_sd": [0.5, 1.0, 0.75, 0.25],
            "n": [8, 8, 8, 8],
        }
    )
    dice = pd.DataFrame(
        {
            "name": ["calc", "mass"],
            "dice_mean": [0.125, 0.25],
            "dice_sd": [0.05, 0.1],
            "n": [2, 3],
        }
    )
    return pd.concat(
        [enhancement.assign(table="enhancement"), dice.assign(table="dice")], ignore_index=True
    )


def _audit_row(
    split: str,
    accuracy: float,
    balanced: float,
    macro_f1: float,
    accuracy_ci: tuple[float, float],
    balanced_ci: tuple[float, float],
    shared_patients: int,
) -> dict[str, Any]:
    """One arm of ``audit.json`` as ``python -m mammo_ray.train audit`` writes it."""
    return {
        "arm": split,
        "best_epoch": 3,
        "best_val": {"val_accuracy": accuracy, "val_balanced_accuracy": balanced},
        "test": {
            "n": 52,
            "accuracy": accuracy,
            "balanced_accuracy": balanced,
            "macro_f1": macro_f1,
            "ci95": {
                "accuracy": list(accuracy_ci),
                "balanced_accuracy": list(balanced_ci),
                "method": "patient bootstrap, 200 resamples, percentile",
                "n_groups": 26,
            },
        },
        "images_per_s": [20.0, 21.5, 21.0],
        "split": split,
        "leaky": split == "paper",
        "leakage": {
            "method": split,
            "leaky": split == "paper",
            "n_train": 170,
            "n_val": 36,
            "n_test": 52,
            "patients_train_test": shared_patients,
            "patients_train_val": shared_patients // 2,
            "patients_val_test": 0,
            "test_images_with_partner_in_train": shared_patients,
            "test_images_from_train_films": 0,
        },
        "mlflow": {"uri": "sqlite:///mlflow.db", "run_id": f"run-{split}"},
    }


def write_search_dir(
    root: str | Path,
    *,
    leaky: bool = False,
    ablation: bool = True,
    best: bool = True,
    confusion_png: bool = True,
    explain: bool = True,
    audit: bool = True,
    quality: bool = True,
) -> Path:
    """Write a finished-search directory under ``root`` and return it.

    Parameters
    ----------
    root : folder to create (parents too).
    leaky : the paper's image-level split (``split: paper``, ``leaky: true``) instead of the
        patient-level one.
    ablation : record ``segmentation`` and ``augment.mode`` in the trials' params.
    best, confusion_png, explain, audit, quality : write ``best/metrics.json``,
        ``best/confusion_matrix.png``, ``explain/``, ``audit.json``, ``quality.csv``.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    search = {
        "name": "synthetic-search",
        "metric": "val_balanced_accuracy",
        "mode": "max",
        "space": "search_spaces/smoke.yaml",
        "command": "python -m mammo_ray.search --space search_spaces/smoke.yaml",
        "split": "paper" if leaky else "patient",
        "leaky": leaky,
        "mlflow": {
            "uri": f"sqlite:///{root.resolve()}/mlflow.db",
            "parent_run_id": "parent123",
            "experiment": "synthetic",
        },
        "best_trial": BEST_TRIAL,
        "trials": _trials(ablation),
        "timings": {"setup_s": 12.5, "tune_s": 300.0, "finish_s": 20.25},
    }
    (root / "search.json").write_text(json.dumps(search, indent=2), encoding="utf-8")
    if best:
        proba = np.eye(len(LABELS))[Y_PRED] * 0.8 + 0.2 / len(LABELS)
        metrics = classification_metrics(Y_TRUE, Y_PRED, proba, LABELS, PATIENTS, n_boot=200)
        (root / "best").mkdir(exist_ok=True)
        (root / "best" / "metrics.json").write_text(json.dumps(metrics), encoding="utf-8")
        if confusion_png:
            _tiny_png(root / "best" / "confusion_matrix.png", seed=0)
    if explain:
        images = [
            {
                "image_id": image_id,
                "true": "mass",
                "pred": "mass" if k else "normal",
                "proba": [0.1, 0.8, 0.1] if k else [0.7, 0.2, 0.1],
                "positive_weight_in_lesion": 0.5 + 0.1 * k,
                "png": f"lime_{image_id}.png",
            }
            for k, image_id in enumerate(LIME_IMAGES)
        ]
        for k, image in enumerate(images):
            _tiny_png(root / "explain" / image["png"], seed=k + 1)
        lime = {
            "images": images,
            "mean_positive_weight_in_lesion": 0.7,
            "num_samples": 50,
            "seed": 0,
            "labels": LABELS,
            "hide_color": 0,
            "segmentation": "slic(n_segments=100, compactness=0.05, sigma=1.0)",
        }
        (root / "explain" / "lime.json").write_text(json.dumps(lime), encoding="utf-8")
    if audit:
        rows = [
            _audit_row("patient", 0.75, 0.6, 0.55, (0.625, 0.875), (0.5, 0.7), 0),
            _audit_row("paper", 0.875, 0.8, 0.75, (0.75, 0.95), (0.7, 0.9), 21),
        ]
        (root / "audit.json").write_text(json.dumps(rows), encoding="utf-8")
        folds = {
            name: [
                {
                    "fold": k,
                    "films": 4,
                    "patients": 3,
                    "patients_in_other_folds": shared,
                    "films_with_partner_in_training": shared,
                }
                for k in range(2)
            ]
            for name, shared in (("paper (image-level folds)", 2), ("patient (grouped folds)", 0))
        }
        (root / "audit_folds.json").write_text(json.dumps(folds), encoding="utf-8")
    if quality:
        _quality().to_csv(root / "quality.csv", index=False, float_format="%.4f")
    return root
