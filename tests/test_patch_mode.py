"""Tests of ``input.mode: patch``: score maps, their film features and aggregation, hard
negatives, localisation, checkpoints, and ``train cv`` end to end on synthetic films with
known lesions."""

from __future__ import annotations

import json

import numpy as np
import pytest
import timm
import torch

from mammo_ray.config import from_dict, to_dict
from mammo_ray.data.mias_info import LABELS
from mammo_ray.errors import ConfigError
from mammo_ray.learn.bilateral_maps import BILATERAL_FEATURES
from mammo_ray.learn.checkpoint import load_trained, save_checkpoint
from mammo_ray.learn.config import TrainConfig
from mammo_ray.learn.cv import FoldResult
from mammo_ray.learn.ensemble import FoldEnsemble
from mammo_ray.learn.evaluate import predict_images
from mammo_ray.learn.fold_race import load_progress, race_folds, save_progress
from mammo_ray.learn.inference import predict
from mammo_ray.learn.lesions import hard_negatives, window_centres
from mammo_ray.learn.models import GRAY_MEAN, GRAY_STD
from mammo_ray.learn.patch_cv import aggregate_folds, run_patch_cv, top_window_hit
from mammo_ray.learn.score_maps import (
    MAP_FEATURES,
    ScoreMapModel,
    film_features_of_maps,
    fit_aggregation,
    predict_maps,
    set_head,
)
from mammo_ray.learn.trial import input_images, validation_metrics
from tests.lesion_films import lesion_data

NORMAL, MASS, CALC = range(3)
PATCH = {
    "model": {"backbone": "mobilenetv2_100", "pretrained": "none"},
    "input": {"mode": "patch"},
    "input_size": 256,
    "segmentation": False,
    "preprocess": {"sizes": [256]},
    "augment": {"mode": "none"},
    "patch": {"size": 64},
    "split": {"method": "cv", "folds": 3, "train": 0.4, "val": 0.4, "test": 0.2},
    "class_weighting": True,
    "epochs": 1,
    "batch_size": 16,
}


def _maps(hot: tuple[int, int], shape=(5, 6)) -> np.ndarray:
    """(3, h, w) probability maps, normal everywhere except a mass at ``hot``."""
    proba = np.zeros((3, *shape), np.float32)
    proba[NORMAL] = 0.9
    proba[MASS] = 0.1
    proba[:, hot[0], hot[1]] = (0.1, 0.8, 0.1)
    return proba


def test_film_features_take_the_max_and_top_k_inside_the_breast():
    proba = torch.from_numpy(_maps((1, 2)))[None]
    inside = torch.ones(1, 1, 5, 6)
    features = film_features_of_maps(proba, inside, top_k=3)[0].numpy()
    named = dict(zip(MAP_FEATURES, features, strict=True))
    assert named["max_mass"] == pytest.approx(0.8) and named["topk_mass"] == pytest.approx(1 / 3)
    assert named["max_abnormal"] == pytest.approx(0.9)
    inside[0, 0, 1, 2] = 0
    outside = dict(
        zip(MAP_FEATURES, film_features_of_maps(proba, inside, 3)[0].numpy(), strict=True)
    )
    assert outside["max_mass"] == pytest.approx(0.1), "a window outside the breast is ignored"


def test_hard_negatives_are_the_top_windows_outside_lesions_and_inside_the_breast():
    score = np.zeros((4, 4))
    score[0, 0], score[1, 1], score[2, 2], score[3, 3] = 0.9, 0.8, 0.7, 0.6
    inside = np.ones((4, 4), bool)
    inside[2, 2] = False
    lesion_centre = window_centres((4, 4), 64, 32)[0, 0]
    circles = [(*lesion_centre, 10.0)]
    found = hard_negatives(score, inside, circles, 64, 32, count=2)
    np.testing.assert_allclose(found, window_centres((4, 4), 64, 32)[[1, 3], [1, 3]])
    assert len(hard_negatives(score, inside, circles, 64, 32, count=20)) == 20
    assert len(hard_negatives(score, np.zeros((4, 4), bool), [], 64, 32, count=2)) == 0


