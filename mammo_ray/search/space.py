"""Search spaces: plain YAML a user edits, validated once, turned into an Optuna define-by-run
function (or a grid) over training-config keys.

A space file::

    base: published_patient.yaml        # a training config (path relative to this file)
    fixed:                              # dotted training-config keys set in every trial
      epochs: 6
    params:                             # dotted keys searched; one distribution each
      model.backbone: {choice: [resnet18, densenet121]}
      optim.lr: {loguniform: [1.0e-5, 1.0e-2]}
      optim.momentum: {uniform: [0.8, 0.99], when: {optim.name: sgd}}   # conditional
      batch_size: {int: [8, 32]}
    grid:                               # instead of params: every combination, once each
      segmentation: [false, true]
    search: {metric: val_balanced_accuracy, mode: max, num_samples: 8, max_epochs: 6, ...}
    enqueue_published: true             # published.yaml's values as the first trial

Every sampled configuration is checked against :class:`mammo_ray.learn.config.TrainConfig` when the
space is loaded (the base with each choice, each range's ends), so a typo in a key, a bad range
or an unknown backbone is reported before Ray starts. ``preprocess.*`` keys cannot be searched:
the cache is built once, holding every ``input_size`` the space can pick.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib.resources
import itertools
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import optuna

from mammo_ray.config import (
    apply_overrides,
    flatten_dotted,
    from_dict,
    load_yaml,
    set_dotted,
    to_dict,
)
from mammo_ray.errors import ConfigError, SearchSpaceError
from mammo_ray.learn.config import FULL_RESOLUTION, TrainConfig
from mammo_ray.learn.models import ModelConfig, resolve_pretrained
from mammo_ray.preprocess.pipeline import PreprocessConfig

__all__ = [
    "PUBLISHED_CONFIG",
    "KINDS",
    "ParamSpec",
    "CrossValidationSettings",
    "SearchSettings",
    "SearchSpace",
    "load_search_space",
    "check_pretrained",
    "BUILTIN_SPACES",
]


BUILTIN_SPACES = Path(str(importlib.resources.files("mammo_ray") / "search_spaces"))
"""The search spaces and training configs shipped with the package (``search_spaces/`` of the
repository, inside the wheel as package data)."""
PUBLISHED_CONFIG = BUILTIN_SPACES / "published.yaml"


KINDS = ("choice", "uniform", "loguniform", "int")


@dataclasses.dataclass(frozen=True)
class ParamSpec:
    """One searched key: ``kind`` in choice/uniform/loguniform/int, its values or bounds, and an
    optional condition ``when`` ({other key: required value, or a list of allowed values})
    under which it is sampled."""

    key: str
    kind: Literal["choice", "uniform", "loguniform", "int"]
    values: tuple[Any, ...]
    when: tuple[tuple[str, Any], ...] = ()

    def active(self, sampled: Mapping[str, Any]) -> bool:
        """Whether ``sampled`` (the values drawn so far) meets every condition of ``when``."""
        return all(
            sampled.get(k) in v if isinstance(v, list) else sampled.get(k) == v
            for k, v in self.when
        )

    def suggest(self, trial: optuna.Trial) -> Any:
        """Ask an Optuna trial for this parameter (define-by-run)."""
        if self.kind == "choice":
            return trial.suggest_categorical(self.key, list(self.values))
        low, high = self.values
        if self.kind == "int":
            return trial.suggest_int(self.key, low, high)
        return trial.suggest_float(self.key, low, high, log=self.kind == "loguniform")

    def candidates(self) -> list[Any]:
        """Values that span the parameter: every choice, or both ends of a range."""
        return list(self.values)


@dataclasses.dataclass(frozen=True)
class CrossValidationSettings:
    """``search.cv``: every trial cross-validates its configuration over ``folds`` patient
    folds (``repeats`` times), one fold after another (:mod:`mammo_ray.learn.fold_race`)."""

    folds: int = 5
    repeats: int = 1

    def __post_init__(self) -> None:
        if self.folds < 2 or self.repeats < 1:
            raise ValueError(
                f"folds must be >= 2 and repeats >= 1, got {self.folds}, {self.repeats}"
            )


@dataclasses.dataclass(frozen=True)
class SearchSettings:
    """How to search: metric, budget, sampler (TPE), scheduler (ASHA), concurrency and
    cross-validation.

    ``sampler``: ``tpe`` (Optuna's TPE, Bergstra et al. 2011) or ``random`` (Optuna's random
    sampler, the baseline of ``benchmarks/search_bench.py``). ``trial_epoch_budget``: stop the
    whole search once trials have trained this many epochs in total (None: no such limit).
    ``cv``: cross-validate every trial; the metric is then out of fold over the folds done, a
    trial reports once per fold, and ASHA's rungs (``grace_period``, :attr:`max_t`) are folds:
    fold racing. ``max_epochs`` caps the epochs of each fold. ``baselines``: fixed models
    cross-validated once on the trials' folds after the trials, for comparison (never
    selected): ``radiomics``, the classifier of ``search_spaces/radiomics.yaml`` on the
    trials' cache and folds (:func:`SearchSpace.baseline_config`). ``plan``: before the first
    trial, time each kind of trial from throughput measured on this machine and lower
    ``max_epochs`` and ``num_samples`` (then the most it may use) to what fits
    ``time_budget_s`` (:mod:`mammo_ray.search.plan`).
    """

    metric: str = "val_balanced_accuracy"
    mode: Literal["max", "min"] = "max"
    num_samples: int = 8
    max_epochs: int = 6
    grace_period: int = 1
    reduction_factor: int = 2
    max_concurrent: int = 2
    time_budget_s: float | None = None
    scheduler: Literal["asha", "none"] = "asha"
    sampler: Literal["tpe", "random"] = "tpe"
    trial_epoch_budget: int | None = None
    max_failures: int = 1
    cv: CrossValidationSettings | None = None
    baselines: tuple[Literal["radiomics"], ...] = ()
    plan: bool = False

    @property
    def max_t(self) -> int:
        """ASHA's last rung: ``max_epochs``, or with ``cv`` the number of folds."""
        return self.max_epochs if self.cv is None else self.cv.folds * self.cv.repeats

    def __post_init__(self) -> None:
        if self.num_samples < 1 or self.max_epochs < 1 or self.max_concurrent < 1:
            raise ValueError("num_samples, max_epochs and max_concurrent must be >= 1")
        if not 1 <= self.grace_period <= self.max_t:
            unit = "max_epochs" if self.cv is None else "the folds (with cv, rungs are folds)"
            raise ValueError(f"grace_period must lie in [1, {unit}], got {self.grace_period}")
        if self.reduction_factor < 2:
            raise ValueError(f"reduction_factor must be >= 2, got {self.reduction_factor}")
        if self.trial_epoch_budget is not None and self.trial_epoch_budget < 1:
            raise ValueError(f"trial_epoch_budget must be >= 1, got {self.trial_epoch_budget}")
        if self.time_budget_s is not None and self.time_budget_s <= 0:
            raise ValueError(f"time_budget_s must be > 0 seconds, got {self.time_budget_s}")
        if self.max_failures < 0:
            raise ValueError(
                f"max_failures must be >= 0 (retries of a failed trial), got {self.max_failures}"
            )
        if not self.metric.startswith("val_"):
            raise ValueError(f"metric must be a validation metric (val_*), got {self.metric!r}")
        if self.baselines and self.cv is None:
            raise ValueError(
                "baselines are cross-validated on the trials' folds: add cv: {folds: 5}"
            )


