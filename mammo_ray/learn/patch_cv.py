"""``train cv`` with ``input.mode: patch`` or ``patch+bilateral``: patch classifiers
cross-validated by patient, their score maps aggregated to film probabilities on out-of-fold
maps only.

Per fold ``k`` (a nested MLflow run): :func:`~mammo_ray.learn.patch_trial.train_patch_trial` on
the fold's training films, its best epoch (patch-level validation) kept as ``fold_k/model.pt``,
then run over the fold's held-out films and the outer test films: their score maps and
:data:`~mammo_ray.learn.score_maps.MAP_FEATURES` (``patch``), or with each film's partner
(the two films of a patient are always in the same fold)
:data:`~mammo_ray.learn.bilateral_maps.BILATERAL_FEATURES` (``patch+bilateral``). Every
cross-validated film thus has map features from a model that never saw it. The aggregation
(standardised multinomial logistic regression, :func:`~mammo_ray.learn.score_maps.
fit_aggregation`) is then

- evaluated out of fold by a second, patient-grouped 5-fold cross-validation over those
  features (each film's probabilities come from an aggregation fitted without it): ``oof/``,
  with the features themselves in ``oof/features.csv``;
- fitted on all of them and written into every fold model's ``head``: the fold ensemble
  (``model.pt``, film in, probabilities out) that ``evaluate`` and ``explain`` take like any
  model, evaluated once on the outer test part: ``test/``.

``summary.json`` adds ``localisation``: over the abnormal out-of-fold films with a MIAS circle,
the share whose most abnormal window (highest 1 - p_normal inside the breast) holds a circle's
centre, and the share a window picked at random in the breast would reach (``chance``). With
``patch+bilateral`` it adds ``single_film`` (the out-of-fold figures of an aggregation of the
film's own map features alone, from the same maps: what the other breast adds) and
``films_without_partner``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold, cross_val_predict
from sklearn.pipeline import Pipeline
from torch import nn

from mammo_ray.config import to_dict
from mammo_ray.data.mias_info import LABELS
from mammo_ray.errors import ConfigError
from mammo_ray.files import write_features_csv, write_json_atomic
from mammo_ray.learn.best_epoch import keep_best_epoch
from mammo_ray.learn.bilateral import partner_rows
from mammo_ray.learn.bilateral_maps import (
    BILATERAL_FEATURES,
    features_of_film_maps,
    film_statistics,
    single_film_part,
)
from mammo_ray.learn.checkpoint import load_trained, save_checkpoint
from mammo_ray.learn.config import TrainConfig
from mammo_ray.learn.cv import (
    FOLD_MEASURES,
    FoldResult,
    FoldRun,
    evaluate_rows,
    fold_run,
    fold_summary,
    start_cross_validation,
)
from mammo_ray.learn.ensemble import FoldEnsemble
from mammo_ray.learn.inference import autocast_dtype
from mammo_ray.learn.lesions import Circle, film_circles, window_centres
from mammo_ray.learn.patch_trial import train_patch_trial
from mammo_ray.learn.score_maps import (
    MAP_FEATURES,
    aggregation_model,
    fit_aggregation,
    predict_maps,
    set_head,
)
from mammo_ray.learn.splits import CrossValidation
from mammo_ray.learn.trial import TrialArrays, validation_metrics
from mammo_ray.plots import plot_training_curves
from mammo_ray.preprocess.prepared import PreparedData
from mammo_ray.tracking import TrainingRun, tracking_uri

__all__ = [
    "run_patch_cv",
    "fit_patch_fold",
    "aggregate_folds",
    "top_window_hit",
    "aggregate_out_of_fold",
]

AGGREGATION_FOLDS = 5
"""Folds of the second cross-validation that scores the aggregation out of fold."""


def _contains(corner: np.ndarray, patch_size: int, circles: list[Circle]) -> np.ndarray:
    """(...) bool: whether the window of top-left ``corner`` (..., 2) holds a circle's centre."""
    hit = np.zeros(corner.shape[:-1], bool)
    for row, col, _ in circles:
        hit |= (
            (corner[..., 0] <= row)
            & (row < corner[..., 0] + patch_size)
            & (corner[..., 1] <= col)
            & (col < corner[..., 1] + patch_size)
        )
    return hit