def test_top_window_hit_and_its_chance():
    proba = _maps((1, 2))
    inside = np.ones((5, 6), bool)
    corner = window_centres((5, 6), 64, 32)[1, 2] - 31.5
    hit, chance = top_window_hit(proba, inside, [(corner[0] + 40, corner[1] + 5, 8.0)], 64, 32)
    assert hit and 0 < chance < 0.3
    miss, _ = top_window_hit(proba, inside, [(corner[0] + 100, corner[1] + 200, 8.0)], 64, 32)
    assert not miss


def test_score_maps_are_the_patch_classifier_on_every_window_inside_the_breast():
    """Window (i, j) covers rows [32 i, 32 i + 64) and cols [32 j, 32 j + 64): a breast in
    columns [0, 96) leaves inside exactly the windows at least half in it; each is scored as
    the patch classifier scores its crop, the others score normal."""
    model = timm.create_model("mobilenetv2_100", num_classes=3, in_chans=1).eval()
    film = torch.full((1, 1, 192, 256), -GRAY_MEAN / GRAY_STD)
    film[..., :96] = torch.rand(192, 96)
    with torch.no_grad():
        proba, inside = ScoreMapModel(model, 64, stride=32).maps(film)
        crop = model(film[..., 64:128, 32:96]).softmax(1)[0]
    assert proba.shape == (1, 3, 5, 7)
    assert inside[0, 0].any(0).tolist() == [True, True, True, False, False, False, False]
    torch.testing.assert_close(proba[0, :, 2, 1], crop, atol=1e-5, rtol=0)
    assert proba[0, :, :, 3:].tolist() == [[[1.0] * 4] * 5, [[0.0] * 4] * 5, [[0.0] * 4] * 5]
    corners = window_centres((5, 7), 64, 32) - 31.5
    assert corners[2, 1].tolist() == [64.0, 32.0]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"segmentation": True}, "segmentation: false"),
        ({"patch": {"size": 100}}, "multiple of 32"),
        ({"patch": {"size": 512}}, "exceeds the film"),
        ({"augment": {"mode": "x5"}}, "augments its patches itself"),
        ({"patch": {"top_k": 0}}, "top_k"),
        ({"patch": {"stride": 0}}, "stride"),
    ],
)
def test_patch_config_errors(changes, message):
    with pytest.raises(ConfigError, match=message):
        from_dict(TrainConfig, PATCH | changes)


def test_the_fitted_aggregation_is_the_model_head_and_survives_a_checkpoint(tmp_path):
    data = lesion_data(["mass", "calc", "normal"], sizes=(256,))
    films = data.arrays["enhanced_256"]
    members = [
        ScoreMapModel(timm.create_model("mobilenetv2_100", num_classes=3, in_chans=1), 64)
        for _ in range(2)
    ]
    features = predict_maps(members[0], films)[2]
    aggregation = fit_aggregation(features, data.labels)
    for member in members:
        set_head(member, aggregation)
    proba = predict(members[0], torch.from_numpy(films))
    np.testing.assert_allclose(proba, aggregation.predict_proba(features), atol=1e-4)
    config = to_dict(from_dict(TrainConfig, PATCH))
    save_checkpoint(
        tmp_path / "model.pt",
        FoldEnsemble(members),
        config=config,
        labels=list(LABELS),
        preprocess_key="lesions",
    )
    loaded = load_trained(tmp_path / "model.pt").model
    np.testing.assert_allclose(
        predict_images(loaded, films), predict_images(FoldEnsemble(members), films), atol=1e-4
    )