@dataclasses.dataclass(frozen=True)
class SearchSpace:
    """A validated search space: base training config, searched params or a grid, settings."""

    path: Path
    base: dict[str, Any]
    params: tuple[ParamSpec, ...]
    grid: tuple[tuple[str, tuple[Any, ...]], ...]
    settings: SearchSettings
    enqueue_published: bool

    @property
    def preprocess_config(self) -> PreprocessConfig:
        """The :class:`~mammo_ray.preprocess.pipeline.PreprocessConfig` every trial shares."""

        where = f"{self.path}: preprocess"
        return from_dict(PreprocessConfig, self.base["preprocess"], where=where)

    def config_for(
        self, values: Mapping[str, Any], max_epochs: int | None = None
    ) -> dict[str, Any]:
        """The full training-config dict of one trial: base with ``values`` (dotted keys) set,
        ``epochs`` capped at ``max_epochs`` (default: the space's ``search.max_epochs``)."""
        cap = max_epochs or self.settings.max_epochs
        data = copy.deepcopy(self.base)
        for key, value in values.items():
            set_dotted(data, key, value)
        data["epochs"] = min(data.get("epochs", cap), cap)
        return data

    def baseline_config(self, name: Literal["radiomics"]) -> dict[str, Any]:
        """The training config of baseline ``name``: the base (its split: the trials' folds;
        its preprocessing: the trials' cache) with the radiomics classifier of
        :class:`~mammo_ray.learn.config.RadiomicsConfig` on the full-resolution film."""
        data = copy.deepcopy(self.base)
        data["input"]["mode"] = name
        data["input_size"] = FULL_RESOLUTION
        data["segmentation"] = False
        return data

    def define_by_run(self, trial: optuna.Trial) -> dict[str, Any]:
        """Optuna define-by-run: sample each active param; return the fixed values as constants."""
        sampled: dict[str, Any] = {}
        for spec in self.params:
            if spec.active(sampled):
                sampled[spec.key] = spec.suggest(trial)
        return {k: v for k, v in flatten_dotted(self.base).items() if k not in sampled}

    def grid_points(self) -> list[dict[str, Any]]:
        """Every combination of the grid's values (dotted keys)."""
        keys = [k for k, _ in self.grid]
        return [
            dict(zip(keys, combo, strict=True))
            for combo in itertools.product(*(v for _, v in self.grid))
        ]

    def published_point(self) -> dict[str, Any]:
        """The published configuration's value of every searched key (the first trial)."""
        published = flatten_dotted(load_yaml(PUBLISHED_CONFIG))
        point: dict[str, Any] = {}
        for spec in self.params:
            if not spec.active(point):
                continue
            value = published.get(spec.key, flatten_dotted(self.base).get(spec.key))
            if spec.kind == "choice" and value not in spec.values:
                raise SearchSpaceError(
                    f"{self.path}: params.{spec.key}: the published value {value!r} is not among "
                    f"the choices {list(spec.values)} (add it, or set enqueue_published: false)"
                )
            if spec.kind != "choice" and not spec.values[0] <= value <= spec.values[1]:
                raise SearchSpaceError(
                    f"{self.path}: params.{spec.key}: the published value {value!r} lies outside "
                    f"{list(spec.values)} (widen it, or set enqueue_published: false)"
                )
            point[spec.key] = value
        return point


