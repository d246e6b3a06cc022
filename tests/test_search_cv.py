"""Tests of the cross-validated search (issue 9): a trial per configuration that trains its
patient folds one after another, ASHA racing trials over folds, the fold ensemble of the best
trial evaluated once on the outer test part, and a trial resumed at its next fold.

The integration tests run on the synthetic 40-film archive at 32 px with a real local Ray and
MLflow store: ResNet-18 from random weights learns its normal/abnormal cue in 2 epochs (out of
fold balanced accuracy ~0.67), while the same network with every weight zero cannot learn (its
features are 0 whatever the film, so it predicts one class: balanced accuracy exactly 1/3).
"""

from __future__ import annotations

import csv
import json
import shutil
import signal
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from mlflow.tracking import MlflowClient

from mammo_ray.cli import run_cli
from mammo_ray.config import from_dict, load_yaml, set_dotted
from mammo_ray.data.mias_info import LABELS
from mammo_ray.errors import CheckpointError, ConfigError, SearchSpaceError
from mammo_ray.learn.checkpoint import load_checkpoint
from mammo_ray.learn.config import TrainConfig
from mammo_ray.learn.cv import FoldResult
from mammo_ray.learn.fold_race import FoldProgress, load_progress, save_progress
from mammo_ray.learn.models import ModelConfig, build_model
from mammo_ray.learn.trial import (
    STATE_FILE,
    held_out_arrays,
    load_training_state,
    train_trial,
    trial_arrays,
    validation_metrics,
)
from mammo_ray.preprocess.prepared import prepare_data
from mammo_ray.search.command import main
from mammo_ray.search.space import load_search_space
from mammo_ray.search.tune import TrialEpochBudget
from tests.test_search import PUBLISHED_PATIENT, _Driver, children_of, search_argv
from tests.test_train_cli import prepared_synthetic

FOLDS = 3


def _space(folder: Path, grid: str, epochs: int = 2, extra: str = "") -> Path:
    space = folder / "space.yaml"
    space.write_text(
        f"base: {PUBLISHED_PATIENT}\n"
        "fixed: {model.backbone: resnet18, model.pretrained: none, input_size: 32,"
        f" epochs: {epochs}, augment.mode: none, batch_size: 8, seed: 2}}\n"
        f"grid:\n{grid}"
        f"search: {{max_epochs: {epochs}, max_concurrent: 1, reduction_factor: 2,"
        f" cv: {{folds: {FOLDS}}}{extra}}}\n"
    )
    return space


@pytest.fixture(scope="module")
def raced(ray_local, tmp_path_factory) -> dict:
    """A grid of two trials, a learning one first and one that cannot learn, raced over 3
    folds (ASHA, reduction factor 2)."""
    folder = tmp_path_factory.mktemp("raced")
    archive, cache = prepared_synthetic(folder)
    state = timm.create_model("resnet18", in_chans=1, num_classes=3).state_dict()
    torch.save({k: torch.zeros_like(v) for k, v in state.items()}, folder / "zero.pth")
    space = _space(folder, f"  model.pretrained: [none, 'file:{folder / 'zero.pth'}']\n")
    out = folder / "search"
    argv = search_argv(space, archive, out, cache, "--explain", "1", "--lime-samples", "40")
    assert run_cli(main, argv) == 0
    summary = json.loads((out / "search.json").read_text())
    trials = {t["params"]["model.pretrained"]: t for t in summary["trials"]}
    return {
        "out": out,
        "summary": summary,
        "learning": trials["none"],
        "stuck": next(t for k, t in trials.items() if k != "none"),
        "data": prepare_data(load_search_space(space).preprocess_config, archive, cache, workers=1),
        "space": space,
    }


def test_fold_racing_stops_a_configuration_that_cannot_learn_after_one_fold(raced):
    learning, stuck = raced["learning"], raced["stuck"]
    assert [h["fold"] for h in learning["history"]] == [1, 2, 3]
    assert [h["fold"] for h in stuck["history"]] == [1]
    assert stuck["history"][0]["val_balanced_accuracy"] == pytest.approx(1 / 3)
    assert learning["history"][0]["val_balanced_accuracy"] > 0.5
    assert sum(h["fold_epochs"] for t in (learning, stuck) for h in t["history"]) == 4 * 2
    assert raced["summary"]["best_trial"] == learning["trial_id"]
    assert raced["summary"]["cv"] == {"folds": FOLDS, "repeats": 1}
    tests = [t["test"] for t in (learning, stuck)]
    assert all(0 <= t["balanced_accuracy"] <= 1 and t["n"] == tests[0]["n"] for t in tests)