@pytest.mark.parametrize("mode", ["patch", "patch+bilateral"])
def test_patch_cv_learns_synthetic_lesions_and_writes_the_cv_outputs(tmp_path, mode):
    data = lesion_data(["mass", "calc", "normal"] * 7, sizes=(256,))
    cfg = from_dict(
        TrainConfig,
        PATCH
        | {
            "input": {"mode": mode},
            "epochs": 6,
            "optim": {"lr": 0.002},
            "patch": {
                "size": 64,
                "stride": 32,
                "sampler": {"positives_per_lesion": 32, "negatives_per_film": 8},
            },
        },
    )
    summary = run_patch_cv(cfg, data, tmp_path, progress=False)
    assert summary["mode"] == mode
    assert summary["out_of_fold"]["n"] + summary["test"]["n"] == 42
    localisation = summary["localisation"]
    assert localisation["films"] > 0 and localisation["top_window_hit"] > localisation["chance"]
    assert summary["out_of_fold"]["balanced_accuracy"] > 0.5, "chance is 1/3"
    assert json.loads((tmp_path / "summary.json").read_text()) == summary
    files = ("model.pt", "fold_0/model.pt", "fold_2/curves.png", "oof/metrics.json")
    for name in (*files, "oof/features.csv"):
        assert (tmp_path / name).exists(), name
    model = load_trained(tmp_path / "model.pt").model
    films = input_images(cfg, data)
    assert films.shape == (42, 256, 512 if mode == "patch+bilateral" else 256)
    assert predict_images(model, films[:2]).shape == (2, 3)
    if mode == "patch+bilateral":
        assert summary["films_without_partner"] == 0
        assert summary["single_film"]["n"] == summary["out_of_fold"]["n"]
        auc, alone = (summary[k]["auc_normal_vs_abnormal"] for k in ("out_of_fold", "single_film"))
        assert auc > 0.8 and auc > alone, "every lesion's film has a normal partner to compare"
        assert (tmp_path / "oof_single_film" / "metrics.json").exists()


def test_fold_racing_a_bilateral_patch_model_reports_its_aggregation_after_each_fold(tmp_path):
    data = lesion_data(["mass", "calc", "normal"] * 5, sizes=(256,))
    changes = {"input": {"mode": "patch+bilateral"}, "patch": {"size": 64, "stride": 32}}
    config = to_dict(from_dict(TrainConfig, PATCH | changes))
    reports, first = [], []

    def on_fold(report, progress):
        reports.append(report)
        if progress.done == 1:
            save_progress(tmp_path, progress, config, "lesions")
            first.append(progress.folds[0].features.copy())

    progress = race_folds(config, data, on_fold)
    assert [r["fold"] for r in reports] == [1, 2, 3]
    assert reports[0]["val_n"] < reports[1]["val_n"] < reports[2]["val_n"] == 24
    features = np.concatenate([f.features for f in progress.folds])
    rows = np.concatenate([f.rows for f in progress.folds])
    assert features.shape == (24, len(BILATERAL_FEATURES))
    for fold in progress.folds:
        measures = validation_metrics(fold.proba, data.labels[fold.rows])
        assert fold.metrics == pytest.approx(measures)
    aggregation = fit_aggregation(features, data.labels[rows], 0)
    pairs = input_images(from_dict(TrainConfig, config), data)
    for fold in progress.folds:
        np.testing.assert_allclose(
            predict_images(fold.model, pairs[fold.rows]),
            aggregation.predict_proba(fold.features),
            atol=2e-3,
            err_msg="the head is the aggregation fitted on every fold's features",
        )

    restored = load_progress(tmp_path)
    assert restored.done == 1
    np.testing.assert_array_equal(restored.folds[0].features, first[0])
    resumed = race_folds(config, data, lambda report, progress: None, restored)
    assert resumed.done == 3 and resumed.folds[0].features is restored.folds[0].features


def test_aggregating_folds_that_lack_a_class_is_one_error():
    folds = [
        FoldResult(0, np.array([0, 1]), np.zeros((2, 3)), {}, 1, None, np.zeros((2, 4))),
    ]
    with pytest.raises(ConfigError, match="folds \\[0\\] hold no calc film"):
        aggregate_folds(folds, np.array([0, 1]), np.array([1, 2]), 0)
