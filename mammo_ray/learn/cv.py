"""``python -m mammo_ray.train cv``: patient-level k-fold cross-validation of one configuration.

One model per fold, early-stopped on that fold's inner validation part, predicts its own
held-out fold; together the folds predict every cross-validated image once (per repeat; repeats
are averaged). On these out-of-fold predictions: ``metrics.json`` with patient-bootstrap 95% CIs,
``predictions.csv`` and ``confusion_matrix.png``; across folds, the mean and sample standard
deviation of each measure. The fold models, averaged (:class:`~mammo_ray.learn.ensemble.
FoldEnsemble`), are saved as one checkpoint that ``evaluate`` and ``explain`` take like any
model, and evaluated once on the outer test part when ``split.test`` keeps one. One MLflow run,
with a nested run per fold. nnU-Net's protocol (Isensee et al., Nature Methods 18, 2021).

Outputs under ``--out``::

    config.yaml, folds.json   the config; the image ids of the outer test part and of each
                              fold's train / val / held-out parts
    fold_K/                   fold K's best-epoch model.pt and curves.png
    oof/                      metrics.json, predictions.csv, confusion_matrix.png (out of fold)
    test/                     the same for the ensemble on the outer test part (if any)
    model.pt                  the fold ensemble
    summary.json              per-fold measures, their mean and sd, AUC normal vs abnormal
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from sklearn.metrics import roc_auc_score
from tqdm import tqdm

from mammo_ray.cli import text_table
from mammo_ray.config import to_dict
from mammo_ray.data.mias_info import LABELS
from mammo_ray.errors import ConfigError
from mammo_ray.files import write_json_atomic, write_text_atomic
from mammo_ray.learn.best_epoch import keep_best_epoch
from mammo_ray.learn.checkpoint import load_trained, save_checkpoint
from mammo_ray.learn.config import TrainConfig
from mammo_ray.learn.ensemble import FoldEnsemble
from mammo_ray.learn.evaluate import predict_images, write_evaluation
from mammo_ray.learn.splits import CrossValidation, cross_validation
from mammo_ray.learn.trial import TrialArrays, train_trial, trial_arrays, validation_metrics
from mammo_ray.plots import plot_training_curves
from mammo_ray.preprocess.prepared import PreparedData
from mammo_ray.tracking import TrainingRun, tracking_uri

__all__ = [
    "FOLD_MEASURES",
    "FoldResult",
    "run_cross_validation",
    "out_of_fold",
    "fit_fold",
    "write_folds",
    "start_cross_validation",
    "FoldRun",
    "fold_run",
    "evaluate_rows",
    "fold_summary",
    "normal_vs_abnormal_auc",
    "format_cross_validation",
]

FOLD_MEASURES = ("accuracy", "balanced_accuracy", "macro_f1")
"""Measures of each fold's held-out part, summarised as mean and sd across folds."""


@dataclasses.dataclass(frozen=True)
class FoldResult:
    """One trained fold: its held-out rows, their probabilities, measures and model (a torch
    module, or a fitted scikit-learn classifier for the radiomics baseline, which has no
    epochs: ``best_epoch`` None). A fold of patch classifiers also holds the map features of
    its held-out films (``features``), which the aggregation turns into probabilities
    (:func:`~mammo_ray.learn.patch_cv.aggregate_folds`)."""

    index: int
    rows: np.ndarray
    proba: np.ndarray
    metrics: dict[str, float]
    best_epoch: int | None
    model: Any
    features: np.ndarray | None = None