def test_each_fold_reports_out_of_fold_measures_of_the_folds_done(raced):
    """The reported metric is recomputed from the predictions the checkpoint holds."""
    history = raced["learning"]["history"]
    sizes = [h["val_n"] for h in history]
    assert sizes == sorted(sizes) and len(set(sizes)) == FOLDS
    directory = next((raced["out"] / "tune" / raced["learning"]["trial_id"]).glob("checkpoint_*"))
    progress = load_progress(directory)
    assert progress.done == FOLDS
    labels = raced["data"].labels
    rows = np.concatenate([f.rows for f in progress.folds])
    proba = np.concatenate([f.proba for f in progress.folds])
    assert len(set(rows.tolist())) == rows.size == sizes[-1]
    recomputed = validation_metrics(proba, labels[rows])
    assert recomputed["balanced_accuracy"] == pytest.approx(history[-1]["val_balanced_accuracy"])
    low, high = (
        history[-1]["val_balanced_accuracy_ci_low"],
        history[-1]["val_balanced_accuracy_ci_high"],
    )
    assert low <= history[-1]["val_balanced_accuracy"] <= high


def test_the_best_fold_ensemble_is_evaluated_once_on_the_outer_test_part(raced):
    out = raced["out"]
    assert load_checkpoint(out / "best" / "model.pt").members == FOLDS
    metrics = json.loads((out / "best" / "metrics.json").read_text())
    with open(out / "best" / "predictions.csv") as handle:
        tested = {row["image_id"] for row in csv.DictReader(handle)}
    cfg = from_dict(TrainConfig, load_checkpoint(out / "best" / "model.pt").config)
    arrays = held_out_arrays(cfg, raced["data"])
    assert tested == {arrays.image_ids[i] for i in arrays.split.test}
    assert metrics["n"] == len(tested)
    patients = arrays.patient_ids
    assert not set(patients[list(arrays.split.test)]) & set(patients[list(arrays.split.train)])
    assert list((out / "explain").glob("*.png"))
    report = (out / "report.md").read_text()
    assert "## Selection: the top trials" in report and "3/3" in report and "1/3" in report


def test_a_trial_child_run_holds_the_running_metric_and_each_folds_curves(raced):
    summary = raced["summary"]
    client = MlflowClient(summary["mlflow"]["uri"])
    runs = children_of(client, summary["mlflow"]["parent_run_id"])
    run = next(
        r
        for r in runs
        if r.data.tags["trial_name"].endswith(raced["learning"]["trial_id"].removeprefix("trial_"))
    )
    running = client.get_metric_history(run.info.run_id, "val_balanced_accuracy")
    assert sorted(m.step for m in running) == [1, 2, 3]
    for fold in range(FOLDS):
        curve = client.get_metric_history(run.info.run_id, f"fold_{fold}/val_loss")
        assert sorted(m.step for m in curve) == [1, 2]
    assert client.list_artifacts(run.info.run_id, "checkpoint")


def test_a_resumed_trial_continues_at_its_next_fold(ray_local, tmp_path):
    """Ctrl-C after the first fold, then --resume: the trial's folds run once each."""
    archive, cache = prepared_synthetic(tmp_path)
    space = _space(tmp_path, "  optim.lr: [0.001]\n", epochs=8)
    out = tmp_path / "resumed"
    argv = search_argv(space, archive, out, cache, "--explain", "0")
    driver = _Driver(argv, tmp_path)

    def folds_reported() -> list[str]:
        return [
            row["fold"]
            for path in out.glob("tune/*/progress.csv")
            for row in csv.DictReader(path.open())
        ]

    driver.wait_until(lambda: len(folds_reported()) >= 1, 300, "first fold")
    driver.signal(signal.SIGINT)
    code, stderr = driver.finish(240)
    assert code == 130, stderr[-3000:]
    before = folds_reported()
    assert 1 <= len(before) < FOLDS, "the interruption should fall inside the trial"

    assert run_cli(main, [*argv, "--resume"]) == 0
    assert folds_reported() == ["1", "2", "3"], "a fold was trained twice"
    summary = json.loads((out / "search.json").read_text())
    assert [h["fold"] for h in summary["trials"][0]["history"]] == [1, 2, 3]


# --- spaces, settings and the pieces, without Tune ---------------------------------------------


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "space.yaml"
    path.write_text(f"base: {PUBLISHED_PATIENT}\n{text}")
    return path


