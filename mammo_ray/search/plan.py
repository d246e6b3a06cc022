"""A search that plans to its time budget: trial times from measured throughput, and how many
trials of how many epochs fit.

Each kind of trial the space can draw (its input mode, backbone, model input size and
augmentation; :func:`trial_kinds`, with the probability of drawing it) trains and predicts
images at the rates :class:`~mammo_ray.learn.throughput.ThroughputCache` measured on this
machine. Per epoch of one fold (:func:`epoch_seconds`):

    whole film:  train_films x copies / train_rate + val_films / predict_rate
    patch:       (lesions x positives + films x (negatives + hard)) / train_rate     (training)
                 + train_films x windows / predict_rate                   (hard-negative mining)
                 + (val lesions x positives + val films x negatives) / predict_rate (validation)

with ``copies`` 1 + the x5 copies, ``windows`` the film's windows at the patch stride that lie in
the breast (``breast_fraction x ((input - patch) / stride + 1)^2``); a patch fold then maps its
held-out films once (twice the windows for ``patch+bilateral``). A trial costs ``folds x
(epochs x epoch + after)``, or ``epochs x epoch`` without ``cv``. ASHA (grace ``g``, reduction
``eta``, last rung ``max_t``) lets ``1 / eta^k`` of the trials past rung ``k``, so a trial runs
``r_0 + sum_k eta^-(k+1) (r_(k+1) - r_k)`` rungs on average (:func:`asha_expected_units`; Li et
al., MLSys 2020). The published trial runs first and whole; the rest share the budget:

    trials = 1 + (budget x concurrent - published) / expected trial

With ``search.plan``, ``max_epochs`` is the largest that fits :data:`MIN_TRIALS` trials of
mean time, and ``num_samples`` the trials of mean or of median time
(:func:`median_trial_seconds`), whichever more, that then fit, the budget stopping the search
if slow kinds come up (each at most its value in the space), unless the command line fixed
them (``--max-epochs``, ``--num-samples``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from mammo_ray.config import from_dict
from mammo_ray.learn.config import TrainConfig
from mammo_ray.learn.throughput import Throughput, ThroughputCache
from mammo_ray.learn.trial import trial_arrays
from mammo_ray.preprocess.prepared import PreparedData
from mammo_ray.search.space import SearchSettings, SearchSpace

__all__ = [
    "MIN_TRIALS",
    "SPEED_KEYS",
    "TrialKind",
    "trial_kinds",
    "published_kind",
    "FoldFilms",
    "fold_films",
    "epoch_seconds",
    "after_fold_seconds",
    "asha_expected_units",
    "median_trial_seconds",
    "KindCost",
    "Plan",
    "make_plan",
    "plan_lines",
    "plan_pairs",
    "plan_search",
    "planned_settings",
]

MIN_TRIALS = 4
"""The planner shortens every trial's epochs until this many trials fit the budget (the
published one and three searched)."""

TABLE_ROWS = 10
"""Kinds of trial the printed plan lists, those that take the most of the expected time."""

SPEED_KEYS = (
    "input.mode",
    "model.backbone",
    "input_size",
    "augment.mode",
    "patch.size",
    "patch.stride",
)
"""The searched keys that change a trial's time by more than a few per cent."""


@dataclasses.dataclass(frozen=True)
class TrialKind:
    """One kind of trial, as far as its time goes: its config and the chance of drawing it."""

    config: TrainConfig
    probability: float

    @property
    def pair(self) -> tuple[str, int]:
        """(backbone, model input px): the film size, or the patch size for patch modes."""
        cfg = self.config
        size = cfg.input_size if cfg.input.mode == "whole" else cfg.patch.size
        return cfg.model.backbone, size

    @property
    def label(self) -> str:
        cfg = self.config
        augment = f", augment {cfg.augment.mode}" if cfg.input.mode == "whole" else ""
        return f"{cfg.input.mode} {cfg.model.backbone} {self.pair[1]} px{augment}"


def _points(space: SearchSpace) -> Iterator[tuple[dict[str, Any], float]]:
    """Every combination of the :data:`SPEED_KEYS` the space can draw, with its probability
    (uniform over each choice, both ends of a range; conditions kept)."""
    if space.grid:
        points = space.grid_points()
        yield from ((point, 1.0 / len(points)) for point in points)
        return
    specs = [spec for spec in space.params if spec.key in SPEED_KEYS]

    def walk(index: int, point: dict[str, Any], chance: float) -> Iterator[tuple[dict, float]]:
        if index == len(specs):
            yield dict(point), chance
            return
        spec = specs[index]
        if not spec.active(point):
            yield from walk(index + 1, point, chance)
            return
        values = spec.candidates()
        for value in values:
            yield from walk(index + 1, {**point, spec.key: value}, chance / len(values))

    yield from walk(0, {}, 1.0)