def run_cross_validation(
    cfg: TrainConfig,
    data: PreparedData,
    out_dir: str | Path,
    *,
    mlflow_uri: str | None = None,
    experiment: str = "mammo_ray",
    run_name: str = "train cv",
    progress: bool = True,
) -> dict[str, Any]:
    """Cross-validate ``cfg`` (``split.method: cv``); write the outputs listed in the module
    notes and return ``summary.json``'s content.

    Raises
    ------
    ConfigError
        When ``cfg.split.method`` is not ``cv`` or the folds cannot be made.
    """
    if cfg.split.method != "cv":
        raise ConfigError(f"train cv needs split.method=cv, got {cfg.split.method!r}")
    out = Path(out_dir)
    arrays, cv = start_cross_validation(cfg, data, out)
    tags = data.identity | cfg.tags
    uri = tracking_uri(out, mlflow_uri)
    with TrainingRun(uri, experiment=experiment, run_name=run_name, tags=tags) as run:
        run.log_params(to_dict(cfg))
        folds = [
            _train_fold(
                cfg, data, arrays, cv, k, out, FoldRun(uri, experiment, run, tags, progress)
            )
            for k in range(len(cv.folds))
        ]
        summary = _summarise(cfg, data, arrays, folds, np.asarray(cv.test, np.int64), out, run)
        summary["mlflow"] = {"uri": uri, "run_id": run.run_id}
        write_json_atomic(out / "summary.json", summary)
        run.log_artifacts([out / n for n in ("config.yaml", "folds.json", "summary.json")])
        run.log_artifacts([out / "oof"], "oof")
        run.log_artifacts([out / "test"], "test")
        run.log_artifacts([out / "model.pt"], "model")
    return summary


def start_cross_validation(
    cfg: TrainConfig, data: PreparedData, out: Path
) -> tuple[TrialArrays, CrossValidation]:
    """The arrays and folds of ``cfg`` (``split.method: cv``), with ``config.yaml`` and
    ``folds.json`` written under ``out``: how every ``train cv`` mode begins."""
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "config.yaml", yaml.safe_dump(to_dict(cfg), sort_keys=False))
    arrays = trial_arrays(cfg, data, 0)
    cv = cross_validation(
        [LABELS[i] for i in arrays.labels], arrays.patient_ids.tolist(), cfg.split
    )
    write_folds(out / "folds.json", cv, arrays.image_ids)
    return arrays, cv


def write_folds(path: Path, cv: CrossValidation, ids: list[str]) -> None:
    """``folds.json``: the image ids of the outer test part and of every fold's parts."""
    write_json_atomic(
        path,
        {
            "test": [ids[i] for i in cv.test],
            "folds": [
                {part: [ids[i] for i in getattr(fold, part)] for part in ("train", "val", "test")}
                for fold in cv.folds
            ],
        },
        indent=1,
    )


@dataclasses.dataclass(frozen=True)
class FoldRun:
    """Where a fold's nested MLflow run goes, and whether it shows a progress bar."""

    uri: str
    experiment: str
    parent: TrainingRun
    tags: dict[str, str]
    progress: bool


@contextlib.contextmanager
def fold_run(
    where: FoldRun, k: int, n_folds: int, epochs: int
) -> Iterator[tuple[TrainingRun, tqdm]]:
    """Fold ``k``'s nested MLflow run and its progress bar of ``epochs`` epochs."""
    with (
        TrainingRun(
            where.uri,
            experiment=where.experiment,
            run_name=f"fold {k}",
            tags=where.tags | {"fold": str(k)},
            parent_run_id=where.parent.run_id,
        ) as run,
        tqdm(
            total=epochs,
            unit="epoch",
            desc=f"fold {k + 1}/{n_folds}",
            disable=not where.progress,
            file=sys.stderr,
        ) as bar,
    ):
        yield run, bar


def _train_fold(
    cfg: TrainConfig,
    data: PreparedData,
    arrays: TrialArrays,
    cv: CrossValidation,
    k: int,
    out: Path,
    where: FoldRun,
) -> FoldResult:
    """Train fold ``k`` (a nested MLflow run), keep its best epoch, predict its held-out part."""
    fold_dir = out / f"fold_{k}"
    fold_dir.mkdir(parents=True, exist_ok=True)
    with fold_run(where, k, len(cv.folds), cfg.epochs) as (run, bar):
        fold, history = fit_fold(cfg, data, arrays, cv, k, fold_dir / "model.pt", run, bar)
        plot_training_curves(history, fold_dir / "curves.png")
        run.log_metrics({f"heldout_{key}": value for key, value in fold.metrics.items()})
        run.log_artifacts([fold_dir / "curves.png"])
    return fold


