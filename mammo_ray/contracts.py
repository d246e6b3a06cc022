"""The JSON files mammo_ray writes and reads back, one typed model each.

``metrics.json`` (:class:`MetricsFile`), ``search.json`` (:class:`SearchFile`), ``lime.json``
(:class:`LimeFile`) and ``audit.json`` (:class:`AuditFile`) are checked by their writer before
they are written and by every reader (the report) after they are read, against the same
pydantic v2 model with ``extra="forbid"``: a key the writer does not write, or one it writes
and the model lacks, is an error on both sides. The writers keep their plain dicts (what
``json.dumps`` receives is what they built); the models only check them.

:func:`check` turns pydantic's errors into one :class:`~mammo_ray.errors.ConfigError` line
that names the file and the key: ``runs/s/search.json: trials.0.status: Input should be
'TERMINATED' or 'ERROR'``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, RootModel, ValidationError, model_validator

from mammo_ray.errors import ConfigError

__all__ = [
    "MetricsFile",
    "TrialRecord",
    "SearchPlan",
    "SearchFile",
    "BaselineRecord",
    "LimeImage",
    "LimeFile",
    "AuditRow",
    "AuditFile",
    "FoldLeakage",
    "AuditFoldsFile",
    "CacheManifestFile",
    "check",
    "read_checked",
    "ConfidenceIntervals",
    "SearchMlflow",
    "SearchCrossValidation",
    "AuditTest",
    "Leakage",
    "RoiEntry",
    "RecordEntry",
]

Count = Annotated[int, Field(strict=True, ge=0)]
Interval = tuple[float, float]
Number = float | None
"""A measure that can be undefined (no positives for an AUC, a trial without an epoch)."""

Model = TypeVar("Model", bound=BaseModel)


class _Contract(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ConfidenceIntervals(_Contract):
    """``ci95`` of :func:`~mammo_ray.learn.metrics.classification_metrics`."""

    accuracy: Interval
    balanced_accuracy: Interval
    method: str
    n_groups: Count


class MetricsFile(_Contract):
    """``metrics.json``: :func:`~mammo_ray.learn.metrics.classification_metrics` of one split.

    ``confusion_matrix[i][j]``: images of true class ``labels[i]`` predicted ``labels[j]``.
    """

    labels: list[str] = Field(min_length=1)
    n: Count
    confusion_matrix: list[list[Count]]
    accuracy: float
    balanced_accuracy: float
    macro_f1: float
    auc_ovr: dict[str, Number]
    per_class: dict[str, dict[str, float]]
    ci95: ConfidenceIntervals

    @model_validator(mode="after")
    def _square_matrix(self) -> MetricsFile:
        size = len(self.labels)
        if len(self.confusion_matrix) != size or any(
            len(row) != size for row in self.confusion_matrix
        ):
            raise ValueError(f"confusion_matrix must be {size} x {size} for {self.labels}")
        return self


class TrialRecord(_Contract):
    """One trial of ``search.json``: its searched params, status, per-epoch (or per-fold)
    history and best epoch by the search metric (None when it reported no epoch). ``CUT``:
    ended (by the time budget) before its first result, without an error. ``test``: its
    checkpoint once on the held-out test part, for the report (selection never reads it).
    ``compute``: how it computed (:class:`~mammo_ray.learn.hardware.ComputeChoice`);
    ``seconds``: Tune's total time of the trial (both None before its first result)."""

    trial_id: str
    status: Literal["TERMINATED", "ERROR", "CUT"]
    failures: Count
    params: dict[str, Any]
    compute: dict[str, str | int] | None = None
    seconds: Number = None
    best: dict[str, Number] | None
    history: list[dict[str, Number]]
    error: str | None
    test: dict[str, Number] | None = None


class SearchMlflow(_Contract):
    uri: str
    parent_run_id: str
    experiment: str


class SearchCrossValidation(_Contract):
    """``search.json``'s ``cv``: the folds every trial cross-validated."""

    folds: Annotated[int, Field(strict=True, ge=2)]
    repeats: Annotated[int, Field(strict=True, ge=1)]


class BaselineRecord(_Contract):
    """One fixed baseline of ``search.json`` (:mod:`mammo_ray.search.baselines`): its folder
    and the out-of-fold and outer test figures of its ``summary.json``."""

    dir: str
    folds: Annotated[int, Field(strict=True, ge=2)]
    out_of_fold: dict[str, Any]
    test: dict[str, Any] | None


class SearchPlan(_Contract):
    """``search.json``'s ``plan`` (:meth:`mammo_ray.search.plan.Plan.record`): the planned
    settings and the times they were planned on."""

    max_epochs: Annotated[int, Field(strict=True, ge=1)]
    num_samples: Annotated[int, Field(strict=True, ge=1)]
    budget_s: Number
    expected_trial_s: float
    published_s: Number
    trials_fit: Number
    trials_fit_median: Number = None


