"""Tests of ``input.mode: patch+bilateral``: film pairs, bilateral map features (their sign,
the mirrored local comparison, the missing partner), the pair model against the features
``train cv`` computes, through a checkpoint, and the score maps drawn beside LIME."""

from __future__ import annotations

import numpy as np
import pytest
import timm
import torch
from matplotlib.patches import Rectangle

from mammo_ray.config import from_dict, to_dict
from mammo_ray.data.mias_info import LABELS
from mammo_ray.explain.score_map_figure import score_map_figure, write_score_map_figures
from mammo_ray.learn.augment import build_eval_transforms
from mammo_ray.learn.bilateral import partner_rows
from mammo_ray.learn.bilateral_maps import (
    BILATERAL_FEATURES,
    AbnormalMaps,
    BilateralScoreMapModel,
    abnormal_maps,
    features_of_film_maps,
    film_statistics,
    pair_films,
)
from mammo_ray.learn.checkpoint import load_trained, save_checkpoint
from mammo_ray.learn.config import TrainConfig
from mammo_ray.learn.ensemble import FoldEnsemble
from mammo_ray.learn.inference import predict
from mammo_ray.learn.models import GRAY_MEAN, GRAY_STD
from mammo_ray.learn.score_maps import MAP_FEATURES, predict_maps, set_head
from mammo_ray.learn.score_maps import fit_aggregation as fit_head
from mammo_ray.learn.trial import input_images
from tests.lesion_films import lesion_data
from tests.test_patch_mode import PATCH

NORMAL, MASS, CALC = range(3)


def _maps(hot: list[tuple[int, int]], shape=(5, 6)) -> np.ndarray:
    """(3, h, w) probability maps, normal everywhere except a mass in each window of ``hot``."""
    proba = np.zeros((3, *shape), np.float32)
    proba[NORMAL], proba[MASS] = 0.9, 0.1
    for row, col in hot:
        proba[:, row, col] = (0.1, 0.8, 0.1)
    return proba


def _features(own_hot, partner_hot) -> list[dict[str, float]]:
    """Named bilateral features of a patient's two films with masses at the given windows."""
    proba = np.stack([_maps(own_hot), _maps(partner_hot)])
    inside = np.ones((2, 5, 6), bool)
    statistics = np.array([[1.0, 0.5, 1.5, 2.0, 0.4], [0.8, 0.5, 1.2, 1.8, 0.4]], np.float32)
    features = features_of_film_maps(proba, inside, statistics, np.array([1, 0]), top_k=2)
    return [dict(zip(BILATERAL_FEATURES, row, strict=True)) for row in features]


def test_pair_films_put_the_mirrored_partner_on_the_right():
    films = np.arange(3 * 2 * 3, dtype=np.uint8).reshape(3, 2, 3)
    pairs = pair_films(films, np.array([1, 0, -1]))
    assert pairs.shape == (3, 2, 6)
    np.testing.assert_array_equal(pairs[0], np.hstack([films[0], films[1][:, ::-1]]))
    np.testing.assert_array_equal(pairs[1], np.hstack([films[1], films[0][:, ::-1]]))
    np.testing.assert_array_equal(pairs[2, :, 3:], 0)


def test_bilateral_features_flip_sign_when_the_lesion_moves_to_the_other_breast():
    left, right = _features([(2, 1)], [])
    assert left["max_mass_minus_other"] == pytest.approx(0.7)
    assert right["max_mass_minus_other"] == pytest.approx(-0.7)
    assert left["local_mass"] == pytest.approx(0.7) and right["local_mass"] == 0
    assert left["mean_minus_other"] == pytest.approx(0.2)
    assert right["mean_minus_other"] == pytest.approx(-0.2)
    moved_left, moved_right = _features([], [(2, 1)])
    assert moved_left["max_mass_minus_other"] == pytest.approx(-0.7)
    assert moved_right["max_mass_minus_other"] == pytest.approx(0.7)
    assert moved_right["local_mass"] == pytest.approx(0.7) and moved_left["local_mass"] == 0
    assert left["has_partner"] == right["has_partner"] == 1


def test_local_asymmetry_compares_the_mirrored_place_of_the_other_breast():
    """A mass in both breasts at mirrored places (column 1 of 6 against column 4) cancels; the
    same mass at a non-mirrored place of the other breast does not."""
    mirrored, _ = _features([(2, 1)], [(2, 4)])
    assert mirrored["local_mass"] == pytest.approx(0.0)
    assert mirrored["max_mass_minus_other"] == pytest.approx(0.0)
    elsewhere, _ = _features([(2, 1)], [(2, 1)])
    assert elsewhere["local_mass"] == pytest.approx(0.7)


def test_a_film_without_partner_keeps_only_its_own_features():
    proba, inside = _maps([(2, 1)])[None], np.ones((1, 5, 6), bool)
    statistics = np.ones((1, 5), np.float32)
    features = features_of_film_maps(proba, inside, statistics, np.array([-1]), top_k=2)[0]
    own = len(MAP_FEATURES)
    assert features[:own].max() == pytest.approx(0.9)
    np.testing.assert_array_equal(features[own:], 0)