def top_window_hit(
    proba: np.ndarray, inside: np.ndarray, circles: list[Circle], patch_size: int, stride: int
) -> tuple[bool, float]:
    """Whether the window of highest ``1 - p_normal`` inside the breast of a film's maps
    (C, h, w) holds the centre of one of its lesion ``circles``; and the share of the breast's
    windows that do (the hit rate of a window picked at random, chance)."""
    score = np.where(inside, 1.0 - proba[LABELS.index("normal")], -1.0)
    corners = window_centres(score.shape, patch_size, stride) - (patch_size - 1) / 2
    holds = _contains(corners, patch_size, circles)
    i, j = np.unravel_index(int(score.argmax()), score.shape)
    return bool(holds[i, j]), float(holds[inside].mean()) if inside.any() else 0.0


def aggregate_out_of_fold(
    features: np.ndarray, labels: np.ndarray, patients: np.ndarray, seed: int
) -> np.ndarray:
    """(n, C) probabilities of each film from an aggregation fitted on the other films'
    features (patient-grouped, class-stratified folds: :data:`AGGREGATION_FOLDS`, fewer when
    the films have fewer patients or a class fewer films, as after a search's first fold)."""
    smallest_class = np.bincount(labels)[np.unique(labels)].min()
    n_splits = max(2, min(AGGREGATION_FOLDS, np.unique(patients).size, smallest_class))
    folds = StratifiedGroupKFold(n_splits, shuffle=True, random_state=seed)
    return cross_val_predict(
        aggregation_model(seed),
        features,
        labels,
        groups=patients,
        cv=folds,
        method="predict_proba",
    ).astype(np.float32)


def _train_fold(
    cfg: TrainConfig,
    data: PreparedData,
    cv: CrossValidation,
    k: int,
    out: Path,
    where: FoldRun,
) -> tuple[nn.Module, int]:
    """Train fold ``k`` (a nested MLflow run): its best epoch's model and number."""
    fold_dir = out / f"fold_{k}"
    fold_dir.mkdir(parents=True, exist_ok=True)
    with fold_run(where, k, len(cv.folds), cfg.epochs) as (run, bar):
        on_epoch = keep_best_epoch(cfg, fold_dir / "model.pt", run, bar)
        result = train_patch_trial(to_dict(cfg), data, on_epoch, fold=k)
        plot_training_curves(result["history"], fold_dir / "curves.png")
        run.log_artifacts([fold_dir / "curves.png"])
    return load_trained(fold_dir / "model.pt").model, int(result["best"]["epoch"])