def _param(key: str, spec: Any, where: str) -> ParamSpec:
    if not isinstance(spec, Mapping):
        raise SearchSpaceError(f"{where}: expected a mapping like {{choice: [...]}}, got {spec!r}")
    kinds = [k for k in spec if k in KINDS]
    unknown = [k for k in spec if k not in (*KINDS, "when")]
    if unknown or len(kinds) != 1:
        bad = unknown[0] if unknown else ", ".join(kinds) or "nothing"
        raise SearchSpaceError(
            f"{where}: expected exactly one of {', '.join(KINDS)} (and optional when), got {bad}"
        )
    kind = kinds[0]
    values = spec[kind]
    if not isinstance(values, list) or not values:
        raise SearchSpaceError(f"{where}.{kind}: expected a non-empty list, got {values!r}")
    if kind != "choice":
        if len(values) != 2 or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in values
        ):
            raise SearchSpaceError(f"{where}.{kind}: expected [low, high] numbers, got {values!r}")
        low, high = values
        if not low < high:
            raise SearchSpaceError(f"{where}.{kind}: low must be < high, got {values!r}")
        if kind == "loguniform" and low <= 0:
            raise SearchSpaceError(
                f"{where}.{kind}: bounds must be > 0 for a log scale, got {values!r}"
            )
        if kind == "int" and not all(isinstance(v, int) for v in values):
            raise SearchSpaceError(f"{where}.{kind}: bounds must be integers, got {values!r}")
    when = spec.get("when", {})
    if not isinstance(when, Mapping):
        raise SearchSpaceError(f"{where}.when: expected a mapping of key: value, got {when!r}")
    return ParamSpec(key, kind, tuple(values), tuple(when.items()))


def _check_configs(space: SearchSpace) -> None:
    """Build a TrainConfig from the base with each candidate value, so bad values fail now."""

    checks: list[tuple[str, dict[str, Any]]] = [("base", {})]
    checks += [(f"params.{s.key}", {s.key: v}) for s in space.params for v in s.candidates()]
    checks += [(f"grid.{k}", {k: v}) for k, values in space.grid for v in values]
    for name in space.settings.baselines:
        try:
            from_dict(TrainConfig, space.baseline_config(name), where=f"{space.path}: {name}")
        except ConfigError as exc:
            raise SearchSpaceError(f"search.baselines: {exc}") from None
    for where, values in checks:
        data = space.config_for(values)
        try:
            cfg = from_dict(TrainConfig, data, where=f"{space.path}: {where}")
        except ConfigError as exc:
            raise SearchSpaceError(str(exc)) from None
        _check_mode(cfg, space, where)


