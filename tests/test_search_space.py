from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from mammo_ray.errors import SearchSpaceError
from mammo_ray.search.space import load_search_space

SPACES = Path(__file__).resolve().parents[1] / "search_spaces"


@pytest.mark.parametrize("name", ["smoke", "default", "ablation"])
def test_shipped_spaces_load(name):
    space = load_search_space(SPACES / f"{name}.yaml")
    assert space.settings.metric == "val_balanced_accuracy"
    assert space.base["input_size"] in space.base["preprocess"]["sizes"]


def test_ablation_is_the_papers_table_4_grid():
    space = load_search_space(SPACES / "ablation.yaml")
    points = space.grid_points()
    assert len(points) == 20 and space.settings.num_samples == 20
    assert {p["model.backbone"] for p in points} == {
        "resnet18",
        "densenet121",
        "vgg16_bn",
        "mobilenetv2_100",
        "mnasnet_100",
    }
    assert {(p["segmentation"], p["augment.mode"]) for p in points} == {
        (False, "none"),
        (False, "x5"),
        (True, "none"),
        (True, "x5"),
    }
    assert space.base["optim"]["lr"] == 0.001 and space.base["split"]["method"] == "patient"


def test_default_space_enqueues_the_published_configuration_first():
    space = load_search_space(SPACES / "default.yaml")
    point = space.published_point()
    assert point["model.backbone"] == "resnet18" and point["optim.lr"] == 0.001
    assert point["augment.mode"] == "x5" and point["segmentation"] is True
    assert "optim.momentum" not in point  # only sampled for sgd
    assert point["input.mode"] == "whole" and point["input_size"] == 224
    assert set(space.base["preprocess"]["sizes"]) == {128, 224, 1024}


def test_define_by_run_samples_conditionals_and_returns_constants():
    space = load_search_space(SPACES / "default.yaml")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    seen_momentum = {True: 0, False: 0}
    for _ in range(30):
        trial = study.ask()
        constants = space.define_by_run(trial)
        assert "model.backbone" not in constants and constants["split.method"] == "cv"
        seen_momentum[trial.params["optim.name"] == "sgd"] += "optim.momentum" in trial.params
        study.tell(trial, 0.5)
    assert seen_momentum[True] > 0 and seen_momentum[False] == 0


def test_patch_trials_keep_the_full_resolution_film_and_whole_ones_draw_theirs():
    space = load_search_space(SPACES / "default.yaml")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    modes = set()
    for _ in range(30):
        trial = study.ask()
        config = space.config_for(trial.params | space.define_by_run(trial))
        mode = trial.params["input.mode"]
        modes.add(mode)
        whole_only = {"input_size", "segmentation", "augment.mode"} & set(trial.params)
        assert whole_only == (
            {"input_size", "segmentation", "augment.mode"} if mode == "whole" else set()
        )
        if mode != "whole":
            assert config["input_size"] == 1024 and not config["segmentation"]
            assert config["augment"]["mode"] == "none" and config["patch"]["size"] == 128
        study.tell(trial, 0.5)
    assert modes == {"whole", "patch", "patch+bilateral"}


def test_a_condition_may_allow_several_values(tmp_path):
    text = (
        "fixed:\n  segmentation: false\n  augment.mode: none\n"
        "params:\n  input.mode: {choice: [whole, patch, patch+bilateral]}\n"
        "  patch.size: {choice: [64, 96], when: {input.mode: [patch, patch+bilateral]}}\n"
        "search: {cv: {folds: 3}}\nenqueue_published: false\n"
    )
    space = load_search_space(_write(tmp_path, text))
    spec = space.params[1]
    assert spec.active({"input.mode": "patch+bilateral"}) and spec.active({"input.mode": "patch"})
    assert not spec.active({"input.mode": "whole"})


def test_config_for_sets_dotted_keys_and_caps_epochs():
    space = load_search_space(SPACES / "smoke.yaml")
    cfg = space.config_for({"model.backbone": "mobilenetv2_100", "optim.lr": 0.002})
    assert cfg["model"]["backbone"] == "mobilenetv2_100" and cfg["optim"]["lr"] == 0.002
    assert cfg["epochs"] == 2 and space.base["model"]["backbone"] == "resnet18"
    assert space.config_for({}, max_epochs=1)["epochs"] == 1