def fit_fold(
    cfg: TrainConfig,
    data: PreparedData,
    arrays: TrialArrays,
    cv: CrossValidation,
    k: int,
    best_path: Path,
    run: TrainingRun | None = None,
    bar: tqdm | None = None,
) -> tuple[FoldResult, list[dict[str, Any]]]:
    """Train fold ``k`` (:func:`~mammo_ray.learn.trial.train_trial`), keep its best epoch at
    ``best_path`` (:func:`~mammo_ray.learn.best_epoch.keep_best_epoch`, logging to ``run`` and
    advancing ``bar`` when given) and predict the fold's held-out part with it: the fold and
    its per-epoch history."""
    result = train_trial(to_dict(cfg), data, keep_best_epoch(cfg, best_path, run, bar), fold=k)
    model = load_trained(best_path).model
    rows = np.asarray(cv.folds[k].test, dtype=np.int64)
    proba = predict_images(model, arrays.images[rows])
    metrics = validation_metrics(proba, arrays.labels[rows])
    return FoldResult(k, rows, proba, metrics, int(result["best"]["epoch"]), model), result[
        "history"
    ]


def fold_summary(folds: list[FoldResult]) -> dict[str, Any]:
    """Per-fold held-out measures and, for each of :data:`FOLD_MEASURES`, their mean and sample
    standard deviation (``ddof=1``) across folds."""
    per_fold = [
        {"fold": f.index, "n": int(f.rows.size), "best_epoch": f.best_epoch}
        | {m: f.metrics[m] for m in FOLD_MEASURES}
        for f in folds
    ]
    values = {m: np.array([f.metrics[m] for f in folds]) for m in FOLD_MEASURES}
    return {
        "per_fold": per_fold,
        "mean": {m: float(v.mean()) for m, v in values.items()},
        "sd": {m: float(v.std(ddof=1)) if v.size > 1 else 0.0 for m, v in values.items()},
    }


