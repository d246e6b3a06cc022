"""``train cv`` with ``input.mode: radiomics``: the radiomics baseline, cross-validated by patient.

Each film's texture and calcification features (:func:`~mammo_ray.learn.radiomics.film_features`,
computed once, in ``workers`` processes), with their differences from the other breast when
``radiomics.bilateral`` (:mod:`~mammo_ray.learn.bilateral`), go into one classifier per fold
(:class:`~mammo_ray.learn.config.RadiomicsConfig`), fitted on the fold's training and validation
films (nothing is early-stopped) and predicting its held-out films. The outputs are those of a
deep ``train cv`` (``oof/``, ``test/``, ``folds.json``, ``summary.json``, one MLflow run), with
``features.csv`` (every film's features) and ``model.joblib`` (the fold classifiers, whose
averaged probabilities are the outer test prediction) in place of the fold checkpoints.
"""

from __future__ import annotations

import multiprocessing
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import joblib
import numpy as np
from sklearn.base import ClassifierMixin
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from tqdm import tqdm

from mammo_ray.config import to_dict
from mammo_ray.data.mias_info import LABELS
from mammo_ray.errors import ConfigError
from mammo_ray.files import write_features_csv, write_json_atomic
from mammo_ray.learn.bilateral import bilateral_features, bilateral_names, partner_rows
from mammo_ray.learn.config import RadiomicsConfig, TrainConfig
from mammo_ray.learn.cv import (
    FOLD_MEASURES,
    FoldResult,
    evaluate_rows,
    fold_summary,
    out_of_fold,
    start_cross_validation,
)
from mammo_ray.learn.radiomics import FEATURE_NAMES, film_features
from mammo_ray.learn.splits import Split
from mammo_ray.learn.trial import validation_metrics
from mammo_ray.preprocess.prepared import PreparedData
from mammo_ray.tracking import TrainingRun, tracking_uri

__all__ = ["feature_table", "design_matrix", "build_classifier", "run_radiomics_cv"]


def feature_table(
    images: np.ndarray, breasts: np.ndarray, *, workers: int = 2, progress: bool = False
) -> np.ndarray:
    """(N, F) :data:`FEATURE_NAMES` of every film, in ``workers`` fresh (spawned) processes: a
    forked child of a process that runs torch, MLflow or Ray threads can deadlock."""
    with (
        ProcessPoolExecutor(
            max(1, workers), mp_context=multiprocessing.get_context("spawn")
        ) as pool,
        tqdm(
            total=len(images), unit="film", desc="radiomics", disable=not progress, file=sys.stderr
        ) as bar,
    ):
        rows = []
        for row in pool.map(film_features, images, breasts, chunksize=8):
            rows.append(row)
            bar.update()
    return np.stack(rows)


def design_matrix(
    cfg: RadiomicsConfig, features: np.ndarray, patient_ids: np.ndarray
) -> tuple[np.ndarray, list[str]]:
    """The classifier's input and its column names: the features, and with ``bilateral`` their
    differences from the other breast (:func:`bilateral_features`)."""
    if not cfg.bilateral:
        return features, list(FEATURE_NAMES)
    return bilateral_features(features, partner_rows(patient_ids)), bilateral_names(FEATURE_NAMES)


def build_classifier(cfg: RadiomicsConfig, seed: int) -> ClassifierMixin:
    """A fresh classifier of ``cfg`` (class-balanced, seeded)."""
    if cfg.classifier == "logistic":
        return make_pipeline(
            StandardScaler(), LogisticRegression(C=cfg.C, class_weight="balanced", max_iter=5000)
        )
    return HistGradientBoostingClassifier(
        max_iter=cfg.max_iter,
        max_leaf_nodes=cfg.max_leaf_nodes,
        min_samples_leaf=cfg.min_samples_leaf,
        learning_rate=cfg.learning_rate,
        l2_regularization=cfg.l2_regularization,
        class_weight="balanced",
        early_stopping=False,
        random_state=seed,
    )