def _config(space: SearchSpace, point: Mapping[str, Any], epochs: int) -> TrainConfig:
    return from_dict(TrainConfig, space.config_for(point, epochs), where=f"{space.path}: plan")


def trial_kinds(space: SearchSpace, epochs: int) -> list[TrialKind]:
    """The kinds of trial the space draws (:func:`_points`), ``epochs`` at most each."""
    return [TrialKind(_config(space, p, epochs), chance) for p, chance in _points(space)]


def published_kind(space: SearchSpace, epochs: int) -> TrialKind | None:
    """The published trial's kind, or None when the space does not enqueue it."""
    if not (space.enqueue_published and space.params):
        return None
    return TrialKind(_config(space, space.published_point(), epochs), 1.0)


@dataclasses.dataclass(frozen=True)
class FoldFilms:
    """What one fold trains on and validates on: films, MIAS lesions (circles) in them, and the
    mean share of a film inside the breast."""

    train: int
    val: int
    train_lesions: int
    val_lesions: int
    breast_fraction: float


def fold_films(cfg: TrainConfig, data: PreparedData) -> FoldFilms:
    """:class:`FoldFilms` of the first fold (or the one split) of ``cfg`` on ``data``."""
    arrays = trial_arrays(cfg, data, 0 if cfg.split.method == "cv" else None)
    lesions = np.array([len(record.rois) for record in data.manifest.records])
    fractions = [f for f in data.manifest.stats.get("breast_fraction", []) if f is not None]
    train, val = np.asarray(arrays.split.train), np.asarray(arrays.split.val)
    source = np.asarray(arrays.source_index)
    return FoldFilms(
        train=len(train),
        val=len(val),
        train_lesions=int(lesions[source[train]].sum()),
        val_lesions=int(lesions[source[val]].sum()),
        breast_fraction=float(np.mean(fractions)) if fractions else 0.5,
    )


def _windows(cfg: TrainConfig, breast_fraction: float) -> float:
    """Windows a score map runs on one film: those of the grid at ``patch.stride`` in the
    breast."""
    per_side = (cfg.input_size - cfg.patch.size) // cfg.patch.stride + 1
    return breast_fraction * per_side**2


def epoch_seconds(cfg: TrainConfig, films: FoldFilms, rate: Throughput) -> float:
    """Seconds of one epoch of one fold of ``cfg`` (the module's formula)."""
    if cfg.input.mode == "whole":
        copies = 1 + cfg.augment.copies if cfg.augment.mode == "x5" else 1
        return films.train * copies / rate.train_images_per_s + (
            films.val / rate.predict_images_per_s
        )
    sampler = cfg.patch.sampler
    hard = cfg.patch.hard_negatives_per_film
    patches = films.train_lesions * sampler.positives_per_lesion + films.train * (
        sampler.negatives_per_film + hard
    )
    mining = films.train * _windows(cfg, films.breast_fraction) if hard else 0.0
    validation = films.val_lesions * sampler.positives_per_lesion + (
        films.val * sampler.negatives_per_film
    )
    return patches / rate.train_images_per_s + (mining + validation) / rate.predict_images_per_s


def after_fold_seconds(cfg: TrainConfig, films: FoldFilms, rate: Throughput) -> float:
    """Seconds a patch fold spends mapping its held-out films (0 for whole-film models)."""
    if cfg.input.mode == "whole":
        return 0.0
    maps = 2 if cfg.input.mode == "patch+bilateral" else 1
    return maps * films.val * _windows(cfg, films.breast_fraction) / rate.predict_images_per_s


def asha_expected_units(max_t: int, grace: int, eta: int, asha: bool = True) -> float:
    """Rungs (epochs, or folds with ``cv``) one trial runs on average under ASHA: rungs at
    ``grace x eta^k`` below ``max_t`` and ``max_t`` itself, ``1 / eta`` of the trials going on
    past each; ``max_t`` without ASHA."""
    if not asha:
        return float(max_t)
    rungs = [grace * eta**k for k in range(64) if grace * eta**k < max_t] + [max_t]
    return rungs[0] + sum(
        eta ** -(k + 1) * (rungs[k + 1] - rungs[k]) for k in range(len(rungs) - 1)
    )


@dataclasses.dataclass(frozen=True)
class KindCost:
    """One kind's times: an epoch of one fold, a whole trial, and a trial under ASHA."""

    label: str
    probability: float
    epoch_s: float
    full_s: float
    expected_s: float


