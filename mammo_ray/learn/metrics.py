"""Evaluation metrics of a classifier on the test split, and the files that record them.

* :func:`per_class_metrics` gives the one-vs-rest counts and measures of the paper's Table 2
  (TP, TN, FP, FN, precision, recall, F1, accuracy, DSC) from a confusion matrix;
* :func:`patient_bootstrap_ci` gives percentile confidence intervals of accuracy and
  balanced accuracy that resample *patients*, not films (the two films of a patient are not
  independent);
* :func:`classification_metrics` gathers everything into the plain, JSON-able dictionary that
  ``evaluate`` writes as ``metrics.json`` with :func:`write_metrics_json`;
* :func:`predictions_table`, :func:`write_predictions_csv` and :func:`read_predictions_csv`
  handle ``predictions.csv`` (``image_id,true,pred,p_<label>...``).

Every ratio whose denominator is zero (a class never predicted, never present) is 0.0; an
AUC that is undefined (a class absent from ``y_true``, or the only class present) is ``None``.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from numbers import Integral
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import balanced_accuracy_score, confusion_matrix, f1_score, roc_auc_score

from mammo_ray.contracts import MetricsFile, check
from mammo_ray.files import write_text_atomic

__all__ = [
    "Predictions",
    "per_class_metrics",
    "patient_bootstrap_ci",
    "classification_metrics",
    "predictions_table",
    "write_predictions_csv",
    "read_predictions_csv",
    "write_metrics_json",
]


_CSV_FIXED_COLUMNS = ("image_id", "true", "pred")


_PROBA_PREFIX = "p_"


@dataclass(frozen=True, eq=False)
class Predictions:
    """The content of a ``predictions.csv``: what :func:`write_predictions_csv` was given.

    Attributes
    ----------
    image_ids : tuple of str, one per row.
    y_true, y_pred : int64 ndarray (N,) of class indices into ``labels``.
    proba : float64 ndarray (N, C), rounded to the 6 decimals the file holds.
    labels : tuple of str, the class names in column order of ``proba``.
    """

    image_ids: tuple[str, ...]
    y_true: np.ndarray
    y_pred: np.ndarray
    proba: np.ndarray
    labels: tuple[str, ...]


def _ratio(numerator: float, denominator: float) -> float:
    return float(numerator) / float(denominator) if denominator else 0.0


def _check_labels(labels: Sequence[str]) -> tuple[str, ...]:
    names = tuple(labels)
    if len(names) < 2:
        raise ValueError(f"labels must name at least 2 classes, got {list(names)}")
    for name in names:
        if not isinstance(name, str) or not name:
            raise ValueError(f"labels must be non-empty strings, got {name!r} in {list(names)}")
    if len(set(names)) != len(names):
        raise ValueError(f"labels must be unique, got {list(names)}")
    return names


def _check_classes(values: Sequence[int], name: str, n_classes: int) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {array.shape}")
    if array.size and not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{name} must hold integer class indices, got dtype {array.dtype}")
    array = array.astype(np.int64)
    outside = array[(array < 0) | (array >= n_classes)]
    if outside.size:
        raise ValueError(f"{name} holds class index {int(outside[0])}, outside 0..{n_classes - 1}")
    return array


def _check_pair(
    y_true: Sequence[int], y_pred: Sequence[int], n_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    true = _check_classes(y_true, "y_true", n_classes)
    pred = _check_classes(y_pred, "y_pred", n_classes)
    if true.size == 0:
        raise ValueError("y_true is empty: there is nothing to evaluate")
    if pred.size != true.size:
        raise ValueError(f"y_pred has {pred.size} entries, y_true has {true.size}")
    return true, pred


def _check_predictions(
    y_true: Sequence[int], y_pred: Sequence[int], proba: np.ndarray, labels: Sequence[str]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[str, ...]]:
    names = _check_labels(labels)
    true, pred = _check_pair(y_true, y_pred, len(names))
    probabilities = np.asarray(proba, dtype=np.float64)
    if probabilities.shape != (true.size, len(names)):
        raise ValueError(
            f"proba must have shape (N, C) = ({true.size}, {len(names)}), got {probabilities.shape}"
        )
    if not np.all(np.isfinite(probabilities)):
        raise ValueError("proba holds NaN or infinite values")
    return true, pred, probabilities, names


def per_class_metrics(cm: np.ndarray, labels: Sequence[str]) -> dict[str, dict[str, float | int]]:
    """One-vs-rest counts and measures of each class from a confusion matrix.

    With ``cm[i, j]`` the number of images of true class ``i`` predicted as ``j`` and
    ``N = sum(cm)``, for class ``k``::

        TP = cm[k, k]              FP = sum_i cm[i, k] - TP      FN = sum_j cm[k, j] - TP
        TN = N - TP - FP - FN
        precision = TP / (TP + FP)                recall = TP / (TP + FN)
        F1 = 2 precision recall / (precision + recall) = 2 TP / (2 TP + FP + FN)
        accuracy = (TP + TN) / N                  DSC = 2 TP / (2 TP + FP + FN)

    the formulas printed under Table 2 of the paper. On class labels DSC and F1 are the same
    number; the paper's DSC row (0.652 / 0.457 / 0.484) measures segmentation overlap instead
    (see :func:`mammo_ray.preprocess.quality.dice`). A zero denominator gives 0.0.

    Parameters
    ----------
    cm : (C, C) array of non-negative integer counts, rows = true class, columns = predicted.
    labels : C class names, in the order of the rows.

    Returns
    -------
    dict : ``{label: {"tp", "tn", "fp", "fn"} (int) + {"precision", "recall", "f1",
        "accuracy", "dsc"} (float)}``.

    Raises
    ------
    ValueError : if ``cm`` is not a square matrix of non-negative integers matching ``labels``.
    """
    names = _check_labels(labels)
    counts = np.asarray(cm)
    if counts.shape != (len(names), len(names)):
        raise ValueError(
            f"confusion matrix must have shape ({len(names)}, {len(names)}) for labels "
            f"{list(names)}, got {counts.shape}"
        )
    if not np.issubdtype(counts.dtype, np.integer) or np.any(counts < 0):
        raise ValueError("confusion matrix must hold non-negative integer counts")
    total = int(counts.sum())
    result: dict[str, dict[str, float | int]] = {}
    for k, name in enumerate(names):
        tp = int(counts[k, k])
        fp = int(counts[:, k].sum()) - tp
        fn = int(counts[k, :].sum()) - tp
        tn = total - tp - fp - fn
        dsc = _ratio(2 * tp, 2 * tp + fp + fn)
        result[name] = {
            "tp": tp,
            "tn": tn,
            "fp": fp,
            "fn": fn,
            "precision": _ratio(tp, tp + fp),
            "recall": _ratio(tp, tp + fn),
            "f1": dsc,
            "accuracy": _ratio(tp + tn, total),
            "dsc": dsc,
        }
    return result


def _group_index(groups: Sequence[int] | None, n: int) -> np.ndarray:
    if groups is None:
        return np.arange(n)
    array = np.asarray(groups)
    if array.shape != (n,):
        raise ValueError(f"groups must have one entry per image ({n}), got shape {array.shape}")
    return np.unique(array, return_inverse=True)[1].reshape(n)


def patient_bootstrap_ci(
    y_true: Sequence[int],
    y_pred: Sequence[int],
    groups: Sequence[int] | None = None,
    *,
    n_classes: int,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, list[float]]:
    """Percentile bootstrap intervals of accuracy and balanced accuracy, resampling groups.

    Cluster (case) bootstrap: each of the ``n_boot`` resamples draws ``G`` groups (patients)
    with replacement and keeps all images of every drawn group. Drawing group ``g`` ``w_bg``
    times, with ``w_b ~ Multinomial(G, 1/G)``, the resample's counts per class ``k`` are::

        correct_bk = sum_g w_bg * correct_gk        total_bk = sum_g w_bg * total_gk
        accuracy_b = sum_k correct_bk / sum_k total_bk
        balanced_accuracy_b = mean over {k : total_bk > 0} of correct_bk / total_bk

    (balanced accuracy as in :func:`sklearn.metrics.balanced_accuracy_score`: the mean recall
    of the classes present). All resamples are one ``(n_boot, G) @ (G, C)`` product. The
    interval is ``[q_(1-level)/2, q_(1+level)/2]`` of the resampled statistics.

    References: Efron & Tibshirani, "An Introduction to the Bootstrap", Chapman & Hall, 1993,
    ch. 13 (percentile interval); Field & Welsh, "Bootstrapping clustered data", J. R. Statist.
    Soc. B 69(3), 2007 (cluster bootstrap); Davison & Hinkley, "Bootstrap Methods and their
    Application", 1997, sec. 3.8.

    Parameters
    ----------
    y_true, y_pred : (N,) integer class indices in ``0..n_classes-1``.
    groups : (N,) patient of each image, any hashable values; ``None`` makes every image its
        own group (the ordinary image-level bootstrap).
    n_classes : number of classes C.
    n_boot : number of resamples, at least 1.
    seed : seed of :func:`numpy.random.default_rng`; equal seeds give equal intervals.
    level : coverage in (0, 1).

    Returns
    -------
    dict : ``{"accuracy": [lo, hi], "balanced_accuracy": [lo, hi]}`` as Python floats.

    Raises
    ------
    ValueError : on empty or mismatched inputs, class indices out of range, ``n_boot < 1``
        or ``level`` outside (0, 1).
    """
    if isinstance(n_boot, bool) or not isinstance(n_boot, Integral) or n_boot < 1:
        raise ValueError(f"n_boot must be an integer >= 1, got {n_boot!r}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie in (0, 1), got {level!r}")
    if isinstance(n_classes, bool) or not isinstance(n_classes, Integral) or n_classes < 1:
        raise ValueError(f"n_classes must be an integer >= 1, got {n_classes!r}")
    true, pred = _check_pair(y_true, y_pred, n_classes)
    group = _group_index(groups, true.size)
    n_groups = int(group.max()) + 1

    cell = group * n_classes + true
    shape = (n_groups, n_classes)
    total = np.bincount(cell, minlength=n_groups * n_classes).reshape(shape)
    correct = np.bincount(cell, weights=true == pred, minlength=n_groups * n_classes).reshape(shape)

    rng = np.random.default_rng(seed)
    weights = rng.multinomial(n_groups, np.full(n_groups, 1.0 / n_groups), size=int(n_boot))
    correct_b = weights @ correct
    total_b = weights @ total
    accuracy = correct_b.sum(axis=1) / total_b.sum(axis=1)
    recall = np.divide(correct_b, total_b, out=np.full(correct_b.shape, np.nan), where=total_b > 0)
    balanced = np.nanmean(recall, axis=1)

    tails = [50.0 * (1.0 - level), 50.0 * (1.0 + level)]
    return {
        "accuracy": [float(v) for v in np.percentile(accuracy, tails)],
        "balanced_accuracy": [float(v) for v in np.percentile(balanced, tails)],
    }


def _auc_one_vs_rest(
    true: np.ndarray, proba: np.ndarray, names: tuple[str, ...]
) -> dict[str, float | None]:
    aucs: dict[str, float | None] = {}
    for k, name in enumerate(names):
        positive = true == k
        defined = positive.any() and not positive.all()
        aucs[name] = float(roc_auc_score(positive, proba[:, k])) if defined else None
    present = [value for value in aucs.values() if value is not None]
    aucs["macro"] = float(np.mean(present)) if present else None
    return aucs


def classification_metrics(
    y_true: Sequence[int],
    y_pred: Sequence[int],
    proba: np.ndarray,
    labels: Sequence[str],
    groups: Sequence[int] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """All test-split metrics as plain, JSON-able data (the content of ``metrics.json``).

    * ``confusion_matrix``: rows = true class, columns = predicted class
      (:func:`sklearn.metrics.confusion_matrix` over all ``labels``);
    * ``accuracy`` = trace / N; ``balanced_accuracy`` = mean recall of the classes present in
      ``y_true`` (:func:`sklearn.metrics.balanced_accuracy_score`); ``macro_f1`` = mean F1 of
      the classes present in ``y_true`` or ``y_pred`` (:func:`sklearn.metrics.f1_score`,
      ``zero_division=0``);
    * ``auc_ovr``: per class, the ROC AUC of ``proba[:, k]`` separating class ``k`` from the
      rest (:func:`sklearn.metrics.roc_auc_score`); ``None`` when ``y_true`` lacks the class
      or holds nothing else; ``macro`` is the mean of the defined ones (equal to sklearn's
      ``multi_class="ovr", average="macro"`` when all classes are present), ``None`` if none;
    * ``per_class``: :func:`per_class_metrics` (the paper's Table 2);
    * ``ci95``: :func:`patient_bootstrap_ci` at level 0.95, plus ``method`` and ``n_groups``.

    Zero denominators give 0.0.

    Parameters
    ----------
    y_true, y_pred : (N,) integer class indices into ``labels``.
    proba : (N, C) predicted class probabilities (or any scores; only their order matters).
    labels : C class names, e.g. ``["normal", "mass", "calc"]``.
    groups : (N,) patient of each image; ``None`` makes each image its own group.
    n_boot : bootstrap resamples. seed : bootstrap seed.

    Returns
    -------
    dict : ``{"labels", "n", "confusion_matrix", "accuracy", "balanced_accuracy", "macro_f1",
        "auc_ovr", "per_class", "ci95"}`` holding only str, int, float, None, list and dict.

    Raises
    ------
    ValueError : on empty or mismatched inputs, class indices out of range, non-finite
        probabilities, duplicate labels or ``n_boot < 1``.
    """
    true, pred, probabilities, names = _check_predictions(y_true, y_pred, proba, labels)
    group = _group_index(groups, true.size)
    class_range = list(range(len(names)))
    cm = confusion_matrix(true, pred, labels=class_range)
    ci = patient_bootstrap_ci(true, pred, group, n_classes=len(names), n_boot=n_boot, seed=seed)
    unit = "patient" if groups is not None else "image (each image its own group)"
    return {
        "labels": list(names),
        "n": int(true.size),
        "confusion_matrix": cm.astype(int).tolist(),
        "accuracy": _ratio(np.trace(cm), true.size),
        "balanced_accuracy": float(balanced_accuracy_score(true, pred)),
        "macro_f1": float(f1_score(true, pred, average="macro", zero_division=0.0)),
        "auc_ovr": _auc_one_vs_rest(true, probabilities, names),
        "per_class": per_class_metrics(cm, names),
        "ci95": {
            "accuracy": ci["accuracy"],
            "balanced_accuracy": ci["balanced_accuracy"],
            "method": f"{unit} bootstrap, {n_boot} resamples, percentile",
            "n_groups": int(group.max()) + 1,
        },
    }


def predictions_table(
    image_ids: Sequence[str],
    y_true: Sequence[int],
    y_pred: Sequence[int],
    proba: np.ndarray,
    labels: Sequence[str],
) -> list[dict[str, Any]]:
    """One row per image: ``{"image_id", "true", "pred", "p_<label>"...}`` with label names.

    Raises
    ------
    ValueError : on mismatched lengths, class indices out of range or a bad ``proba`` shape.
    """
    true, pred, probabilities, names = _check_predictions(y_true, y_pred, proba, labels)
    ids = [str(image_id) for image_id in image_ids]
    if len(ids) != true.size:
        raise ValueError(f"image_ids has {len(ids)} entries, y_true has {true.size}")
    return [
        {
            "image_id": image_id,
            "true": names[t],
            "pred": names[p],
            **{_PROBA_PREFIX + name: float(value) for name, value in zip(names, row, strict=True)},
        }
        for image_id, t, p, row in zip(ids, true, pred, probabilities, strict=True)
    ]


def write_predictions_csv(
    path: str | Path,
    image_ids: Sequence[str],
    y_true: Sequence[int],
    y_pred: Sequence[int],
    proba: np.ndarray,
    labels: Sequence[str],
) -> Path:
    """Write ``predictions.csv`` atomically: ``image_id,true,pred,p_<label>...``.

    ``true`` and ``pred`` hold label names; probabilities are written with 6 decimals.

    Returns
    -------
    Path : ``path``.

    Raises
    ------
    ValueError : as :func:`predictions_table`.
    """
    path = Path(path)
    rows = predictions_table(image_ids, y_true, y_pred, proba, labels)
    proba_columns = [_PROBA_PREFIX + name for name in _check_labels(labels)]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([*_CSV_FIXED_COLUMNS, *proba_columns])
    for row in rows:
        writer.writerow(
            [row["image_id"], row["true"], row["pred"], *(f"{row[c]:.6f}" for c in proba_columns)]
        )
    write_text_atomic(path, buffer.getvalue())
    return path


def _parse_probability(text: str, where: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{where}: probability {text!r} is not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"{where}: probability {text!r} is not finite")
    return value


def read_predictions_csv(path: str | Path) -> Predictions:
    """Read a ``predictions.csv`` written by :func:`write_predictions_csv`.

    The class names and their order come from the ``p_<label>`` columns of the header.

    Raises
    ------
    FileNotFoundError : if ``path`` does not exist.
    ValueError : naming the file and line, if the header is not ``image_id,true,pred`` followed
        by at least two ``p_<label>`` columns, a row has the wrong number of fields, a class
        name is not one of the labels, a probability is not a finite number, or there are no
        rows.
    """
    path = Path(path)
    with open(path, encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle))
    if not rows:
        raise ValueError(
            f"{path}: empty file, expected a header {','.join(_CSV_FIXED_COLUMNS)},..."
        )
    header = rows[0]
    proba_columns = header[len(_CSV_FIXED_COLUMNS) :]
    if (
        tuple(header[: len(_CSV_FIXED_COLUMNS)]) != _CSV_FIXED_COLUMNS
        or len(proba_columns) < 2
        or not all(c.startswith(_PROBA_PREFIX) and len(c) > 2 for c in proba_columns)
    ):
        raise ValueError(
            f"{path}: header {','.join(header)!r} is not "
            f"'image_id,true,pred,p_<label>,p_<label>[,...]'"
        )
    labels = _check_labels([c[len(_PROBA_PREFIX) :] for c in proba_columns])
    index = {name: k for k, name in enumerate(labels)}
    if len(rows) == 1:
        raise ValueError(f"{path}: no prediction rows after the header")

    image_ids: list[str] = []
    y_true: list[int] = []
    y_pred: list[int] = []
    proba: list[list[float]] = []
    for line, row in enumerate(rows[1:], start=2):
        where = f"{path}: line {line}"
        if len(row) != len(header):
            raise ValueError(f"{where}: {len(row)} fields, the header has {len(header)}")
        image_id, true_name, pred_name = row[: len(_CSV_FIXED_COLUMNS)]
        for column, name in (("true", true_name), ("pred", pred_name)):
            if name not in index:
                raise ValueError(f"{where}: {column} {name!r} is not one of {list(labels)}")
        image_ids.append(image_id)
        y_true.append(index[true_name])
        y_pred.append(index[pred_name])
        proba.append([_parse_probability(v, where) for v in row[len(_CSV_FIXED_COLUMNS) :]])
    return Predictions(
        image_ids=tuple(image_ids),
        y_true=np.asarray(y_true, dtype=np.int64),
        y_pred=np.asarray(y_pred, dtype=np.int64),
        proba=np.asarray(proba, dtype=np.float64),
        labels=labels,
    )


def write_metrics_json(path: str | Path, metrics: Mapping[str, Any]) -> Path:
    """Write metrics (e.g. from :func:`classification_metrics`) as indented JSON, atomically.

    The JSON is built and checked against :class:`~mammo_ray.contracts.MetricsFile` before
    anything is written, so metrics that cannot be serialised, or that are not a whole
    ``metrics.json``, leave no file behind; NaN and infinities are refused (not valid JSON).

    Returns
    -------
    Path : ``path``.

    Raises
    ------
    TypeError : if the metrics hold a value JSON cannot represent (e.g. a numpy scalar).
    ValueError : if the metrics hold NaN or an infinity.
    ConfigError : if they are not a ``metrics.json`` (:func:`mammo_ray.contracts.check`).
    """
    path = Path(path)
    try:
        text = json.dumps(metrics, indent=2, allow_nan=False)
    except TypeError as exc:
        raise TypeError(f"{path}: metrics are not JSON-serialisable ({exc})") from None
    except ValueError as exc:
        raise ValueError(f"{path}: metrics hold a value JSON cannot represent ({exc})") from None
    check(MetricsFile, metrics, path)
    write_text_atomic(path, text + "\n")
    return path