def _check_mode(cfg: TrainConfig, space: SearchSpace, where: str) -> None:
    """A search trains networks: whole-film ones, or patch classifiers whose aggregation is
    fitted on out-of-fold maps, so only in a cross-validated search (once per fold)."""
    where = f"{space.path}: {where}: input.mode {cfg.input.mode}"
    if cfg.input.mode == "radiomics":
        raise SearchSpaceError(
            f"{where}: the radiomics baseline has no network to search; cross-validate it with "
            "'python -m mammo_ray.train --config search_spaces/radiomics.yaml'"
        )
    cv = space.settings.cv
    if cfg.input.patches and cv is None:
        raise SearchSpaceError(
            f"{where}: its film classifier is fitted on out-of-fold score maps, so it is "
            "searched cross-validated only: add search: {cv: {folds: 5}}"
        )
    if cfg.input.patches and cv is not None and cv.repeats != 1:
        raise SearchSpaceError(f"{where}: cross-validates once: set search.cv.repeats: 1")


def _read_base(path: Path, data: Mapping[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """The space's training config: ``base`` (a YAML file beside the space), then ``fixed``
    (dotted keys), then the ``--set`` overrides."""
    base: dict[str, Any] = {}
    if data.get("base"):
        if not isinstance(data["base"], str):
            raise SearchSpaceError(f"{path}: base: expected a file name, got {data['base']!r}")
        base_path = (path.parent / data["base"]).resolve()
        try:
            base = load_yaml(base_path)
        except ConfigError as exc:
            raise SearchSpaceError(f"{path}: base: {exc}") from None
    fixed = data.get("fixed") or {}
    if not isinstance(fixed, Mapping):
        raise SearchSpaceError(f"{path}: fixed: expected a mapping of dotted keys, got {fixed!r}")
    for key, value in fixed.items():
        set_dotted(base, key, value)
    try:
        base = apply_overrides(base, overrides)
    except ConfigError as exc:
        raise SearchSpaceError(f"{path}: {exc}") from None
    return base


def _read_searched(
    path: Path, data: Mapping[str, Any]
) -> tuple[tuple[ParamSpec, ...], tuple[tuple[str, tuple[Any, ...]], ...]]:
    """``params`` and ``grid`` of a space, checked: no preprocessing key, ``input_size`` only
    as a choice, and a ``when`` condition only on a param listed before."""
    params_data = data.get("params") or {}
    grid_data = data.get("grid") or {}
    if not isinstance(params_data, Mapping) or not isinstance(grid_data, Mapping):
        raise SearchSpaceError(f"{path}: params and grid must be mappings of dotted keys")
    params = tuple(_param(k, v, f"{path}: params.{k}") for k, v in params_data.items())
    for key, values in grid_data.items():
        if not isinstance(values, list) or not values:
            raise SearchSpaceError(f"{path}: grid.{key}: expected a non-empty list, got {values!r}")
    grid = tuple((k, tuple(v)) for k, v in grid_data.items())
    searched = [p.key for p in params] + [k for k, _ in grid]
    for key in searched:
        if key.startswith("preprocess."):
            raise SearchSpaceError(
                f"{path}: {key}: preprocessing cannot be searched (the cache is built once); "
                "run one search per preprocessing setting"
            )
    names = set(searched)
    for spec in params:
        if spec.key == "input_size" and spec.kind != "choice":
            raise SearchSpaceError(f"{path}: params.input_size: must be a choice, not {spec.kind}")
        for other, _ in spec.when:
            if other not in names or searched.index(other) >= searched.index(spec.key):
                raise SearchSpaceError(
                    f"{path}: params.{spec.key}.when: {other!r} must be a param listed before it"
                )
    return params, grid


def load_search_space(path: str | Path, overrides: Sequence[str] = ()) -> SearchSpace:
    """Read and validate a search space YAML; raise :class:`SearchSpaceError` naming the key.

    ``overrides`` (``key=value``, the ``--set`` flag) edit the fixed part, after ``fixed``.
    """
    path = Path(path)
    try:
        data = load_yaml(path)
    except ConfigError as exc:
        raise SearchSpaceError(str(exc)) from None
    known = {"base", "fixed", "params", "grid", "search", "enqueue_published"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise SearchSpaceError(
            f"{path}: unknown key {unknown[0]!r} (known: {', '.join(sorted(known))})"
        )
    if "params" in data and "grid" in data:
        raise SearchSpaceError(
            f"{path}: give either params (sampled) or grid (all combinations), not both"
        )
    base = _read_base(path, data, overrides)
    params, grid = _read_searched(path, data)
    try:
        settings = from_dict(SearchSettings, data.get("search") or {}, where=f"{path}: search")
    except ConfigError as exc:
        raise SearchSpaceError(str(exc)) from None
    _cross_validate(base, settings.cv, [p.key for p in params] + [k for k, _ in grid], path)
    if grid:
        n_points = math.prod(len(v) for _, v in grid)
        settings = dataclasses.replace(settings, num_samples=n_points)
    enqueue = data.get("enqueue_published", not grid)
    if not isinstance(enqueue, bool):
        raise SearchSpaceError(
            f"{path}: enqueue_published: expected true or false, got {enqueue!r}"
        )
    sizes = [base.get("input_size", 224)] + [FULL_RESOLUTION] * bool(settings.baselines)
    sizes += [v for spec in params if spec.key == "input_size" for v in spec.values]
    sizes += [v for key, values in grid if key == "input_size" for v in values]
    bad = next((v for v in sizes if isinstance(v, bool) or not isinstance(v, int)), None)
    if bad is not None:
        raise SearchSpaceError(f"{path}: input_size: expected whole pixels, got {bad!r}")
    set_dotted(base, "preprocess.sizes", sorted(set(sizes)))
    base_cfg = _completed_base(base, path)
    space = SearchSpace(path, base_cfg, params, grid, settings, enqueue)
    _check_configs(space)
    if enqueue and params:
        space.published_point()
    return space


def _cross_validate(
    base: dict[str, Any], cv: CrossValidationSettings | None, searched: list[str], path: Path
) -> None:
    """With ``search.cv``, turn the base's split into ``cv`` with the space's folds; it must be
    patient-level, keep an outer test part for the best trial's one evaluation, and be the same
    for every trial (racing compares trials fold by fold). Without it, the base cannot be
    ``cv``: only the search trains folds."""
    split = base.get("split") or {}
    if cv is None:
        if split.get("method") == "cv":
            raise SearchSpaceError(
                f"{path}: split.method cv: a search cross-validates its trials with "
                "search.cv: {folds: K}, not with the base's split"
            )
        return
    varied = [k for k in searched if k.startswith("split.") or k == "seed"]
    if varied:
        raise SearchSpaceError(
            f"{path}: search.cv: {varied[0]} is searched, so trials would race on different "
            "folds; fix it in the base or under fixed"
        )
    if split.get("method", "patient") == "paper":
        raise SearchSpaceError(
            f"{path}: search.cv: cross-validation folds are patient-level; the base's split "
            "is the paper's image-level one (use a patient-level base, or drop search.cv)"
        )
    if split.get("test", 0.2) == 0:
        raise SearchSpaceError(
            f"{path}: search.cv: split.test is 0, so nothing is left for the best trial's one "
            "test evaluation; keep an outer test part (e.g. split.test: 0.2)"
        )
    set_dotted(base, "split.method", "cv")
    set_dotted(base, "split.folds", cv.folds)
    set_dotted(base, "split.repeats", cv.repeats)


def _completed_base(base: dict[str, Any], path: Path) -> dict[str, Any]:
    """The base config completed with TrainConfig's defaults (sizes widened later)."""

    try:
        return to_dict(from_dict(TrainConfig, base, where=f"{path}: base+fixed"))
    except ConfigError as exc:
        raise SearchSpaceError(str(exc)) from None


def check_pretrained(space: SearchSpace) -> None:
    """Resolve the weights of every backbone the space can pick, once, before Ray starts.

    Offline without cached ImageNet weights this fails in one line that says how to pass
    ``--set model.pretrained=none`` or ``file:PATH``, instead of failing every trial.
    """

    def values(key: str) -> set[str]:
        searched = {v for s in space.params if s.key == key for v in s.values}
        searched |= {v for k, grid_values in space.grid if k == key for v in grid_values}
        return searched or {space.base["model"][key.split(".")[1]]}

    for backbone in sorted(values("model.backbone")):
        for pretrained in sorted(values("model.pretrained")):
            resolve_pretrained(ModelConfig(backbone=backbone, pretrained=pretrained))