@dataclasses.dataclass(frozen=True)
class Plan:
    """The plan of a search; ``fixed``: the settings the command line fixed."""

    budget_s: float | None
    concurrent: int
    epochs: int
    num_samples: int
    published_s: float | None
    expected_trial_s: float
    trials_fit: float | None
    trials_fit_median: float | None
    costs: tuple[KindCost, ...]
    fixed: tuple[str, ...]
    advice: tuple[str, ...]

    def record(self) -> dict[str, Any]:
        """What ``search_state.json`` and ``search.json`` keep of the plan."""
        return {
            "max_epochs": self.epochs,
            "num_samples": self.num_samples,
            "budget_s": self.budget_s,
            "expected_trial_s": self.expected_trial_s,
            "published_s": self.published_s,
            "trials_fit": self.trials_fit,
            "trials_fit_median": self.trials_fit_median,
        }

    def apply(self, settings: SearchSettings) -> SearchSettings:
        """``settings`` with the planned ``max_epochs`` and ``num_samples``."""
        return planned_settings(settings, max_epochs=self.epochs, num_samples=self.num_samples)


def planned_settings(
    settings: SearchSettings, *, max_epochs: int, num_samples: int
) -> SearchSettings:
    """``settings`` with ``max_epochs`` and ``num_samples`` of a plan (ASHA's grace period
    clipped to the last rung, which fewer epochs may lower)."""
    planned = dataclasses.replace(
        settings, max_epochs=max_epochs, num_samples=num_samples, grace_period=1
    )
    return dataclasses.replace(planned, grace_period=min(settings.grace_period, planned.max_t))


def _costs(
    kinds: list[TrialKind],
    films: FoldFilms,
    rates: Mapping[tuple[str, int], Throughput],
    settings: SearchSettings,
) -> list[KindCost]:
    folds = None if settings.cv is None else settings.max_t
    asha = settings.scheduler == "asha"
    costs = []
    for kind in kinds:
        rate = rates[kind.pair]
        epoch = epoch_seconds(kind.config, films, rate)
        epochs = kind.config.epochs
        if folds is None:
            full = epochs * epoch
            expected = (
                asha_expected_units(
                    epochs, min(settings.grace_period, epochs), settings.reduction_factor, asha
                )
                * epoch
            )
        else:
            fold = epochs * epoch + after_fold_seconds(kind.config, films, rate)
            full = folds * fold
            expected = (
                asha_expected_units(folds, settings.grace_period, settings.reduction_factor, asha)
                * fold
            )
        costs.append(KindCost(kind.label, kind.probability, epoch, full, expected))
    return costs


def median_trial_seconds(costs: list[KindCost]) -> float:
    """The median of the kinds' times under ASHA, weighted by their chances: half the trials
    drawn take longer, half less. The mean is pulled up by rare slow kinds, so sampling only
    the trials the mean fits leaves the budget unused when the common, faster kinds come up."""
    ordered = sorted(costs, key=lambda c: c.expected_s)
    total, running = sum(c.probability for c in ordered), 0.0
    for cost in ordered:
        running += cost.probability
        if running >= total / 2:
            return cost.expected_s
    return ordered[-1].expected_s


def make_plan(
    space: SearchSpace,
    settings: SearchSettings,
    films: FoldFilms,
    rates: Mapping[tuple[str, int], Throughput],
    *,
    concurrent: int,
    fixed: tuple[str, ...] = (),
) -> Plan:
    """The :class:`Plan` of ``space`` under ``settings`` (the module's arithmetic).

    ``rates`` must hold every (backbone, size) of :func:`trial_kinds` (``TrialKind.pair``).
    Without ``search.plan`` or a time budget, the space's settings are kept and only timed.
    """
    budget = settings.time_budget_s
    planning = settings.plan and budget is not None

    def fit(epochs: int) -> tuple[float | None, float, float | None, list[KindCost]]:
        costs = _costs(trial_kinds(space, epochs), films, rates, settings)
        expected = sum(c.probability * c.expected_s for c in costs)
        published = published_kind(space, epochs)
        first = None if published is None else _costs([published], films, rates, settings)[0].full_s
        if budget is None:
            return None, expected, first, costs
        room = max(0.0, budget * concurrent - (first or 0.0))
        return (first is not None) + room / expected, expected, first, costs

    epochs = settings.max_epochs
    if planning and "max_epochs" not in fixed:
        epochs = next((e for e in range(epochs, 0, -1) if (fit(e)[0] or 0.0) >= MIN_TRIALS), 1)
    trials, expected, published, costs = fit(epochs)
    samples, typical = settings.num_samples, None
    if budget is not None and trials is not None:
        room = max(0.0, budget * concurrent - (published or 0.0))
        typical = (published is not None) + room / median_trial_seconds(costs)
    if planning and "num_samples" not in fixed and typical is not None:
        samples = max(1, min(settings.num_samples, math.ceil(max(trials, typical))))
    advice = _advice(space, settings, trials, expected, published, concurrent, costs)
    return Plan(
        budget_s=budget,
        concurrent=concurrent,
        epochs=epochs,
        num_samples=samples if planning else settings.num_samples,
        published_s=published,
        expected_trial_s=expected,
        trials_fit=trials,
        trials_fit_median=typical,
        costs=tuple(costs),
        fixed=fixed,
        advice=tuple(advice),
    )


