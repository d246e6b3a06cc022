"""Tests of ``python -m mammo_ray.evaluate`` on the synthetic 40-film archive."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mammo_ray.cli import run_cli
from mammo_ray.errors import CheckpointError
from mammo_ray.learn.checkpoint import load_checkpoint, save_checkpoint
from mammo_ray.learn.evaluate import evaluate_arrays, evaluate_checkpoint, main
from mammo_ray.learn.metrics import read_predictions_csv
from mammo_ray.learn.models import ModelConfig, build_model
from mammo_ray.learn.run import main as train_main
from tests.test_train_cli import (
    N_FILMS,
    PUBLISHED,
    SHAPE,
    TINY,
    one_line_error,
    prepared_synthetic,
)

REPORT_KEYS = {
    "labels",
    "n",
    "confusion_matrix",
    "accuracy",
    "balanced_accuracy",
    "macro_f1",
    "auc_ovr",
    "per_class",
    "ci95",
}


@pytest.fixture(scope="module")
def synthetic(ray_local, tmp_path_factory) -> tuple[Path, Path]:
    return prepared_synthetic(tmp_path_factory.mktemp("mias"))


@pytest.fixture(scope="module")
def checkpoint(synthetic, tmp_path_factory) -> Path:
    """model.pt of ``python -m mammo_ray.train`` (published config, tiny settings, MobileNet-V2)."""
    archive, cache = synthetic
    out = tmp_path_factory.mktemp("train")
    argv = ["--config", str(PUBLISHED), "--data", str(archive), "--cache", str(cache)]
    argv += ["--out", str(out), *TINY, "--set", "backbone=mobilenetv2_100"]
    assert run_cli(train_main, [*argv, "--mlflow-uri", f"sqlite:///{out / 'm.db'}"]) == 0
    return out / "model.pt"


def counts_from_predictions(path: Path) -> np.ndarray:
    predictions = read_predictions_csv(path)
    cm = np.zeros((3, 3), dtype=int)
    np.add.at(cm, (predictions.y_true, predictions.y_pred), 1)
    return cm


def test_evaluate_every_image_and_agree_with_predictions_csv(synthetic, checkpoint, tmp_path):
    archive, cache = synthetic
    out = tmp_path / "eval"
    argv = ["--checkpoint", str(checkpoint), "--data", str(archive), "--out", str(out)]
    assert run_cli(main, [*argv, "--cache", str(cache), "--quiet"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) == REPORT_KEYS and metrics["labels"] == ["normal", "mass", "calc"]
    assert metrics["n"] == N_FILMS and (out / "confusion_matrix.png").stat().st_size > 0

    predictions = read_predictions_csv(out / "predictions.csv")
    assert predictions.image_ids == tuple(f"mdb{i:03d}" for i in range(1, N_FILMS + 1))
    assert np.bincount(predictions.y_true).tolist() == [20, 10, 10]
    cm = counts_from_predictions(out / "predictions.csv")
    assert metrics["confusion_matrix"] == cm.tolist()
    for k, label in enumerate(metrics["labels"]):
        counts = metrics["per_class"][label]
        tp = cm[k, k]
        assert counts["tp"] == tp
        assert counts["fn"] == cm[k].sum() - tp and counts["fp"] == cm[:, k].sum() - tp
        assert counts["tn"] == N_FILMS - cm[k].sum() - cm[:, k].sum() + tp
    assert metrics["accuracy"] == pytest.approx(np.trace(cm) / N_FILMS)
    assert metrics["ci95"]["n_groups"] == N_FILMS // 2


def test_evaluate_checkpoint_matches_the_command(synthetic, checkpoint, tmp_path):
    archive, cache = synthetic
    report = evaluate_checkpoint(
        checkpoint, archive, tmp_path / "api", cache_root=cache, image_shape=SHAPE
    )
    again = evaluate_checkpoint(checkpoint, archive, tmp_path / "again", cache_root=cache)
    assert report == again
    assert (tmp_path / "api" / "predictions.csv").read_text() == (
        tmp_path / "again" / "predictions.csv"
    ).read_text()


def test_evaluate_arrays_of_a_model_that_always_says_mass(tmp_path):
    torch.manual_seed(0)
    model = build_model(ModelConfig(backbone="mobilenetv2_100", pretrained="none"), 3)
    with torch.no_grad():
        model.classifier.weight.zero_()
        model.classifier.bias.copy_(torch.tensor([0.0, 10.0, 0.0]))
    images = np.zeros((4, 32, 32), np.uint8)
    labels = np.array([0, 1, 1, 2])
    ids = ["mdb001", "mdb002", "mdb003", "mdb004"]
    report = evaluate_arrays(model, images, labels, ids, np.array([1, 1, 2, 2]), tmp_path)
    assert report["confusion_matrix"] == [[0, 1, 0], [0, 2, 0], [0, 1, 0]]
    assert report["accuracy"] == 0.5 and report["ci95"]["n_groups"] == 2
    assert read_predictions_csv(tmp_path / "predictions.csv").y_pred.tolist() == [1, 1, 1, 1]


def test_missing_checkpoint_is_one_line_and_exit_2(capsys, tmp_path):
    argv = ["--checkpoint", str(tmp_path / "model.pt"), "--data", str(tmp_path)]
    assert run_cli(main, [*argv, "--out", str(tmp_path / "out")]) == 2
    assert "checkpoint not found" in one_line_error(capsys)


def test_a_file_that_is_not_a_checkpoint_is_one_line_and_exit_2(capsys, tmp_path):
    fake = tmp_path / "model.pt"
    torch.save({"weights": torch.zeros(2)}, fake)
    argv = ["--checkpoint", str(fake), "--data", str(tmp_path), "--out", str(tmp_path / "out")]
    assert run_cli(main, argv) == 2
    assert "not a mammo_ray checkpoint" in one_line_error(capsys)
    fake.write_text("hello")
    assert run_cli(main, argv) == 2
    assert "cannot read checkpoint" in one_line_error(capsys)


def test_no_data_is_one_line_and_exit_2(capsys, checkpoint, tmp_path, monkeypatch):
    monkeypatch.delenv("MAMMO_RAY_DATA", raising=False)
    assert run_cli(main, ["--checkpoint", str(checkpoint), "--out", str(tmp_path)]) == 2
    assert "no MIAS data given" in one_line_error(capsys)


def test_checkpoint_with_other_labels_is_a_checkpoint_error(checkpoint, tmp_path):
    ckpt = load_checkpoint(checkpoint)
    model = build_model(ModelConfig(backbone="mobilenetv2_100", pretrained="none"), 3)
    other = save_checkpoint(
        tmp_path / "other.pt",
        model,
        config=ckpt.config,
        labels=["benign", "malignant", "normal"],
        preprocess_key=ckpt.preprocess_key,
    )
    with pytest.raises(CheckpointError, match="labels .*benign.* differ"):
        evaluate_checkpoint(other, tmp_path, tmp_path / "out")


@pytest.mark.slow
def test_module_entry_point_exits_2_with_one_line(tmp_path):
    missing = tmp_path / "model.pt"
    result = subprocess.run(
        [sys.executable, "-m", "mammo_ray.evaluate", "--checkpoint", str(missing)]
        + ["--data", str(tmp_path), "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"error: {missing}: checkpoint not found"]