def _write(tmp_path, text: str) -> Path:
    path = tmp_path / "space.yaml"
    path.write_text(f"base: {SPACES / 'published_patient.yaml'}\n" + text)
    return path


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("params:\n  model.backbone: {choice: [resnet18, alexnet]}\n", "alexnet"),
        ("params:\n  optim.lr: {loguniform: [0.1, 0.01]}\n", "low must be < high"),
        ("params:\n  optim.lr: {loguniform: [0, 0.01]}\n", "must be > 0"),
        ("params:\n  optim.lrr: {choice: [0.1]}\n", "unknown key 'lrr'"),
        ("params:\n  optim.lr: {normal: [0, 1]}\n", "exactly one of"),
        ("params:\n  preprocess.enhance.method: {choice: [he, paper]}\n", "cannot be searched"),
        ("params:\n  input_size: {int: [64, 128]}\n", "must be a choice"),
        (
            "params:\n  optim.momentum: {uniform: [0.8, 0.9], when: {optim.name: sgd}}\n",
            "must be a param listed before it",
        ),
        ("search:\n  metric: test_accuracy\n", "validation metric"),
        ("searh:\n  metric: val_accuracy\n", "unknown key 'searh'"),
        ("params:\n  batch_size: {choice: [8, 32]}\n", "published value 16"),
        ("grid:\n  segmentation: []\n", "non-empty list"),
        ("search:\n  time_budget_s: -60\n", "time_budget_s must be > 0 seconds"),
        ("search:\n  max_failures: -1\n", "max_failures must be >= 0"),
        (
            "fixed:\n  input.mode: radiomics\n  input_size: 1024\n  segmentation: false\n"
            "  preprocess.sizes: [1024]\n",
            "input.mode radiomics: the radiomics baseline has no network to search",
        ),
        (
            "fixed:\n  input.mode: patch\n  segmentation: false\n  augment.mode: none\n",
            "input.mode patch: .* searched cross-validated only: add search: {cv",
        ),
        (
            "fixed:\n  segmentation: false\n  augment.mode: none\n"
            "params:\n  input.mode: {choice: [whole, patch+bilateral]}\n"
            "search:\n  cv: {folds: 3, repeats: 2}\n",
            "input.mode patch\\+bilateral: cross-validates once",
        ),
    ],
)
def test_bad_spaces_name_the_key(tmp_path, text, message):
    with pytest.raises(SearchSpaceError, match=message):
        load_search_space(_write(tmp_path, text))


def test_missing_space_file(tmp_path):
    with pytest.raises(SearchSpaceError, match="config file not found"):
        load_search_space(tmp_path / "nope.yaml")


def test_sampler_and_trial_epoch_budget_settings(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text(
        f"base: {SPACES / 'published_patient.yaml'}\n"
        "params:\n  optim.lr: {loguniform: [1.0e-4, 1.0e-2]}\n"
        "search: {sampler: random, trial_epoch_budget: 12}\n"
    )
    settings = load_search_space(path).settings
    assert settings.sampler == "random" and settings.trial_epoch_budget == 12
    assert load_search_space(SPACES / "default.yaml").settings.sampler == "tpe"
    for bad, message in (("sampler: grid", "sampler"), ("trial_epoch_budget: 0", ">= 1")):
        path.write_text(f"base: {SPACES / 'published_patient.yaml'}\nsearch: {{{bad}}}\n")
        with pytest.raises(SearchSpaceError, match=message):
            load_search_space(path)


def test_trial_epoch_budget_stops_every_trial_once_spent():
    from mammo_ray.search.tune import TrialEpochBudget

    budget = TrialEpochBudget(3)
    assert [budget("a", {}), budget("b", {})] == [False, False] and not budget.stop_all()
    assert budget("a", {}) and budget.stop_all()
    with pytest.raises(ValueError, match=">= 1"):
        TrialEpochBudget(0)


def test_a_radiomics_baseline_adds_the_full_resolution_film_to_the_cache(tmp_path):
    text = "search:\n  cv: {folds: 3}\n  baselines: [radiomics]\n"
    space = load_search_space(_write(tmp_path, text))
    assert space.base["preprocess"]["sizes"] == [224, 1024]
    config = space.baseline_config("radiomics")
    assert config["input"]["mode"] == "radiomics" and config["input_size"] == 1024
    assert config["split"]["method"] == "cv" and config["split"]["folds"] == 3
    assert space.base["input"]["mode"] == "whole"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("search:\n  baselines: [radiomics]\n", "baselines are cross-validated on the trials'"),
        ("search:\n  cv: {folds: 3}\n  baselines: [hog]\n", r"baselines\[0\]: 'hog' is not"),
    ],
)
def test_bad_baselines_are_one_error(tmp_path, text, message):
    with pytest.raises(SearchSpaceError, match=message):
        load_search_space(_write(tmp_path, text))