def _advice(
    space: SearchSpace,
    settings: SearchSettings,
    trials: float | None,
    expected: float,
    published: float | None,
    concurrent: int,
    costs: list[KindCost],
) -> list[str]:
    """What to change for more trials, when fewer than :data:`MIN_TRIALS` fit."""
    if trials is None or trials >= MIN_TRIALS:
        return []
    need = ((published or 0.0) + (MIN_TRIALS - (published is not None)) * expected) / concurrent
    advice = [f"--time-budget {math.ceil(need / 60) * 60} fits {MIN_TRIALS} trials"]
    slow = max(costs, key=lambda c: c.probability * c.expected_s)
    slower = (
        "a lighter model.backbone; patch.hard_negatives_per_film: 0 skips mapping the "
        "training films every epoch"
        if slow.label.startswith("patch")
        else "input_size 128, augment.mode none, a lighter model.backbone"
    )
    advice.append(
        f"the most time goes to {slow.label} ({slow.expected_s / 60:.1f} min a trial): narrow "
        f"the space's choices ({slower})"
    )
    advice.append("--gpus-per-trial 1 (or 0.5, two trials per GPU) on a machine with a GPU")
    return advice


def plan_lines(plan: Plan) -> list[str]:
    """The plan in words, for the terminal: a table of the kinds, then what fits."""
    lines = [f"{'trial kind':<48} {'chance':>6} {'epoch s':>8} {'trial min':>9} {'ASHA min':>8}"]
    by_share = sorted(plan.costs, key=lambda c: -c.probability * c.expected_s)
    for cost in by_share[:TABLE_ROWS]:
        lines.append(
            f"{cost.label:<48} {cost.probability:>6.1%} {cost.epoch_s:>8.1f} "
            f"{cost.full_s / 60:>9.1f} {cost.expected_s / 60:>8.1f}"
        )
    rest = by_share[TABLE_ROWS:]
    if rest:
        share = sum(c.probability * c.expected_s for c in rest) / plan.expected_trial_s
        lines.append(f"({len(rest)} more kinds, {share:.0%} of the expected time)")
    head = f"{plan.epochs} epochs per trial" + (" (fixed)" if "max_epochs" in plan.fixed else "")
    published = (
        "" if plan.published_s is None else f"; the published trial {plan.published_s / 60:.1f} min"
    )
    lines.append(
        f"plan: {head}; a trial takes {plan.expected_trial_s / 60:.1f} min on average under "
        f"ASHA{published}; {plan.concurrent} at a time"
    )
    if plan.budget_s is None:
        total = (plan.published_s or 0.0) + plan.num_samples * plan.expected_trial_s
        lines.append(
            f"no time budget: {plan.num_samples} trials take about "
            f"{total / plan.concurrent / 60:.0f} min"
        )
        return lines
    lines.append(
        f"the {plan.budget_s / 60:.0f}-minute budget fits about {plan.trials_fit:.1f} trials at "
        f"their mean time, {plan.trials_fit_median:.1f} at their median; the search samples "
        f"{plan.num_samples}"
        + (" (fixed)" if "num_samples" in plan.fixed else " (the budget stops it)")
    )
    lines += [f"  for more: {advice}" for advice in plan.advice]
    return lines


def plan_pairs(space: SearchSpace, epochs: int) -> set[tuple[str, int]]:
    """Every (backbone, model input px) the space's trials, the published one included, use."""
    kinds = trial_kinds(space, epochs) + [k for k in [published_kind(space, epochs)] if k]
    return {kind.pair for kind in kinds}


def plan_search(
    space: SearchSpace,
    settings: SearchSettings,
    data: PreparedData,
    cache: ThroughputCache,
    *,
    concurrent: int,
    fixed: tuple[str, ...] = (),
) -> Plan:
    """Measure (or read from ``cache``) the throughput of every pair of :func:`plan_pairs`,
    then :func:`make_plan` on the first fold's films of the space's base config."""
    base = from_dict(TrainConfig, space.config_for({}), where=f"{space.path}: base")
    pairs = plan_pairs(space, settings.max_epochs)
    missing = len(pairs - set(cache.cached(base.batch_size)))
    if missing:
        print(
            f"timing {missing} (backbone, input size) pairs on this machine, a few training "
            f"steps each (once per machine: {cache.path})",
            flush=True,
        )
    rates = cache.get(pairs, base.batch_size, progress=lambda text: print(f"  {text}", flush=True))
    return make_plan(
        space, settings, fold_films(base, data), rates, concurrent=concurrent, fixed=fixed
    )