def _predict(classifier: ClassifierMixin, x: np.ndarray) -> np.ndarray:
    """(n, len(LABELS)) probabilities, zero for a class the classifier never saw."""
    proba = np.zeros((len(x), len(LABELS)), np.float32)
    proba[:, classifier.classes_] = classifier.predict_proba(x)
    return proba


def _fit_fold(
    cfg: TrainConfig, x: np.ndarray, labels: np.ndarray, fold: Split, k: int
) -> FoldResult:
    train = np.asarray(fold.train + fold.val, np.int64)
    rows = np.asarray(fold.test, np.int64)
    classifier = build_classifier(cfg.radiomics, cfg.seed + k).fit(x[train], labels[train])
    proba = _predict(classifier, x[rows])
    return FoldResult(k, rows, proba, validation_metrics(proba, labels[rows]), None, classifier)


def run_radiomics_cv(
    cfg: TrainConfig,
    data: PreparedData,
    out_dir: str | Path,
    *,
    workers: int = 2,
    mlflow_uri: str | None = None,
    experiment: str = "mammo_ray",
    run_name: str = "train cv",
    parent_run_id: str | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Cross-validate the radiomics baseline of ``cfg``; write the outputs of the module notes
    and return ``summary.json``'s content (as :func:`~mammo_ray.learn.cv.run_cross_validation`).
    Its MLflow run is nested under ``parent_run_id`` when given (a search's baseline).

    Raises
    ------
    ConfigError
        When ``cfg`` is not ``input.mode: radiomics`` with ``split.method: cv``.
    """
    if cfg.input.mode != "radiomics" or cfg.split.method != "cv":
        raise ConfigError("run_radiomics_cv needs input.mode=radiomics and split.method=cv")
    out = Path(out_dir)
    config = to_dict(cfg)
    arrays, cv = start_cross_validation(cfg, data, out)
    features = feature_table(
        arrays.images, data.array(cfg.breast_array), workers=workers, progress=progress
    )
    x, names = design_matrix(cfg.radiomics, features, arrays.patient_ids)
    write_features_csv(out / "features.csv", arrays.image_ids, x, names)
    uri = tracking_uri(out, mlflow_uri)
    tags = data.identity | cfg.tags | {"input_mode": "radiomics"}
    with TrainingRun(
        uri, experiment=experiment, run_name=run_name, tags=tags, parent_run_id=parent_run_id
    ) as run:
        run.log_params(config)
        folds = [_fit_fold(cfg, x, arrays.labels, fold, k) for k, fold in enumerate(cv.folds)]
        rows, proba = out_of_fold(folds, len(arrays.labels))
        title = f"radiomics ({cfg.radiomics.classifier}), out of fold"
        oof = evaluate_rows(arrays, rows, proba, out / "oof", title, cfg.seed)
        classifiers = [f.model for f in folds]
        joblib.dump(
            {"classifiers": classifiers, "columns": names, "config": config}, out / "model.joblib"
        )
        test = None
        outer = np.asarray(cv.test, np.int64)
        if outer.size:
            test_proba = np.mean([_predict(c, x[outer]) for c in classifiers], axis=0)
            title = f"radiomics ({cfg.radiomics.classifier}), fold ensemble, outer test"
            test = evaluate_rows(arrays, outer, test_proba, out / "test", title, cfg.seed)
        summary = {
            "split": "cv",
            "mode": "radiomics",
            "folds": cfg.split.folds,
            "repeats": cfg.split.repeats,
            "films_without_partner": int((partner_rows(arrays.patient_ids) < 0).sum()),
            "out_of_fold": oof,
            "cross_validation": fold_summary(folds),
            "test": test,
            "mlflow": {"uri": uri, "run_id": run.run_id},
        }
        run.log_metrics(
            {f"oof_{k}": oof[k] for k in FOLD_MEASURES}
            | ({f"test_{k}": test[k] for k in FOLD_MEASURES} if test else {})
        )
        write_json_atomic(out / "summary.json", summary)
        run.log_artifacts([out / n for n in ("config.yaml", "folds.json", "features.csv")])
        run.log_artifacts([out / "oof"], "oof")
        run.log_artifacts([out / "model.joblib"], "model")
    return summary
