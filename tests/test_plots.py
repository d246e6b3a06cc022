from __future__ import annotations

import matplotlib
import matplotlib.image
import numpy as np
import pytest

from mammo_ray.plots import plot_confusion_matrix, plot_metric_by_epoch, plot_training_curves

LABELS = ["normal", "mass", "calc"]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
HISTORY = [
    {"epoch": 1, "train_loss": 1.1, "val_loss": 1.0, "val_accuracy": 0.5},
    {"epoch": 2, "train_loss": 0.8, "val_loss": 0.9, "val_accuracy": 0.6},
    {"epoch": 3, "train_loss": 0.6, "val_loss": 0.85, "val_accuracy": 0.65},
]


def _assert_png(path, width_px: int, height_px: int) -> None:
    assert path.stat().st_size > 1000
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    pixels = matplotlib.image.imread(path)
    assert pixels.shape[:2] == (height_px, width_px)
    assert pixels[..., :3].std() > 0  # something was drawn


def test_confusion_matrix_png(tmp_path):
    cm = np.array([[192, 5, 7], [0, 24, 1], [1, 3, 89]])
    path = plot_confusion_matrix(cm, LABELS, tmp_path / "figs" / "cm.png", dpi=50)
    assert path == tmp_path / "figs" / "cm.png"
    _assert_png(path, 250, 225)  # default figsize 5 x 4.5 inches


def test_confusion_matrix_accepts_json_lists_and_normalised_values(tmp_path):
    counts = [[3, 1, 0], [0, 2, 0], [0, 0, 0]]
    _assert_png(
        plot_confusion_matrix(counts, LABELS, tmp_path / "a.png", figsize=(4, 4), dpi=40), 160, 160
    )
    rates = np.array([[0.75, 0.25, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    _assert_png(
        plot_confusion_matrix(rates, LABELS, tmp_path / "b.png", title="Rates", dpi=40), 200, 180
    )


def test_training_curves_png(tmp_path):
    path = plot_training_curves(HISTORY, tmp_path / "curves.png", dpi=30)
    _assert_png(path, 300, 120)  # default figsize 10 x 4 inches


def test_training_curves_with_partial_keys_and_no_epoch(tmp_path):
    history = [{"train_loss": 1.0}, {"train_loss": 0.7, "val_balanced_accuracy": None}]
    path = plot_training_curves(history, tmp_path / "curves.png", figsize=(6, 3), dpi=30)
    _assert_png(path, 180, 90)


def test_metric_by_epoch_png(tmp_path):
    series = {
        "resnet18": [(1, 0.6), (3, 0.8), (2, 0.7)],
        "densenet121": [(1, 0.55), (2, 0.65)],
    }
    path = plot_metric_by_epoch(
        series, tmp_path / "fig6.png", "accuracy", "Accuracy per epoch", dpi=40
    )
    _assert_png(path, 240, 160)  # default figsize 6 x 4 inches


def test_plotting_leaves_the_backend_alone(tmp_path):
    backend = matplotlib.get_backend()
    plot_training_curves(HISTORY, tmp_path / "curves.png", dpi=20)
    assert matplotlib.get_backend() == backend


@pytest.mark.parametrize(
    ("cm", "message"),
    [
        (np.ones((2, 2)), r"shape \(3, 3\)"),
        (np.array([[1, 0, 0], [0, -1, 0], [0, 0, 1]]), "negative"),
        (np.array([[1, 0, 0], [0, np.nan, 0], [0, 0, 1]]), "finite"),
        (np.array([["a"] * 3] * 3), "finite numbers"),
    ],
)
def test_confusion_matrix_rejects_bad_matrices(tmp_path, cm, message):
    with pytest.raises(ValueError, match=message):
        plot_confusion_matrix(cm, LABELS, tmp_path / "cm.png")
    assert not (tmp_path / "cm.png").exists()


@pytest.mark.parametrize(
    ("history", "message"),
    [
        ([], "history is empty"),
        ([{"epoch": 1, "lr": 0.1}], r"none of .*their keys are \['epoch', 'lr'\]"),
    ],
)
def test_training_curves_rejects_unusable_history(tmp_path, history, message):
    with pytest.raises(ValueError, match=message):
        plot_training_curves(history, tmp_path / "curves.png")


@pytest.mark.parametrize(
    ("series", "message"),
    [
        ({}, "series is empty"),
        ({"resnet18": []}, "'resnet18' has no points"),
        ({"resnet18": [(1, 0.5, 9)]}, "'resnet18'.*pair"),
    ],
)
def test_metric_by_epoch_rejects_bad_series(tmp_path, series, message):
    with pytest.raises(ValueError, match=message):
        plot_metric_by_epoch(series, tmp_path / "fig.png", "accuracy", "title")
