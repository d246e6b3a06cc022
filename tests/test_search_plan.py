"""The search planner's arithmetic on synthetic throughputs: ASHA's expected rungs, epoch and
fold times per input mode, the kinds of trial a space draws, and what fits a budget."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest
import torch

from mammo_ray.config import from_dict
from mammo_ray.errors import ConfigError
from mammo_ray.learn.config import TrainConfig
from mammo_ray.learn.throughput import Throughput, ThroughputCache, measure_throughput
from mammo_ray.report.tables import plan_check
from mammo_ray.search.plan import (
    MIN_TRIALS,
    FoldFilms,
    KindCost,
    after_fold_seconds,
    asha_expected_units,
    epoch_seconds,
    make_plan,
    median_trial_seconds,
    plan_lines,
    plan_pairs,
    planned_settings,
    trial_kinds,
)
from mammo_ray.search.space import load_search_space

SPACES = Path(__file__).parent.parent / "search_spaces"
FILMS = FoldFilms(train=100, val=20, train_lesions=40, val_lesions=8, breast_fraction=0.5)


def rate(train: float = 50.0, predict: float = 200.0) -> Throughput:
    return Throughput("resnet18", 224, 16, train, predict)


def config(**values) -> TrainConfig:
    return from_dict(TrainConfig, values, where="test")


def uniform_rates(space, epochs: int, train: float = 50.0) -> dict:
    return {pair: rate(train) for pair in plan_pairs(space, epochs)}


def test_asha_runs_the_first_rung_always_and_a_third_of_trials_further_each_rung():
    assert asha_expected_units(5, 1, 3) == pytest.approx(1 + 2 / 3 + 2 / 9)
    assert asha_expected_units(6, 1, 2) == pytest.approx(1 + 1 / 2 + 2 / 4 + 2 / 8)
    assert asha_expected_units(5, 5, 3) == 5
    assert asha_expected_units(5, 1, 3, asha=False) == 5


def test_the_median_trial_is_the_one_half_the_draws_stay_under():
    costs = [
        KindCost("fast", 0.6, 1.0, 10.0, 10.0),
        KindCost("slow", 0.1, 1.0, 900.0, 900.0),
        KindCost("middle", 0.3, 1.0, 60.0, 60.0),
    ]
    assert median_trial_seconds(costs) == 10.0
    assert median_trial_seconds([*costs[1:], KindCost("fast", 0.3, 1, 10, 10)]) == 60.0


def test_a_whole_film_epoch_trains_every_copy_and_predicts_the_validation_films():
    plain = config(input_size=224, augment={"mode": "none"})
    x5 = config(input_size=224, augment={"mode": "x5", "copies": 5})
    assert epoch_seconds(plain, FILMS, rate()) == pytest.approx(100 / 50 + 20 / 200)
    assert epoch_seconds(x5, FILMS, rate()) == pytest.approx(600 / 50 + 20 / 200)
    assert after_fold_seconds(x5, FILMS, rate()) == 0


def test_a_patch_epoch_trains_patches_mines_the_training_films_and_maps_the_held_out_ones():
    cfg = config(
        input={"mode": "patch"},
        input_size=1024,
        preprocess={"sizes": [1024]},
        segmentation=False,
        augment={"mode": "none"},
        patch={
            "size": 128,
            "stride": 64,
            "sampler": {"positives_per_lesion": 16, "negatives_per_film": 8},
            "hard_negatives_per_film": 4,
        },
    )
    windows = 0.5 * 15**2
    patches = 40 * 16 + 100 * (8 + 4)
    validation = 8 * 16 + 20 * 8
    assert epoch_seconds(cfg, FILMS, rate()) == pytest.approx(
        patches / 50 + (100 * windows + validation) / 200
    )
    assert after_fold_seconds(cfg, FILMS, rate()) == pytest.approx(20 * windows / 200)
    bilateral_input = dataclasses.replace(cfg.input, mode="patch+bilateral")
    bilateral = dataclasses.replace(cfg, input=bilateral_input)
    assert after_fold_seconds(bilateral, FILMS, rate()) == pytest.approx(2 * 20 * windows / 200)


def test_the_default_space_draws_forty_kinds_whose_chances_sum_to_one():
    space = load_search_space(SPACES / "default.yaml")
    kinds = trial_kinds(space, 6)
    assert len(kinds) == 5 * 2 * 3 + 5 * 2
    assert sum(k.probability for k in kinds) == pytest.approx(1.0)
    patch = [k for k in kinds if k.config.input.mode != "whole"]
    assert {k.pair[1] for k in patch} == {128} and {k.config.epochs for k in kinds} == {6}
    assert {k.pair[1] for k in kinds if k.config.input.mode == "whole"} == {128, 224}


def test_a_large_budget_keeps_the_space_and_a_small_one_shortens_epochs_and_trials():
    space = load_search_space(SPACES / "default.yaml", ["model.pretrained=none"])
    settings = space.settings
    assert settings.plan
    rates = uniform_rates(space, settings.max_epochs)
    roomy = make_plan(
        space, dataclasses.replace(settings, time_budget_s=1e7), FILMS, rates, concurrent=1
    )
    assert (roomy.epochs, roomy.num_samples) == (settings.max_epochs, settings.num_samples)
    assert roomy.advice == ()
    tight = make_plan(space, settings, FILMS, uniform_rates(space, 6, train=1.0), concurrent=1)
    assert tight.epochs == 1 and tight.trials_fit < MIN_TRIALS
    assert tight.num_samples >= 1 and tight.published_s > 0
    assert any("--time-budget" in a for a in tight.advice)
    assert tight.apply(settings).max_epochs == 1
    text = "\n".join(plan_lines(tight))
    assert "published trial" in text and "for more: --time-budget" in text


def test_epochs_are_the_most_that_fit_min_trials_and_the_samples_what_then_fits():
    space = load_search_space(SPACES / "default.yaml", ["model.pretrained=none"])
    rates = uniform_rates(space, 6, train=20.0)
    probe = make_plan(space, space.settings, FILMS, rates, concurrent=1)
    if probe.epochs < space.settings.max_epochs:
        longer = make_plan(
            space,
            dataclasses.replace(space.settings, max_epochs=probe.epochs + 1),
            FILMS,
            rates,
            concurrent=1,
            fixed=("max_epochs",),
        )
        assert longer.trials_fit < MIN_TRIALS
    assert probe.trials_fit >= MIN_TRIALS or probe.epochs == 1
    most = max(probe.trials_fit, probe.trials_fit_median)
    assert probe.num_samples == min(space.settings.num_samples, math.ceil(most))
    doubled = make_plan(space, space.settings, FILMS, rates, concurrent=2)
    assert doubled.epochs > probe.epochs and doubled.trials_fit >= MIN_TRIALS


def test_fewer_planned_epochs_clip_the_grace_period_of_a_space_without_folds():
    space = load_search_space(SPACES / "smoke.yaml")
    settings = dataclasses.replace(space.settings, max_epochs=4, grace_period=3)
    planned = planned_settings(settings, max_epochs=2, num_samples=5)
    assert (planned.max_epochs, planned.num_samples, planned.grace_period) == (2, 5, 2)
    assert planned_settings(settings, max_epochs=4, num_samples=5).grace_period == 3


def test_the_plan_is_checked_against_the_trials_measured_seconds():
    plan = {"published_s": 120.0, "expected_trial_s": 300.0}
    trials = [{"seconds": 180.0}, {"seconds": 240.0}, {"seconds": 360.0}, {"seconds": None}]
    assert plan_check(plan, trials) == (
        "plan against measured: the published trial took 3.0 min (planned 2.0); "
        "the other 2 trials 5.0 min on average (planned 5.0 under ASHA)"
    )
    assert plan_check(plan, [{"seconds": None}]) is None


def test_fixed_settings_and_a_space_without_plan_are_only_timed():
    space = load_search_space(SPACES / "default.yaml", ["model.pretrained=none"])
    rates = uniform_rates(space, 6, train=1.0)
    fixed = make_plan(
        space, space.settings, FILMS, rates, concurrent=1, fixed=("max_epochs", "num_samples")
    )
    assert (fixed.epochs, fixed.num_samples) == (6, space.settings.num_samples)
    assert "(fixed)" in "\n".join(plan_lines(fixed))
    unplanned = dataclasses.replace(space.settings, plan=False, time_budget_s=None)
    timed = make_plan(space, unplanned, FILMS, rates, concurrent=1)
    assert timed.trials_fit is None and timed.epochs == 6
    assert "no time budget" in "\n".join(plan_lines(timed))


def test_throughput_is_measured_once_per_machine_and_read_back(tmp_path):
    cache = ThroughputCache(tmp_path / "throughput.json", torch.device("cpu"), threads=1)
    told = []
    first = cache.get([("resnet18", 32)], 2, progress=told.append)
    assert told == ["measuring resnet18 at 32 px"] and cache.cached(2) == [("resnet18", 32)]
    again = ThroughputCache(tmp_path / "throughput.json", torch.device("cpu"), threads=1)
    assert again.get([("resnet18", 32)], 2, progress=told.append) == first
    assert len(told) == 1 and first[("resnet18", 32)].train_images_per_s > 0
    other = ThroughputCache(tmp_path / "throughput.json", torch.device("cpu"), threads=3)
    assert other.cached(2) == []


def test_a_bad_throughput_cache_is_one_error_naming_the_file(tmp_path):
    path = tmp_path / "throughput.json"
    path.write_text("[1, 2]")
    with pytest.raises(ConfigError, match="throughput.json: not a throughput cache"):
        ThroughputCache(path, torch.device("cpu"), threads=1).cached(8)
    cache = ThroughputCache(path, torch.device("cpu"), threads=1)
    path.write_text(json.dumps({cache.key: {"resnet18@32/b2": "fast"}}))
    with pytest.raises(ConfigError, match="resnet18@32/b2 is not"):
        cache.get([("resnet18", 32)], 2)


def test_measured_throughput_is_a_rate_of_the_pair_it_was_asked_for():
    measured = measure_throughput("mobilenetv2_100", 32, batch_size=4, steps=1)
    assert (measured.backbone, measured.size, measured.batch_size) == ("mobilenetv2_100", 32, 4)
    assert 0 < measured.train_images_per_s < float("inf")
    assert 0 < measured.predict_images_per_s < float("inf")
