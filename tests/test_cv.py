"""Tests of patient-level cross-validation in training (issue 9): ``train cv``, out-of-fold
results, the fold ensemble checkpoint."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient
from torch import nn

from mammo_ray.cli import run_cli
from mammo_ray.config import to_dict
from mammo_ray.data.mias_info import LABELS
from mammo_ray.explain.command import main as explain_main
from mammo_ray.learn.checkpoint import load_checkpoint, load_trained, save_checkpoint
from mammo_ray.learn.config import TrainConfig
from mammo_ray.learn.cv import FoldResult, fold_summary, normal_vs_abnormal_auc
from mammo_ray.learn.ensemble import FoldEnsemble
from mammo_ray.learn.evaluate import main as evaluate_main
from mammo_ray.learn.metrics import classification_metrics
from mammo_ray.learn.models import ModelConfig, build_model
from mammo_ray.learn.run import main
from tests.test_train_cli import TINY, prepared_synthetic


def test_the_ensemble_predicts_the_mean_of_its_members_probabilities():
    torch.manual_seed(0)
    members = [nn.Sequential(nn.Flatten(), nn.Linear(4, 3)) for _ in range(3)]
    images = torch.randn(5, 1, 2, 2)
    ensemble = FoldEnsemble(members)
    expected = torch.stack([m(images).softmax(1) for m in members]).mean(0)
    torch.testing.assert_close(ensemble(images).softmax(1), expected)
    with pytest.raises(ValueError, match="at least 2 members"):
        FoldEnsemble(members[:1])


def test_an_ensemble_checkpoint_round_trips_through_load_trained(tmp_path):
    torch.manual_seed(1)
    model_cfg = ModelConfig(backbone="mobilenetv2_100", pretrained="none")
    ensemble = FoldEnsemble([build_model(model_cfg) for _ in range(2)]).eval()
    config = to_dict(TrainConfig(model=model_cfg))
    path = save_checkpoint(
        tmp_path / "model.pt", ensemble, config=config, labels=list(LABELS), preprocess_key="k"
    )
    assert load_checkpoint(path).members == 2
    loaded = load_trained(path).model
    assert isinstance(loaded, FoldEnsemble) and len(loaded.members) == 2
    images = torch.randn(2, 1, 32, 32)
    with torch.inference_mode():
        torch.testing.assert_close(loaded.float()(images), ensemble(images), atol=1e-4, rtol=1e-4)
    single = tmp_path / "single.pt"
    save_checkpoint(
        single, ensemble.members[0], config=config, labels=list(LABELS), preprocess_key="k"
    )
    assert load_checkpoint(single).members == 1


def _fold(index: int, rows: list[int], accuracy: float) -> FoldResult:
    proba = np.full((len(rows), 3), 1 / 3, np.float32)
    metrics = {"accuracy": accuracy, "balanced_accuracy": accuracy / 2, "macro_f1": 0.1}
    return FoldResult(index, np.asarray(rows), proba, metrics, 1, nn.Identity())


def test_fold_summary_gives_each_fold_and_the_mean_and_sample_sd():
    summary = fold_summary([_fold(0, [0, 1], 0.5), _fold(1, [2], 0.7), _fold(2, [3, 4], 0.9)])
    assert [f["n"] for f in summary["per_fold"]] == [2, 1, 2]
    assert summary["mean"]["accuracy"] == pytest.approx(0.7)
    assert summary["sd"]["accuracy"] == pytest.approx(0.2)
    assert summary["sd"]["macro_f1"] == pytest.approx(0.0)


def test_normal_vs_abnormal_auc_ranks_abnormal_films_by_one_minus_p_normal():
    labels = np.array([0, 0, 1, 2])
    proba = np.array([[0.9, 0.1, 0], [0.6, 0.2, 0.2], [0.5, 0.5, 0], [0.1, 0, 0.9]])
    assert normal_vs_abnormal_auc(labels, proba) == 1.0
    assert normal_vs_abnormal_auc(np.array([0, 0]), proba[:2]) is None


def _read_predictions(path: Path) -> list[dict[str, str]]:
    with open(path) as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def synthetic_cv(ray_local, tmp_path_factory) -> tuple[Path, dict]:
    """``train cv --folds 3`` on the synthetic 40-film archive at 32 px, 1 epoch per fold."""
    folder = tmp_path_factory.mktemp("cv")
    archive, cache = prepared_synthetic(folder)
    out = folder / "run"
    argv = ["cv", "--data", str(archive), "--cache", str(cache), "--out", str(out), "--folds", "3"]
    assert run_cli(main, [*argv, *TINY]) == 0
    return out, json.loads((out / "summary.json").read_text())


def test_train_cv_predicts_every_cross_validated_film_once_out_of_fold(synthetic_cv):
    out, summary = synthetic_cv
    folds = json.loads((out / "folds.json").read_text())
    assert len(folds["folds"]) == 3 and summary["folds"] == 3
    held_out = [film for fold in folds["folds"] for film in fold["test"]]
    assert len(held_out) == len(set(held_out)) and not set(held_out) & set(folds["test"])
    patient = lambda film: (int(film[3:]) + 1) // 2  # noqa: E731
    for fold in folds["folds"]:
        sides = [{patient(f) for f in fold[part]} for part in ("train", "val", "test")]
        assert not (sides[0] & sides[1] or sides[0] & sides[2] or sides[1] & sides[2])
    rows = _read_predictions(out / "oof" / "predictions.csv")
    assert sorted(r["image_id"] for r in rows) == sorted(held_out)
    assert summary["out_of_fold"]["n"] == len(held_out)
    assert summary["test"]["n"] == len(folds["test"]) > 0


def test_out_of_fold_metrics_are_recomputed_from_predictions_csv(synthetic_cv):
    out, summary = synthetic_cv
    rows = _read_predictions(out / "oof" / "predictions.csv")
    y_true = [LABELS.index(r["true"]) for r in rows]
    proba = np.array([[float(r[f"p_{label}"]) for label in LABELS] for r in rows])
    recomputed = classification_metrics(y_true, proba.argmax(1).tolist(), proba, list(LABELS))
    written = json.loads((out / "oof" / "metrics.json").read_text())
    for key in ("accuracy", "balanced_accuracy", "macro_f1"):
        assert recomputed[key] == pytest.approx(written[key], abs=1e-6)
        assert summary["out_of_fold"][key] == pytest.approx(written[key], abs=1e-6)
    lo, hi = summary["out_of_fold"]["ci95"]["balanced_accuracy"]
    assert lo <= summary["out_of_fold"]["balanced_accuracy"] <= hi


def test_the_fold_ensemble_is_one_checkpoint_that_evaluate_accepts(synthetic_cv, tmp_path):
    out, summary = synthetic_cv
    assert load_checkpoint(out / "model.pt").members == 3
    archive = out.parent / "mias.tar.gz"
    argv = ["--checkpoint", str(out / "model.pt"), "--data", str(archive), "--out", str(tmp_path)]
    assert run_cli(evaluate_main, [*argv, "--cache", str(out.parent / "cache"), "--quiet"]) == 0
    assert json.loads((tmp_path / "metrics.json").read_text())["n"] == 40


def test_one_mlflow_run_with_a_nested_run_per_fold(synthetic_cv):
    out, summary = synthetic_cv
    client = MlflowClient(summary["mlflow"]["uri"])
    parent = client.get_run(summary["mlflow"]["run_id"])
    assert parent.info.status == "FINISHED" and "oof_balanced_accuracy" in parent.data.metrics
    children = client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'",
    )
    assert sorted(c.data.tags["mlflow.runName"] for c in children) == ["fold 0", "fold 1", "fold 2"]
    assert all("heldout_balanced_accuracy" in c.data.metrics for c in children)


def test_folds_without_cv_and_a_cv_config_without_fold_are_one_line_errors(tmp_path, capsys):
    argv = ["--data", str(tmp_path), "--out", str(tmp_path / "o"), "--folds", "3"]
    assert run_cli(main, argv) == 2
    assert "--folds is for 'train cv'" in capsys.readouterr().err


@pytest.mark.integration
def test_train_cv_runs_on_the_mias_subset(ray_local, mias_dev_path, tmp_path, capsys):
    """3 folds of mobilenetv2 at 64 px, 1 epoch each, on the 258 real films."""
    out = tmp_path / "cv"
    argv = [
        "cv", "--data", str(mias_dev_path), "--cache", str(tmp_path / "cache"),
        "--out", str(out), "--folds", "3", "--epochs", "1", "--set", "pretrained=none",
        "--set", "backbone=mobilenetv2_100", "--set", "input_size=64",
        "--set", "preprocess.sizes=[64]", "--quiet",
    ]  # fmt: skip
    assert run_cli(main, argv) == 0
    printed = capsys.readouterr().out
    assert "mean ± sd" in printed and "out of fold: n=206" in printed
    assert "outer test: n=52" in printed
    summary = json.loads((out / "summary.json").read_text())
    assert summary["out_of_fold"]["n"] + summary["test"]["n"] == 258


def test_explain_takes_the_fold_ensemble_like_one_model(synthetic_cv, tmp_path):
    out, _ = synthetic_cv
    argv = [
        "--checkpoint", str(out / "model.pt"), "--data", str(out.parent / "mias.tar.gz"),
        "--cache", str(out.parent / "cache"), "--images", "mdb001", "--num-samples", "20",
        "--out", str(tmp_path),
    ]  # fmt: skip
    assert run_cli(explain_main, argv) == 0
    lime = json.loads((tmp_path / "lime.json").read_text())
    assert [image["image_id"] for image in lime["images"]] == ["mdb001"]