def _pair_features(model: BilateralScoreMapModel, pairs: np.ndarray) -> np.ndarray:
    """The model's features of uint8 film pairs, normalised as in evaluation."""
    transform = build_eval_transforms(GRAY_MEAN, GRAY_STD)
    with torch.no_grad():
        return model.pair_features(transform(torch.from_numpy(pairs)[:, None])).numpy()


def test_the_pair_model_reads_what_cross_validation_fitted_through_a_checkpoint(tmp_path):
    """Features of film pairs through the model equal those ``train cv`` computes from the
    films' own maps, with or without a partner; the head is the fitted aggregation; the
    checkpoint gives the model back."""
    data = lesion_data(["mass", "normal", "calc", "normal", "normal", "mass"], sizes=(256,))
    films = data.arrays["enhanced_256"]
    partners = partner_rows(data.patient_ids)
    patch_model = timm.create_model("mobilenetv2_100", num_classes=3, in_chans=1)
    model = BilateralScoreMapModel(patch_model, 64, stride=32).eval()
    proba, inside, _ = predict_maps(model.score_maps, films)
    features = features_of_film_maps(proba, inside, film_statistics(films), partners, 3)
    pairs = pair_films(films, partners)
    np.testing.assert_allclose(_pair_features(model, pairs), features, atol=1e-4)
    aggregation = fit_head(features, data.labels)
    set_head(model, aggregation)
    with torch.no_grad():
        head = model.head(torch.from_numpy(features)).softmax(1).numpy()
    np.testing.assert_allclose(head, aggregation.predict_proba(features), atol=1e-5)
    bilateral = {"input": {"mode": "patch+bilateral"}, "patch": {"size": 64, "stride": 32}}
    config = to_dict(from_dict(TrainConfig, PATCH | bilateral))
    save_checkpoint(
        tmp_path / "model.pt", model, config=config, labels=list(LABELS), preprocess_key="pairs"
    )
    loaded = load_trained(tmp_path / "model.pt").model
    assert isinstance(loaded, BilateralScoreMapModel)
    np.testing.assert_allclose(_pair_features(loaded, pairs), features, atol=1e-4)
    torch.testing.assert_close(loaded.head.state_dict(), model.head.state_dict())
    alone = features_of_film_maps(
        proba[:1], inside[:1], film_statistics(films[:1]), np.array([-1]), 3
    )
    lone_pair = pair_films(films[:1], np.array([-1]))
    np.testing.assert_allclose(_pair_features(loaded, lone_pair), alone, atol=1e-4)
    assert predict(loaded, torch.from_numpy(lone_pair)).shape == (1, 3)


def test_abnormal_maps_average_fold_members_and_skip_whole_film_models():
    data = lesion_data(["mass", "normal"], sizes=(256,))
    films = data.arrays["enhanced_256"]
    members = [
        BilateralScoreMapModel(
            timm.create_model("mobilenetv2_100", num_classes=3, in_chans=1), 64, 32
        ).eval()
        for _ in range(2)
    ]
    maps = abnormal_maps(FoldEnsemble(members), films)
    each = [abnormal_maps(m, films).abnormal for m in members]
    np.testing.assert_allclose(maps.abnormal, np.mean(each, axis=0), atol=1e-6)
    assert maps.abnormal.shape == maps.inside.shape == (len(films), 7, 7)
    assert (maps.patch_size, maps.stride) == (64, 32)
    assert abnormal_maps(timm.create_model("mobilenetv2_100", num_classes=3), films) is None


def test_score_map_figure_outlines_the_most_abnormal_window(tmp_path):
    film = np.full((256, 256), 100, np.uint8)
    abnormal = np.zeros((7, 7), np.float32)
    abnormal[2, 5], abnormal[6, 6] = 0.8, 0.9
    inside = np.ones((7, 7), bool)
    inside[6, 6] = False
    figure = score_map_figure(
        film, abnormal, inside, 64, 32, title="t", circles=[(100.0, 180.0, 20.0)]
    )
    film_axes, map_axes = figure.axes[:2]
    (outline,) = [p for p in map_axes.patches if isinstance(p, Rectangle)]
    assert outline.get_xy() == (5 * 32 - 0.5, 2 * 32 - 0.5) and outline.get_width() == 64
    assert len(film_axes.patches) == 1 and len(figure.axes) == 3
    maps = AbnormalMaps(abnormal[None], inside[None], 64, 32)
    names = write_score_map_figures(film[None], maps, ["f1"], [[]], tmp_path)
    assert names == ["f1_scoremap.png"] and (tmp_path / "f1_scoremap.png").stat().st_size > 0


def test_input_images_of_some_films_are_those_rows_of_all_of_them():
    data = lesion_data(["mass", "calc", "normal"], sizes=(256,))
    cfg = from_dict(TrainConfig, PATCH | {"input": {"mode": "patch+bilateral"}})
    every = input_images(cfg, data)
    rows = np.array([4, 1, 2])
    np.testing.assert_array_equal(input_images(cfg, data, rows), every[rows])
    assert every[1, :, 256:].any(), "film 2 is film 1's partner"
    single = from_dict(TrainConfig, PATCH)
    np.testing.assert_array_equal(input_images(single, data, rows), every[rows, :, :256])