def _film_features(
    model: nn.Module,
    arrays: TrialArrays,
    rows: np.ndarray,
    statistics: np.ndarray | None,
    precision: str,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Score maps, inside-the-breast windows and film features of the films ``rows`` (both
    films of each patient among them) under a film model of patches: bilateral when every
    film's breast ``statistics`` (:func:`film_statistics`, model-free) are given."""
    single = single_film_part(model)
    amp_dtype = autocast_dtype(precision, next(model.parameters()).device)
    proba, inside, features = predict_maps(single, arrays.images[rows], amp_dtype=amp_dtype)
    if statistics is not None:
        partners = partner_rows(arrays.patient_ids[rows])
        features = features_of_film_maps(proba, inside, statistics[rows], partners, single.top_k)
    return proba, inside, features


def _held_out_fold(
    cfg: TrainConfig,
    k: int,
    model: nn.Module,
    best_epoch: int,
    rows: np.ndarray,
    arrays: TrialArrays,
    statistics: np.ndarray | None,
) -> tuple[FoldResult, np.ndarray, np.ndarray]:
    """Fold ``k`` with the map features of its held-out films ``rows``; its probabilities
    (uniform) and measures (none) wait for :func:`aggregate_folds`. Also the films' maps and
    inside-the-breast windows."""
    proba, inside, features = _film_features(model, arrays, rows, statistics, cfg.precision)
    undecided = np.full((rows.size, len(LABELS)), 1 / len(LABELS), np.float32)
    return FoldResult(k, rows, undecided, {}, best_epoch, model, features), proba, inside


def fit_patch_fold(
    cfg: TrainConfig,
    data: PreparedData,
    arrays: TrialArrays,
    cv: CrossValidation,
    k: int,
    best_path: Path,
    statistics: np.ndarray | None,
) -> tuple[FoldResult, list[dict[str, Any]]]:
    """What :func:`~mammo_ray.learn.cv.fit_fold` is to a whole-film model: train fold ``k``'s
    patch classifier, keep its best epoch at ``best_path``, and give the map features of the
    fold's held-out films (bilateral with breast ``statistics``): the fold, to be aggregated
    with the others (:func:`aggregate_folds`), and its per-epoch history."""
    result = train_patch_trial(to_dict(cfg), data, keep_best_epoch(cfg, best_path), fold=k)
    model = load_trained(best_path).model
    rows = np.asarray(cv.folds[k].test, np.int64)
    fold = _held_out_fold(cfg, k, model, int(result["best"]["epoch"]), rows, arrays, statistics)
    return fold[0], result["history"]


def aggregate_folds(
    folds: Sequence[FoldResult], labels: np.ndarray, patients: np.ndarray, seed: int
) -> tuple[list[FoldResult], Pipeline]:
    """Patch folds made film classifiers: each fold's probabilities from the aggregation
    scored out of fold over the map features of every fold given
    (:func:`aggregate_out_of_fold`) with their measures, and every fold model's head set to
    the aggregation fitted on all of them (also returned).

    Raises
    ------
    ConfigError
        When the folds' held-out films lack a class.
    """
    features = np.concatenate([f.features for f in folds])
    rows = np.concatenate([f.rows for f in folds])
    missing = [label for i, label in enumerate(LABELS) if not (labels[rows] == i).any()]
    if missing:
        raise ConfigError(
            f"the held-out films of folds {[f.index for f in folds]} hold no {missing[0]} film, "
            "so the aggregation of their score maps cannot learn it: use fewer folds"
        )
    proba = aggregate_out_of_fold(features, labels[rows], patients[rows], seed)
    aggregation = fit_aggregation(features, labels[rows], seed)
    start = np.cumsum([0] + [f.rows.size for f in folds])
    aggregated = []
    for fold, a, b in zip(folds, start[:-1], start[1:], strict=True):
        set_head(fold.model, aggregation)
        measures = validation_metrics(proba[a:b], labels[fold.rows])
        aggregated.append(dataclasses.replace(fold, proba=proba[a:b], metrics=measures))
    return aggregated, aggregation


def run_patch_cv(
    cfg: TrainConfig,
    data: PreparedData,
    out_dir: str | Path,
    *,
    mlflow_uri: str | None = None,
    experiment: str = "mammo_ray",
    run_name: str = "train cv",
    progress: bool = True,
) -> dict[str, Any]:
    """Cross-validate the patch model of ``cfg``; write the outputs of the module notes and
    return ``summary.json``'s content (as :func:`~mammo_ray.learn.cv.run_cross_validation`).

    Raises
    ------
    ConfigError
        When ``cfg`` trains no patch classifier or is not ``split.method: cv``.
    """
    if not cfg.input.patches or cfg.split.method != "cv":
        raise ConfigError(
            "run_patch_cv needs input.mode patch or patch+bilateral and split.method=cv"
        )
    if cfg.split.repeats != 1:
        raise ConfigError(f"input.mode {cfg.input.mode} cross-validates once: set split.repeats: 1")
    out = Path(out_dir)
    arrays, cv = start_cross_validation(cfg, data, out)
    circles = film_circles(data.manifest.records, cfg.input_size, data.manifest.film_shapes)
    outer = np.asarray(cv.test, np.int64)
    statistics = film_statistics(arrays.images) if cfg.input.bilateral else None
    tags = data.identity | cfg.tags | {"input_mode": cfg.input.mode}
    uri = tracking_uri(out, mlflow_uri)
    with TrainingRun(uri, experiment=experiment, run_name=run_name, tags=tags) as run:
        run.log_params(to_dict(cfg))
        where = FoldRun(uri, experiment, run, tags, progress)
        folds, tests, hits = [], [], []
        for k in range(len(cv.folds)):
            model, best_epoch = _train_fold(cfg, data, cv, k, out, where)
            rows = np.asarray(cv.folds[k].test, np.int64)
            fold, proba, inside = _held_out_fold(
                cfg, k, model, best_epoch, rows, arrays, statistics
            )
            folds.append(fold)
            hits += _hits(model, arrays, rows, proba, inside, circles)
            if outer.size:
                tests.append(_film_features(model, arrays, outer, statistics, cfg.precision)[2])
        summary = _summarise(cfg, data, arrays, folds, tests, hits, outer, out, run)
        summary["mlflow"] = {"uri": uri, "run_id": run.run_id}
        write_json_atomic(out / "summary.json", summary)
        run.log_artifacts([out / n for n in ("config.yaml", "folds.json", "summary.json")])
        run.log_artifacts([out / "oof"], "oof")
        run.log_artifacts([out / "model.pt"], "model")
    return summary


def _hits(
    model: nn.Module,
    arrays: TrialArrays,
    rows: np.ndarray,
    proba: np.ndarray,
    inside: np.ndarray,
    circles: list[list[Circle]],
) -> list[tuple[bool, float]]:
    """:func:`top_window_hit` of the abnormal films among ``rows`` with a MIAS circle."""
    single = single_film_part(model)
    normal = LABELS.index("normal")
    return [
        top_window_hit(p, w, circles[row], single.patch_size, single.stride)
        for row, p, w in zip(rows, proba, inside, strict=True)
        if arrays.labels[row] != normal and circles[row]
    ]


def _summarise(
    cfg: TrainConfig,
    data: PreparedData,
    arrays: TrialArrays,
    folds: list[FoldResult],
    tests: list[np.ndarray],
    hits: list[tuple[bool, float]],
    outer: np.ndarray,
    out: Path,
    run: TrainingRun,
) -> dict[str, Any]:
    """Out-of-fold aggregation and evaluation, the ensemble checkpoint, the outer test (the
    map features ``tests`` of the outer test films under each fold model)."""
    folds, aggregation = aggregate_folds(folds, arrays.labels, arrays.patient_ids, cfg.seed)
    rows = np.concatenate([f.rows for f in folds])
    features = np.concatenate([f.features for f in folds])
    proba = np.concatenate([f.proba for f in folds])
    name = f"{cfg.model.backbone} {cfg.input.mode}"
    oof = evaluate_rows(arrays, rows, proba, out / "oof", f"{name}, out of fold", cfg.seed)
    columns = BILATERAL_FEATURES if cfg.input.bilateral else MAP_FEATURES
    write_features_csv(
        out / "oof" / "features.csv", [arrays.image_ids[i] for i in rows], features, columns
    )
    models = [f.model for f in folds]
    save_checkpoint(
        out / "model.pt",
        models[0] if len(models) == 1 else FoldEnsemble(models),
        config=to_dict(cfg),
        labels=list(LABELS),
        preprocess_key=data.manifest.key,
    )
    test = None
    if outer.size:
        test_proba = np.mean([aggregation.predict_proba(t) for t in tests], axis=0)
        title = f"{name}, fold ensemble, outer test"
        test = evaluate_rows(
            arrays, outer, test_proba.astype(np.float32), out / "test", title, cfg.seed
        )
    summary = {
        "split": "cv",
        "mode": cfg.input.mode,
        "folds": cfg.split.folds,
        "repeats": cfg.split.repeats,
        "out_of_fold": oof,
        "cross_validation": fold_summary(folds),
        "test": test,
        "localisation": {
            "films": len(hits),
            "top_window_hit": float(np.mean([h for h, _ in hits])) if hits else None,
            "chance": float(np.mean([c for _, c in hits])) if hits else None,
        },
    }
    if cfg.input.bilateral:
        summary |= _single_film(cfg, arrays, rows, features, out)
    run.log_metrics(
        {f"oof_{k}": oof[k] for k in FOLD_MEASURES}
        | ({f"test_{k}": test[k] for k in FOLD_MEASURES} if test else {})
    )
    return summary


def _single_film(
    cfg: TrainConfig, arrays: TrialArrays, rows: np.ndarray, features: np.ndarray, out: Path
) -> dict[str, Any]:
    """What the bilateral features add: out-of-fold figures of the film's own map features
    alone, aggregated the same way; and how many films had no partner."""
    own = features[:, : len(MAP_FEATURES)]
    labels, patients = arrays.labels[rows], arrays.patient_ids[rows]
    proba = aggregate_out_of_fold(own, labels, patients, cfg.seed)
    title = f"{cfg.model.backbone} patch (single film), out of fold"
    single = evaluate_rows(arrays, rows, proba, out / "oof_single_film", title, cfg.seed)
    has_partner = features[:, BILATERAL_FEATURES.index("has_partner")]
    return {"single_film": single, "films_without_partner": int((has_partner == 0).sum())}
