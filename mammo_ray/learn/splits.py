"""Train / validation / test splits that keep a patient's films together, and the paper's leaky one.

MIAS holds two films per patient (films ``2k-1`` and ``2k`` are the left and right breast of
one woman). Two films of one patient share anatomy, acquisition and often pathology, so a
split of *films* lets a model see the test patient during training: the test accuracy then
measures recall of patients, not generalisation (Samala et al., "Hazards of data leakage in
machine learning: a study on classification of breast cancer using deep neural networks",
SPIE Medical Imaging 2020).

Three methods:

* ``patient`` (default) — stratified by label and grouped by patient with scikit-learn's
  :class:`~sklearn.model_selection.StratifiedGroupKFold`. The test part is the first of
  ``round(1 / test)`` folds; the validation part is the first of ``round((train + val) / val)``
  folds of the rest. Fractions are therefore realised as ``1/k`` of the patients (0.20 and
  0.16 with the defaults) and rounded to whole patients. A patient whose films carry different
  labels (one normal breast, one with a lesion) counts towards both classes' distribution.
* ``paper`` — the paper's random image-level split (80:20, and here a further 0.16 of all
  images for validation), stratified by label with
  :func:`~sklearn.model_selection.train_test_split`. It is kept to reproduce the published
  protocol and is always marked ``leaky``.
* ``cv`` — patient-level k-fold cross-validation (:func:`cross_validation`), nnU-Net's answer
  to small data: an outer test part (``test``, the first of ``round(1 / test)`` patient folds,
  or nothing with ``test: 0``) is set aside; the rest is cut into ``folds`` stratified,
  patient-grouped folds (``repeats`` times, each with its own shuffle), and fold ``k`` trains
  on the other folds (minus an inner validation part of ``val / (train + val)`` of them, for
  early stopping) and predicts its own fold, so every image is predicted out of fold once per
  repeat.

A :class:`Split` stores sorted indices into the record list; on disk it is written with image
ids so that a split file is readable and survives a change of record order
(:func:`write_split`, :func:`read_split`). :func:`leakage_report` counts the patients that a
split puts on both sides, the numbers the leakage audit prints.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold, train_test_split

from mammo_ray.errors import ConfigError
from mammo_ray.files import write_text_atomic

__all__ = [
    "SplitMethod",
    "SplitConfig",
    "Split",
    "CrossValidation",
    "make_split",
    "cross_validation",
    "kfold_splits",
    "fold_leakage",
    "leakage_report",
    "write_split",
    "read_split",
]


SplitMethod = Literal["patient", "paper", "cv"]


_METHODS = ("patient", "paper", "cv")


_PARTS = ("train", "val", "test")


@dataclass(frozen=True)
class SplitConfig:
    """How to split the records into train, validation and test.

    Attributes
    ----------
    method : ``"patient"`` (grouped by patient, the default), ``"paper"`` (image-level, leaky)
        or ``"cv"`` (patient-level k-fold cross-validation, :func:`cross_validation`).
    train, val, test : fractions of the data, each in (0, 1), summing to 1 within 1e-6; with
        ``cv``, ``test`` may be 0 (cross-validate everything) and ``val / (train + val)`` is the
        inner validation part of each fold's training folds.
    seed : seed of the shuffles; the same seed gives the same split.
    folds, repeats : with ``cv``, the number of folds (at least 2) and of repeated fold
        assignments (at least 1).
    """

    method: SplitMethod = "patient"
    train: float = 0.64
    val: float = 0.16
    test: float = 0.20
    seed: int = 0
    folds: int = 5
    repeats: int = 1

    def __post_init__(self) -> None:
        if self.method not in _METHODS:
            raise ValueError(f"method: {self.method!r} is not one of {', '.join(_METHODS)}")
        for name, least in (("folds", 2), ("repeats", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ValueError(f"{name}: expected an integer >= {least}, got {value!r}")
        for name in _PARTS:
            value = getattr(self, name)
            if name == "test" and self.method == "cv" and value == 0:
                continue
            if not 0.0 < value < 1.0:
                raise ValueError(f"{name}: fraction must be in (0, 1), got {value}")
        total = self.train + self.val + self.test
        if abs(total - 1.0) > 1e-6:
            raise ValueError(
                f"train + val + test must be 1, got "
                f"{self.train} + {self.val} + {self.test} = {total:.6g}"
            )
        if self.method != "paper":
            if self.test > 0 and round(1.0 / self.test) < 2:
                raise ValueError(
                    f"test: {self.test} leaves fewer than 2 patient folds (1 / test < 1.5)"
                )
            if round((self.train + self.val) / self.val) < 2:
                raise ValueError(
                    f"val: {self.val} leaves fewer than 2 patient folds of train + val "
                    "((train + val) / val < 1.5)"
                )


@dataclass(frozen=True)
class Split:
    """Indices into the record list of the three parts of a split.

    Attributes
    ----------
    method : ``"patient"`` or ``"paper"``.
    leaky : True when films of one patient may fall on both sides (the ``paper`` method).
    train, val, test : sorted, disjoint tuples of record indices.
    seed : seed the split was made with.
    """

    method: SplitMethod
    leaky: bool
    train: tuple[int, ...]
    val: tuple[int, ...]
    test: tuple[int, ...]
    seed: int

    def __post_init__(self) -> None:
        if self.method not in _METHODS:
            raise ValueError(f"method: {self.method!r} is not one of {', '.join(_METHODS)}")
        if self.leaky is not (self.method == "paper"):
            raise ValueError(
                f"leaky: {self.leaky!r} contradicts method {self.method!r} (only 'paper' is leaky)"
            )
        seen: set[int] = set()
        for name in _PARTS:
            part = getattr(self, name)
            if list(part) != sorted(part) or len(set(part)) != len(part):
                raise ValueError(f"{name}: indices must be sorted and unique")
            if any(index < 0 for index in part):
                raise ValueError(f"{name}: indices must be non-negative")
            shared = seen.intersection(part)
            if shared:
                raise ValueError(f"{name}: record {min(shared)} is also in an earlier part")
            seen.update(part)

    def to_dict(self, image_ids: Sequence[str]) -> dict[str, Any]:
        """Plain data with image ids in place of indices (what :func:`write_split` saves)."""
        ids = _check_image_ids(image_ids)
        _check_covers(self, len(ids), "image ids")
        data: dict[str, Any] = {"method": self.method, "leaky": self.leaky, "seed": self.seed}
        for name in _PARTS:
            data[name] = [ids[index] for index in getattr(self, name)]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], image_ids: Sequence[str]) -> Split:
        """Inverse of :meth:`to_dict`: map the image ids of ``data`` to indices into ``image_ids``.

        Raises
        ------
        ValueError : a key is missing or unknown, a value has the wrong type, or an image id is
            not among ``image_ids``.
        """
        position = {image_id: index for index, image_id in enumerate(_check_image_ids(image_ids))}
        expected = {"method", "leaky", "seed", *_PARTS}
        unknown = sorted(set(data) - expected)
        if unknown:
            known = ", ".join(sorted(expected))
            raise ValueError(f"unknown key {unknown[0]!r} (known keys: {known})")
        missing = sorted(expected - set(data))
        if missing:
            raise ValueError(f"missing key {missing[0]!r}")
        seed = data["seed"]
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"seed: expected an integer, got {seed!r}")
        parts: dict[str, tuple[int, ...]] = {}
        for name in _PARTS:
            listed = data[name]
            if not isinstance(listed, list) or not all(isinstance(i, str) for i in listed):
                raise ValueError(f"{name}: expected a list of image ids, got {listed!r}")
            unknown_ids = [image_id for image_id in listed if image_id not in position]
            if unknown_ids:
                raise ValueError(
                    f"{name}: unknown image id {unknown_ids[0]!r} "
                    f"({len(unknown_ids)} of {len(listed)} not in the dataset)"
                )
            parts[name] = tuple(sorted(position[image_id] for image_id in listed))
        return cls(method=data["method"], leaky=data["leaky"], seed=seed, **parts)


def make_split(labels: Sequence[str], patient_ids: Sequence[int], cfg: SplitConfig) -> Split:
    """Split records into train, validation and test parts as ``cfg`` says.

    Parameters
    ----------
    labels : class name of each record.
    patient_ids : patient of each record (MIAS: ``(film_number + 1) // 2``).
    cfg : method, fractions and seed.

    Returns
    -------
    split : a :class:`Split`; ``leaky`` is True for the ``paper`` method.

    Raises
    ------
    ValueError : lengths differ, or a class has too few patients (``patient``) or images
        (``paper``) to appear in every part.
    """
    y, groups, names = _encode(labels, patient_ids)
    if cfg.method == "cv":
        raise ValueError("method cv makes folds, not one split: train it with 'train cv'")
    if cfg.method == "paper":
        return _paper_split(y, names, cfg)
    everything = np.arange(y.size)
    n_test_folds = round(1.0 / cfg.test)
    rest, test = _first_group_fold(everything, y, groups, names, n_test_folds, cfg.seed, "test")
    n_val_folds = round((cfg.train + cfg.val) / cfg.val)
    train, val = _first_group_fold(rest, y, groups, names, n_val_folds, cfg.seed, "validation")
    return _build_split("patient", train, val, test, y, names, cfg.seed)


def kfold_splits(
    labels: Sequence[str],
    patient_ids: Sequence[int],
    n_folds: int,
    seed: int,
    val_fraction: float = 0.2,
) -> list[Split]:
    """Patient-grouped, label-stratified ``n_folds``-fold cross-validation.

    Fold ``k``'s test part is the ``k``-th of ``n_folds`` :class:`StratifiedGroupKFold` folds,
    so every record is a test record exactly once. Its validation part is the first of
    ``round(1 / val_fraction)`` patient-grouped, stratified folds of the remaining records.

    Raises
    ------
    ValueError : ``n_folds < 2``, ``val_fraction`` outside (0, 2/3], lengths differ, or a class
        has fewer patients than folds.
    """
    if isinstance(n_folds, bool) or not isinstance(n_folds, int) or n_folds < 2:
        raise ValueError(f"n_folds must be an integer >= 2, got {n_folds!r}")
    if not 0.0 < val_fraction < 1.0 or round(1.0 / val_fraction) < 2:
        raise ValueError(f"val_fraction must be in (0, 2/3] (at least 2 folds), got {val_fraction}")
    y, groups, names = _encode(labels, patient_ids)
    _require_patients(y, groups, names, n_folds, "cross-validation")
    folds = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    n_val_folds = round(1.0 / val_fraction)
    splits = []
    for rest, test in folds.split(np.zeros(y.size), y, groups):
        train, val = _first_group_fold(rest, y, groups, names, n_val_folds, seed, "validation")
        splits.append(_build_split("patient", train, val, test, y, names, seed))
    return splits


@dataclass(frozen=True)
class CrossValidation:
    """The folds of a ``cv`` split and the outer test part they leave aside.

    Attributes
    ----------
    test : sorted record indices of the outer test part (empty with ``test: 0``).
    folds : one :class:`Split` per (repeat, fold), repeat-major: fold ``k`` of repeat ``r`` is
        ``folds[r * n_folds + k]``; its ``test`` part is the fold it predicts out of fold.
    n_folds, repeats : as configured.
    """

    test: tuple[int, ...]
    folds: tuple[Split, ...]
    n_folds: int
    repeats: int

    def out_of_fold(self, repeat: int = 0) -> tuple[int, ...]:
        """Every cross-validated record once: the union of one repeat's held-out folds."""
        folds = self.folds[repeat * self.n_folds : (repeat + 1) * self.n_folds]
        return tuple(sorted(i for split in folds for i in split.test))


def cross_validation(
    labels: Sequence[str], patient_ids: Sequence[int], cfg: SplitConfig
) -> CrossValidation:
    """Patient-level ``cfg.folds``-fold cross-validation, ``cfg.repeats`` times, of the records
    outside the outer test part (see the module notes on ``cv``).

    Repeat ``r`` shuffles with seed ``cfg.seed + r``; the outer test part is the first of
    ``round(1 / cfg.test)`` stratified patient folds with ``cfg.seed``, as for ``patient``.

    Raises
    ------
    ValueError : ``cfg.method`` is not ``cv``, or a class has too few patients for the folds.
    """
    if cfg.method != "cv":
        raise ValueError(f"cross_validation needs split.method=cv, got {cfg.method!r}")
    y, groups, names = _encode(labels, patient_ids)
    everything = np.arange(y.size)
    if cfg.test > 0:
        rest, test = _first_group_fold(
            everything, y, groups, names, round(1.0 / cfg.test), cfg.seed, "test"
        )
    else:
        rest, test = everything, everything[:0]
    rest = np.sort(rest)
    inner_val = cfg.val / (cfg.train + cfg.val)
    folds = []
    for repeat in range(cfg.repeats):
        for split in kfold_splits(
            [names[code] for code in y[rest]],
            groups[rest].tolist(),
            cfg.folds,
            cfg.seed + repeat,
            inner_val,
        ):
            parts = {name: rest[list(getattr(split, name))] for name in _PARTS}
            folds.append(_build_split("cv", **parts, y=y, names=names, seed=cfg.seed + repeat))
    return CrossValidation(
        test=tuple(int(i) for i in np.sort(test)),
        folds=tuple(folds),
        n_folds=cfg.folds,
        repeats=cfg.repeats,
    )


def fold_leakage(
    labels: Sequence[str],
    patient_ids: Sequence[int],
    n_folds: int,
    seed: int,
    *,
    by_patient: bool,
) -> list[dict[str, int]]:
    """What each fold of an ``n_folds``-fold cross-validation of every film shares with the
    other folds, which train the model that predicts it.

    ``by_patient=False`` carries the paper's image-level protocol to cross-validation:
    stratified folds of films (:class:`~sklearn.model_selection.StratifiedKFold`);
    ``by_patient=True``: the patient-grouped folds of :func:`kfold_splits`, where nothing is
    shared. Per fold: ``films``, ``patients``, ``patients_in_other_folds`` (patients with a
    film in this fold and one in another) and ``films_with_partner_in_training`` (this fold's
    films whose patient has a film in another fold).

    Raises
    ------
    ValueError : as :func:`kfold_splits`, or a class with fewer films than folds.
    """
    y, groups, _ = _encode(labels, patient_ids)
    if by_patient:
        tests = [np.asarray(s.test) for s in kfold_splits(labels, patient_ids, n_folds, seed)]
    else:
        folds = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
        tests = [test for _, test in folds.split(np.zeros(y.size), y)]
    rows = []
    for k, test in enumerate(tests):
        outside = set(np.delete(groups, test).tolist())
        partners = [int(g) in outside for g in groups[test]]
        inside = set(groups[test].tolist())
        rows.append(
            {
                "fold": k,
                "films": int(test.size),
                "patients": len(inside),
                "patients_in_other_folds": len(inside & outside),
                "films_with_partner_in_training": int(sum(partners)),
            }
        )
    return rows


def leakage_report(split: Split, patient_ids: Sequence[int]) -> dict[str, Any]:
    """Count what a split shares across its parts.

    Returns
    -------
    report : dict with ``method``, ``leaky``, ``n_train``, ``n_val``, ``n_test``;
        ``patients_train_test``, ``patients_train_val``, ``patients_val_test`` (patients with
        films in both parts) and ``test_images_with_partner_in_train`` (test films of which
        another film of the same patient is in train). All counts are 0 for a patient split.
    """
    patients = np.asarray(patient_ids)
    _check_covers(split, patients.size, "patient ids")
    train, val, test = (set(patients[list(getattr(split, name))].tolist()) for name in _PARTS)
    partners_in_train = sum(1 for index in split.test if patients[index] in train)
    return {
        "method": split.method,
        "leaky": split.leaky,
        "n_train": len(split.train),
        "n_val": len(split.val),
        "n_test": len(split.test),
        "patients_train_test": len(train & test),
        "patients_train_val": len(train & val),
        "patients_val_test": len(val & test),
        "test_images_with_partner_in_train": partners_in_train,
    }


def write_split(path: str | Path, split: Split, image_ids: Sequence[str]) -> Path:
    """Write ``split`` as JSON with image ids, atomically (temporary file, then rename).

    Returns the path written. Parent folders are created.
    """
    return write_text_atomic(path, json.dumps(split.to_dict(image_ids), indent=1) + "\n")


def read_split(path: str | Path, image_ids: Sequence[str]) -> Split:
    """Read a split file written by :func:`write_split`, mapping its image ids to indices.

    Raises
    ------
    ConfigError : the file is missing or not JSON, or its content is invalid (an image id that
        is not in ``image_ids``, a missing key, ...); the message names the file.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: split file not found") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read split file ({exc.strerror})") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping, got {type(data).__name__}")
    try:
        return Split.from_dict(data, image_ids)
    except ValueError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def _check_image_ids(image_ids: Sequence[str]) -> list[str]:
    ids = [str(image_id) for image_id in image_ids]
    if len(set(ids)) != len(ids):
        duplicate = next(i for i in ids if ids.count(i) > 1)
        raise ValueError(f"image id {duplicate!r} appears more than once")
    return ids


def _check_covers(split: Split, n_records: int, what: str) -> None:
    """The largest index of ``split`` must be below ``n_records``."""
    largest = max((max(getattr(split, name), default=-1) for name in _PARTS), default=-1)
    if largest >= n_records:
        raise ValueError(f"split refers to record {largest} but only {n_records} {what} were given")


def _encode(
    labels: Sequence[str], patient_ids: Sequence[int]
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Class codes, patient array and class names; checks the lengths agree."""
    if len(labels) != len(patient_ids):
        raise ValueError(f"{len(labels)} labels but {len(patient_ids)} patient ids")
    if len(labels) == 0:
        raise ValueError("cannot split an empty dataset")
    names, y = np.unique(np.asarray([str(label) for label in labels]), return_inverse=True)
    return y, np.asarray(patient_ids), names.tolist()


def _require_patients(
    y: np.ndarray, groups: np.ndarray, names: list[str], n_folds: int, stage: str
) -> None:
    """Every class present in ``y`` needs films of at least ``n_folds`` patients."""
    for code in np.unique(y):
        n_patients = np.unique(groups[y == code]).size
        if n_patients < n_folds:
            raise ValueError(
                f"class {names[code]!r} has films of only {n_patients} patient(s); the {stage} "
                f"split stratifies over {n_folds} patient folds and needs at least {n_folds}"
            )


def _first_group_fold(
    indices: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    names: list[str],
    n_folds: int,
    seed: int,
    stage: str,
) -> tuple[np.ndarray, np.ndarray]:
    """(rest, held-out) indices: the first stratified, patient-grouped fold of ``indices``."""
    _require_patients(y[indices], groups[indices], names, n_folds, stage)
    folds = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    rest, held_out = next(folds.split(np.zeros(indices.size), y[indices], groups[indices]))
    return indices[rest], indices[held_out]


def _paper_split(y: np.ndarray, names: list[str], cfg: SplitConfig) -> Split:
    """Image-level split stratified by label: test first, then val out of the rest."""
    counts = np.bincount(y)
    n_test = math.ceil(cfg.test * y.size)
    n_val = math.ceil(cfg.val * y.size)
    too_small = [names[code] for code, count in enumerate(counts) if count < 3]
    if too_small or min(n_test, n_val) < len(names):
        raise ValueError(
            f"the paper split needs at least 3 images of each class and as many test and "
            f"validation images as classes; class counts are "
            f"{dict(zip(names, counts.tolist(), strict=True))}, test {n_test}, val {n_val}"
        )
    everything = np.arange(y.size)
    rest, test = train_test_split(
        everything, test_size=cfg.test, stratify=y, random_state=cfg.seed, shuffle=True
    )
    train, val = train_test_split(
        rest,
        test_size=cfg.val / (cfg.train + cfg.val),
        stratify=y[rest],
        random_state=cfg.seed,
        shuffle=True,
    )
    return _build_split("paper", train, val, test, y, names, cfg.seed)


def _build_split(
    method: SplitMethod,
    train: np.ndarray,
    val: np.ndarray,
    test: np.ndarray,
    y: np.ndarray,
    names: list[str],
    seed: int,
) -> Split:
    """Make the :class:`Split`, checking that every class reached every part."""
    parts = {"train": train, "val": val, "test": test}
    for name, indices in parts.items():
        absent = sorted(set(range(len(names))) - set(y[indices].tolist()))
        if absent:
            raise ValueError(
                f"class {names[absent[0]]!r} has no image in the {name} part with seed {seed}; "
                "too few patients or images of that class to stratify"
            )
    as_tuples = {name: tuple(sorted(int(i) for i in indices)) for name, indices in parts.items()}
    return Split(method=method, leaky=method == "paper", seed=seed, **as_tuples)