class SearchFile(_Contract):
    """``search.json``: a finished search, written by :mod:`mammo_ray.search.run`."""

    name: str
    metric: str
    mode: Literal["min", "max"]
    space: str
    command: str
    split: Literal["patient", "paper", "cv"]
    leaky: bool
    input_mode: str = "whole"
    mlflow: SearchMlflow
    cv: SearchCrossValidation | None = None
    best_trial: str | None
    best_resnet18_trial: str | None = None
    trials: list[TrialRecord]
    baselines: dict[str, BaselineRecord] = {}
    timings: dict[str, float]
    plan: SearchPlan | None = None

    @model_validator(mode="after")
    def _best_is_a_trial(self) -> SearchFile:
        if (self.split == "cv") != (self.cv is not None):
            raise ValueError(f"split {self.split!r} and cv {self.cv!r} disagree")
        ids = {t.trial_id for t in self.trials}
        for key in ("best_trial", "best_resnet18_trial"):
            value = getattr(self, key)
            if value is not None and value not in ids:
                raise ValueError(f"{key} {value!r} is not one of the trials")
        return self


class LimeImage(_Contract):
    """One explained image of ``lime.json``."""

    image_id: str
    true: str
    pred: str
    proba: list[float]
    positive_weight_in_lesion: Number
    png: str


class LimeFile(_Contract):
    """``lime.json``: :func:`~mammo_ray.explain.lime_images.explain_images`'s result."""

    images: list[LimeImage]
    mean_positive_weight_in_lesion: Number
    num_samples: Annotated[int, Field(strict=True, ge=1)]
    seed: int
    labels: list[str]
    hide_color: int
    segmentation: str


class AuditTest(_Contract):
    n: Count
    accuracy: float
    balanced_accuracy: float
    macro_f1: float
    ci95: ConfidenceIntervals


class Leakage(_Contract):
    """:func:`~mammo_ray.learn.splits.leakage_report` of a run's split, plus the test images
    that are a training film or a copy of one."""

    method: Literal["patient", "paper"]
    leaky: bool
    n_train: Count
    n_val: Count
    n_test: Count
    patients_train_test: Count
    patients_train_val: Count
    patients_val_test: Count
    test_images_with_partner_in_train: Count
    test_images_from_train_films: Count


class AuditRow(_Contract):
    """One arm of ``audit.json``: a training run's ``summary.json`` under one split protocol."""

    arm: str
    best_epoch: Annotated[int, Field(strict=True, ge=1)]
    best_val: dict[str, Number]
    test: AuditTest
    images_per_s: list[float]
    split: Literal["patient", "paper"]
    leaky: bool
    leakage: Leakage
    mlflow: dict[str, str]


class AuditFile(RootModel[list[AuditRow]]):
    """``audit.json``: one row per split protocol."""


class FoldLeakage(_Contract):
    """One fold of ``audit_folds.json`` (:func:`mammo_ray.learn.splits.fold_leakage`)."""

    fold: Count
    films: Count
    patients: Count
    patients_in_other_folds: Count
    films_with_partner_in_training: Count


class AuditFoldsFile(RootModel[dict[str, list[FoldLeakage]]]):
    """``audit_folds.json``: per protocol name, what each cross-validation fold shares with the
    folds that train its model."""


class RoiEntry(_Contract):
    row: float
    col: float
    radius: float


class RecordEntry(_Contract):
    """One film of the cache: :meth:`~mammo_ray.data.mias_info.MiasRecord.to_dict`."""

    image_id: str
    patient_id: int
    label: str
    tissue: str
    severity: str | None
    classes: list[str]
    rois: list[RoiEntry]


class CacheManifestFile(_Contract):
    """``manifest.json`` of a preprocessing cache
    (:class:`~mammo_ray.preprocess.pipeline.CacheManifest`): one entry per film in every
    per-film list, in the order of the arrays' rows."""

    key: str
    version: str
    fingerprint: str
    data_path: str
    config: dict[str, Any]
    records: list[RecordEntry]
    arrays: dict[str, list[int]]
    stats: dict[str, list[Number]]
    seconds: float
    crop_boxes: list[tuple[int, int, int, int]]
    film_shapes: list[tuple[int, int]]

    @model_validator(mode="after")
    def _one_entry_per_film(self) -> CacheManifestFile:
        n = len(self.records)
        lengths = {"crop_boxes": len(self.crop_boxes), "film_shapes": len(self.film_shapes)}
        lengths |= {f"stats.{k}": len(v) for k, v in self.stats.items()}
        lengths |= {f"arrays.{k}": v[0] if v else 0 for k, v in self.arrays.items()}
        wrong = [f"{k} has {v}" for k, v in lengths.items() if v != n]
        if wrong:
            raise ValueError(f"{n} records but {', '.join(wrong)}")
        return self


def check(model: type[Model], data: Any, where: str | Path) -> Model:
    """``model.model_validate(data)``, or one :class:`ConfigError` line naming ``where`` and the
    first bad key (``trials.0.status``), with how many other problems there are."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(part) for part in first["loc"])
        message = first["msg"].removeprefix("Value error, ")
        more = exc.error_count() - 1
        others = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
        raise ConfigError(f"{where}: {key + ': ' if key else ''}{message}{others}") from None


def read_checked(model: type[Model], path: Path) -> Any:
    """Read the JSON file ``path`` and :func:`check` it; return the plain data read."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: invalid JSON ({exc})") from None
    check(model, data, path)
    return data
