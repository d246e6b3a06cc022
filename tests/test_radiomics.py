"""Tests of the radiomics baseline: film features, the bilateral pairing and ``train cv`` with
``input.mode: radiomics`` on synthetic full-resolution films with known lesions."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mammo_ray.config import from_dict, to_dict
from mammo_ray.data.mias_info import LABELS
from mammo_ray.errors import ConfigError
from mammo_ray.learn.bilateral import bilateral_features, bilateral_names, partner_rows
from mammo_ray.learn.config import TrainConfig
from mammo_ray.learn.radiomics import FEATURE_NAMES, film_features
from mammo_ray.learn.radiomics_cv import design_matrix, feature_table, run_radiomics_cv
from mammo_ray.learn.run import main as train_main
from mammo_ray.learn.trial import train_trial
from tests.lesion_films import breast_mask, film, lesion_data

RADIOMICS = {
    "input": {"mode": "radiomics"},
    "input_size": 1024,
    "segmentation": False,
    "preprocess": {"sizes": [1024]},
    "split": {"method": "cv", "folds": 3, "train": 0.4, "val": 0.4, "test": 0.2},
}


def _feature(values: np.ndarray, name: str) -> float:
    return float(values[FEATURE_NAMES.index(name)])


def test_features_see_specks_and_masses():
    rng = np.random.default_rng(0)
    mask = breast_mask(right=False)
    normal = film_features(film(rng, "normal", (512, 200), False), mask)
    calc = film_features(film(rng, "calc", (512, 200), False), mask)
    mass = film_features(film(rng, "mass", (512, 200), False), mask)
    assert normal.shape == (len(FEATURE_NAMES),) and np.isfinite(normal).all()
    assert _feature(calc, "speck_cluster_max") > _feature(normal, "speck_cluster_max") + 2
    assert _feature(mass, "dog_4_max") > 3 * _feature(normal, "dog_4_max")


def test_features_reject_a_film_of_another_size_or_an_empty_mask():
    with pytest.raises(ValueError, match="1024 x 1024 uint8"):
        film_features(np.zeros((512, 512), np.uint8), np.ones((512, 512), bool))
    with pytest.raises(ValueError, match="non-empty"):
        film_features(np.zeros((1024, 1024), np.uint8), np.zeros((1024, 1024), bool))


def test_partners_pair_the_two_films_of_a_patient():
    assert partner_rows([1, 1, 2, 3, 3, 3]).tolist() == [1, 0, -1, -1, -1, -1]


def test_bilateral_differences_flip_sign_when_the_lesion_changes_breast():
    data = lesion_data(["calc"])
    features = feature_table(data.arrays["enhanced_1024"], data.arrays["breast_1024"], workers=1)
    swapped = features[::-1]
    x = bilateral_features(features, partner_rows([1, 1]))
    x_swapped = bilateral_features(swapped, partner_rows([1, 1]))
    n = len(FEATURE_NAMES)
    names = bilateral_names(FEATURE_NAMES)
    cluster = names.index("speck_cluster_max_minus_other")
    assert x[0, cluster] > 0 > x[1, cluster], "the calc film (row 0) stands out from its partner"
    np.testing.assert_allclose(x_swapped[1, n : 2 * n], -x_swapped[0, n : 2 * n])
    np.testing.assert_allclose(x_swapped[0, n : 2 * n], x[1, n : 2 * n])
    lone = bilateral_features(features[:1], np.array([-1]))
    assert (lone[0, n : 2 * n] == 0).all() and lone[0, -1] == 0 and x[0, -1] == 1


def test_design_matrix_without_bilateral_is_the_features():
    cfg = from_dict(TrainConfig, RADIOMICS | {"radiomics": {"bilateral": False}})
    features = np.arange(2 * len(FEATURE_NAMES), dtype=float).reshape(2, -1)
    x, names = design_matrix(cfg.radiomics, features, np.array([1, 1]))
    assert x is features and names == list(FEATURE_NAMES)


def test_radiomics_cv_learns_synthetic_lesions_and_writes_the_cv_outputs(tmp_path):
    labels = ["mass", "calc", "normal"] * 8
    data = lesion_data(labels)
    cfg = from_dict(TrainConfig, RADIOMICS | {"radiomics": {"max_iter": 50, "min_samples_leaf": 4}})
    summary = run_radiomics_cv(cfg, data, tmp_path, workers=2, progress=False)
    assert summary["mode"] == "radiomics" and summary["films_without_partner"] == 0
    oof = summary["out_of_fold"]
    assert oof["n"] + summary["test"]["n"] == len(labels) * 2
    assert oof["auc_normal_vs_abnormal"] > 0.8
    assert json.loads((tmp_path / "summary.json").read_text()) == summary
    header = (tmp_path / "features.csv").read_text().splitlines()[0].split(",")
    assert header[0] == "image_id" and "speck_cluster_max_minus_other" in header
    for name in ("oof/metrics.json", "test/predictions.csv", "model.joblib", "folds.json"):
        assert (tmp_path / name).exists(), name
    assert [f["best_epoch"] for f in summary["cross_validation"]["per_fold"]] == [None] * 3


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"input_size": 224, "preprocess": {"sizes": [224]}}, "input_size: 1024"),
        ({"segmentation": True}, "segmentation: false"),
        ({"radiomics": {"classifier": "svm"}}, "svm"),
        ({"radiomics": {"max_iter": 0}}, "max_iter"),
        ({"radiomics": {"C": 0}}, "C must be > 0"),
    ],
)
def test_radiomics_config_errors(changes, message):
    with pytest.raises(ConfigError, match=message):
        from_dict(TrainConfig, RADIOMICS | changes)


def test_train_trial_refuses_the_radiomics_mode():
    cfg = to_dict(from_dict(TrainConfig, RADIOMICS))
    with pytest.raises(ConfigError, match="not trained by train_trial"):
        train_trial(cfg, lesion_data(["mass"]), lambda *_: None, fold=0)


@pytest.mark.integration
def test_radiomics_baseline_on_the_mias_subset(mias_dev_path, tmp_path, capsys):
    out = tmp_path / "rad"
    code = train_main(
        [
            "cv",
            "--config",
            "search_spaces/radiomics.yaml",
            "--data",
            str(mias_dev_path),
            "--cache",
            str(tmp_path / "cache"),
            "--out",
            str(out),
            "--quiet",
        ]
    )
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["out_of_fold"]["n"] + summary["test"]["n"] == 258
    assert set(summary["out_of_fold"]["recall"]) == set(LABELS)
    assert "out of fold: n=" in capsys.readouterr().out