def out_of_fold(folds: list[FoldResult], n_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """(rows, probabilities): every row some fold held out, its probabilities averaged over
    the repeats that held it out."""
    total = np.zeros((n_rows, len(LABELS)), np.float64)
    count = np.zeros(n_rows, np.int64)
    for fold in folds:
        total[fold.rows] += fold.proba
        count[fold.rows] += 1
    rows = np.flatnonzero(count)
    return rows, (total[rows] / count[rows, None]).astype(np.float32)


def normal_vs_abnormal_auc(labels: np.ndarray, proba: np.ndarray) -> float | None:
    """ROC AUC of ``1 - p_normal`` separating abnormal films (mass or calc) from normal ones;
    None when only one of the two is present."""
    abnormal = labels != LABELS.index("normal")
    if abnormal.all() or not abnormal.any():
        return None
    return float(roc_auc_score(abnormal, 1.0 - proba[:, LABELS.index("normal")]))


def _summarise(
    cfg: TrainConfig,
    data: PreparedData,
    arrays: TrialArrays,
    folds: list[FoldResult],
    outer_test: np.ndarray,
    out: Path,
    run: TrainingRun,
) -> dict[str, Any]:
    """Out-of-fold evaluation, the ensemble checkpoint and its outer test evaluation."""
    rows, proba = out_of_fold(folds, len(arrays.labels))
    oof = evaluate_rows(
        arrays, rows, proba, out / "oof", f"{cfg.model.backbone}, out of fold", cfg.seed
    )
    ensemble = FoldEnsemble([f.model for f in folds])
    save_checkpoint(
        out / "model.pt",
        ensemble,
        config=to_dict(cfg),
        labels=list(LABELS),
        preprocess_key=data.manifest.key,
    )
    test = None
    if outer_test.size:
        test_proba = predict_images(ensemble, arrays.images[outer_test])
        title = f"{cfg.model.backbone}, fold ensemble, outer test"
        test = evaluate_rows(arrays, outer_test, test_proba, out / "test", title, cfg.seed)
    summary = {
        "split": "cv",
        "folds": cfg.split.folds,
        "repeats": cfg.split.repeats,
        "out_of_fold": oof,
        "cross_validation": fold_summary(folds),
        "test": test,
    }
    run.log_metrics(
        {f"oof_{k}": oof[k] for k in FOLD_MEASURES}
        | {f"cv_mean_{k}": v for k, v in summary["cross_validation"]["mean"].items()}
        | {f"cv_sd_{k}": v for k, v in summary["cross_validation"]["sd"].items()}
        | ({f"test_{k}": test[k] for k in FOLD_MEASURES} if test else {})
    )
    return summary


def evaluate_rows(
    arrays: TrialArrays,
    rows: np.ndarray,
    proba: np.ndarray,
    out_dir: Path,
    title: str,
    seed: int,
) -> dict[str, Any]:
    """:func:`write_evaluation` of ``rows`` of ``arrays``; the headline figures with their
    CIs, per-class recall and the normal-vs-abnormal AUC."""
    labels = arrays.labels[rows]
    metrics = write_evaluation(
        proba,
        labels,
        [arrays.image_ids[i] for i in rows],
        arrays.patient_ids[rows],
        out_dir,
        title=title,
        seed=seed,
    )
    return {
        "n": metrics["n"],
        **{k: metrics[k] for k in FOLD_MEASURES},
        "ci95": {k: metrics["ci95"][k] for k in ("accuracy", "balanced_accuracy")},
        "recall": {label: metrics["per_class"][label]["recall"] for label in LABELS},
        "auc_macro": metrics["auc_ovr"]["macro"],
        "auc_normal_vs_abnormal": normal_vs_abnormal_auc(labels, proba),
    }


def format_cross_validation(summary: dict[str, Any]) -> str:
    """The terminal report of ``train cv``: a row per fold, mean ± sd, then the out-of-fold and
    outer test figures with their 95% CIs."""
    cv = summary["cross_validation"]
    rows = [
        (
            f["fold"],
            f["n"],
            "-" if f["best_epoch"] is None else f["best_epoch"],
            *(f"{f[m]:.3f}" for m in FOLD_MEASURES),
        )
        for f in cv["per_fold"]
    ]
    rows.append(
        ("mean ± sd", "", "", *(f"{cv['mean'][m]:.3f} ± {cv['sd'][m]:.3f}" for m in FOLD_MEASURES))
    )
    lines = text_table(("fold", "n", "best epoch", *FOLD_MEASURES), rows)
    results = (
        ("out of fold", summary["out_of_fold"]),
        ("out of fold, film alone", summary.get("single_film")),
        ("outer test", summary["test"]),
    )
    for name, result in results:
        if result is None:
            continue
        lo, hi = result["ci95"]["balanced_accuracy"]
        auc = result["auc_normal_vs_abnormal"]
        lines.append(
            f"{name}: n={result['n']} balanced accuracy {result['balanced_accuracy']:.3f} "
            f"(95% CI {lo:.3f}-{hi:.3f}), accuracy {result['accuracy']:.3f}, "
            f"AUC normal vs abnormal {'n/a' if auc is None else f'{auc:.3f}'}, recall "
            + ", ".join(f"{label} {result['recall'][label]:.2f}" for label in LABELS)
        )
    localisation = summary.get("localisation") or {}
    if localisation.get("top_window_hit") is not None:
        lines.append(
            f"localisation: the most abnormal window holds a MIAS circle's centre in "
            f"{localisation['top_window_hit']:.0%} of {localisation['films']} abnormal films "
            f"out of fold (a random window: {localisation['chance']:.0%})"
        )
    if summary.get("films_without_partner"):
        lines.append(
            f"{summary['films_without_partner']} films had no other breast to compare with: "
            "their own features alone decided"
        )
    return "\n".join(lines)