def test_search_cv_turns_the_base_split_into_patient_folds(tmp_path):
    space = load_search_space(_write(tmp_path, "search: {cv: {folds: 4}, grace_period: 2}\n"))
    assert space.base["split"]["method"] == "cv" and space.base["split"]["folds"] == 4
    assert space.settings.max_t == 4
    plain = load_search_space(_write(tmp_path, "search: {max_epochs: 3}\n"))
    assert plain.settings.max_t == 3 and plain.base["split"]["method"] == "patient"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("fixed: {split.method: paper}\nsearch: {cv: {folds: 5}}\n", "patient-level"),
        (
            "fixed: {split.test: 0, split.train: 0.8, split.val: 0.2}\nsearch: {cv: {folds: 5}}\n",
            "outer test part",
        ),
        ("search: {cv: {folds: 3}, grace_period: 4, max_epochs: 6}\n", "with cv, rungs are folds"),
        ("search: {cv: {folds: 1}}\n", "folds must be >= 2"),
        ("fixed: {split.method: cv}\n", "search.cv: {folds: K}"),
        ("params: {seed: {int: [0, 3]}}\nsearch: {cv: {folds: 5}}\n", "race on different folds"),
    ],
)
def test_a_bad_search_cv_is_one_error_naming_the_space(tmp_path, text, message):
    path = _write(tmp_path, text)
    with pytest.raises(SearchSpaceError, match=message) as caught:
        load_search_space(path)
    assert str(path) in str(caught.value)


def test_the_epoch_budget_counts_the_epochs_of_each_fold():
    budget = TrialEpochBudget(10)
    assert not budget("a", {"fold_epochs": 4})
    assert not budget("a", {})
    assert budget("b", {"fold_epochs": 5}) and budget.stop_all()


def test_fold_progress_round_trips_through_a_checkpoint_directory(tmp_path):
    torch.manual_seed(0)
    model_cfg = ModelConfig(backbone="resnet18", pretrained="none")
    folds = tuple(
        FoldResult(
            k,
            np.array([2 * k, 2 * k + 1]),
            np.full((2, len(LABELS)), 1 / 3, np.float32),
            {"accuracy": 0.5, "balanced_accuracy": 0.4, "macro_f1": 0.3},
            k + 1,
            build_model(model_cfg).eval(),
        )
        for k in range(2)
    )
    config = load_yaml(PUBLISHED_PATIENT)
    set_dotted(config, "model.pretrained", "none")
    save_progress(tmp_path, FoldProgress(folds), config, "key")
    loaded = load_progress(tmp_path)
    assert loaded.done == 2 and [f.best_epoch for f in loaded.folds] == [1, 2]
    np.testing.assert_array_equal(loaded.folds[1].rows, [2, 3])
    images = torch.randn(1, 1, 32, 32)
    with torch.inference_mode():
        for saved, back in zip(folds, loaded.folds, strict=True):
            restored = back.model.float().cpu()(images)
            torch.testing.assert_close(restored, saved.model(images))
    (tmp_path / "folds.json").write_text("[]")
    with pytest.raises(CheckpointError, match="not the fold progress"):
        load_progress(tmp_path)


def test_held_out_arrays_of_a_cv_config_are_its_outer_test_part(raced):
    data = raced["data"]
    base = load_search_space(raced["space"]).base
    cfg = from_dict(TrainConfig, base)
    arrays = held_out_arrays(cfg, data)
    folds = trial_arrays(cfg, data, 0).split
    assert set(arrays.split.train) == set(folds.train) | set(folds.val) | set(folds.test)
    assert not set(arrays.split.test) & set(arrays.split.train)
    set_dotted(base, "split.test", 0)
    set_dotted(base, "split.train", 0.8)
    set_dotted(base, "split.val", 0.2)
    with pytest.raises(ConfigError, match="no outer test part"):
        held_out_arrays(from_dict(TrainConfig, base), data)


def test_a_trial_resumed_from_an_epoch_checkpoint_trains_on_as_if_never_stopped(raced, tmp_path):
    """Epoch 2 after a resume from epoch 1's checkpoint equals epoch 2 of one unbroken run."""
    base = load_search_space(raced["space"]).base
    set_dotted(base, "split.method", "patient")
    set_dotted(base, "optim.schedule", "cosine")
    saved = tmp_path / "epoch1"

    def keep_first(metrics: dict, checkpoint: str | None) -> None:
        if metrics["epoch"] == 1:
            shutil.copytree(Path(checkpoint).parent, saved)

    unbroken = train_trial(base, raced["data"], keep_first, save_state=True)
    resumed = train_trial(base, raced["data"], lambda m, c: None, resume=load_training_state(saved))
    assert [h["epoch"] for h in resumed["history"]] == [1, 2]
    assert resumed["history"][0] == unbroken["history"][0]
    for key in ("train_loss", "val_loss", "val_balanced_accuracy"):
        assert resumed["history"][1][key] == pytest.approx(unbroken["history"][1][key], rel=1e-4)
    (saved / STATE_FILE).write_bytes(b"not a state")
    with pytest.raises(CheckpointError, match="not a training state"):
        load_training_state(saved)
