"""Tests of mammo_ray.learn.lesions: lesion masks, the patch sampler and patch extraction on
synthetic films with known lesions."""

from __future__ import annotations

import numpy as np
import pytest

from mammo_ray.config import from_dict
from mammo_ray.data.mias_info import LABELS, MiasRecord, RoiCircle
from mammo_ray.errors import ConfigError
from mammo_ray.learn.lesions import (
    PatchSet,
    SamplerConfig,
    extract_patches,
    film_circles,
    lesion_mask,
    sample_patches,
)

SIZE = 256
NORMAL, MASS, CALC = (LABELS.index(n) for n in LABELS)


def _films() -> tuple[np.ndarray, np.ndarray, list[list[tuple[float, float, float]]], np.ndarray]:
    """Four 256 px films, breast in the left 60%: normal, a bright disc (mass), a speck
    cluster (calc), and a calc film with no circle."""
    rng = np.random.default_rng(0)
    images = rng.integers(60, 90, (4, SIZE, SIZE)).astype(np.uint8)
    breasts = np.zeros((4, SIZE, SIZE), np.uint8)
    breasts[:, :, : int(0.6 * SIZE)] = 255
    images[breasts == 0] = 0
    rows, cols = np.mgrid[:SIZE, :SIZE]
    images[1][(rows - 100) ** 2 + (cols - 80) ** 2 <= 20**2] = 220
    for dr, dc in [(0, 0), (4, 6), (-5, 3), (2, -6)]:
        images[2, 150 + dr, 60 + dc] = 255
    circles = [[], [(100.0, 80.0, 20.0)], [(150.0, 60.0, 10.0)], []]
    return images, breasts, circles, np.array([NORMAL, MASS, CALC, CALC])


def test_positives_lie_in_their_lesion_and_negatives_in_lesion_free_breast():
    images, breasts, circles, labels = _films()
    cfg = SamplerConfig(positives_per_lesion=50, negatives_per_film=40, jitter=0.5)
    patches = sample_patches(np.random.default_rng(1), breasts, circles, labels, range(4), 32, cfg)
    positive = patches.label != NORMAL
    assert sorted(set(patches.film[positive].tolist())) == [1, 2]
    for film in (1, 2):
        row, col, radius = circles[film][0]
        mine = patches.film == film
        assert (patches.label[mine & positive] == labels[film]).all()
        distance = np.hypot(*(patches.centre[mine & positive] - [row, col]).T)
        assert distance.max() <= 0.5 * radius + 1e-4
        far = np.hypot(*(patches.centre[mine & ~positive] - [row, col]).T)
        assert far.min() >= 1.5 * radius - 1
    assert 3 not in patches.film, "an abnormal film without a circle gives no patch"
    negative_rows, negative_cols = patches.centre[~positive].astype(int).T
    assert (breasts[patches.film[~positive], negative_rows, negative_cols] > 0).all()
    assert np.bincount(patches.film, minlength=4).tolist() == [40, 90, 90, 0]


def test_jitter_is_capped_at_a_quarter_patch():
    breasts = np.full((1, 512, 512), 255, np.uint8)
    cfg = SamplerConfig(positives_per_lesion=200, negatives_per_film=0, jitter=1.0)
    patches = sample_patches(
        np.random.default_rng(0), breasts, [[(256.0, 256.0, 150.0)]], np.array([MASS]), [0], 64, cfg
    )
    assert np.hypot(*(patches.centre - 256).T).max() <= 16 + 1e-4


def test_sampler_is_reproducible_and_draws_only_the_requested_films():
    _, breasts, circles, labels = _films()
    first = sample_patches(np.random.default_rng(3), breasts, circles, labels, [0, 1], 32)
    second = sample_patches(np.random.default_rng(3), breasts, circles, labels, [0, 1], 32)
    np.testing.assert_array_equal(first.centre, second.centre)
    assert set(first.film.tolist()) == {0, 1}
    empty = sample_patches(np.random.default_rng(3), breasts, circles, labels, [3], 32)
    assert len(empty) == 0 and empty.centre.shape == (0, 2)


def test_extracted_patches_show_the_lesion_under_every_augmentation():
    images, breasts, circles, labels = _films()
    cfg = SamplerConfig(positives_per_lesion=20, negatives_per_film=20, jitter=0.25)
    patches = sample_patches(np.random.default_rng(2), breasts, circles, labels, [1], 32, cfg)
    plain = extract_patches(images, patches, 32)
    augmented = extract_patches(images, patches, 32, np.random.default_rng(0), scale=1.25)
    positive = patches.label == MASS
    for cut in (plain, augmented):
        assert cut.shape == (40, 32, 32) and cut.dtype == np.uint8
        assert (cut[positive][:, 12:20, 12:20] >= 200).all(), "the disc fills the centre"
        assert (cut[~positive] < 200).mean() > 0.9
    assert not np.array_equal(plain, augmented)


def test_patches_beyond_the_film_edge_are_zero_there():
    image = np.full((1, 64, 64), 100, np.uint8)
    patch = extract_patches(
        image, PatchSet(np.array([0]), np.array([[0.0, 0.0]]), np.array([0])), 16
    )
    assert (patch[0, :8, :] == 0).all() and (patch[0, 8:, 8:] == 100).all()


def test_film_circles_follow_the_resized_array_and_lesion_mask_grows():
    record = MiasRecord("mdb002", 1, "mass", "G", "B", ("CIRC",), (RoiCircle(511.5, 255.5, 40.0),))
    normal = MiasRecord("mdb001", 1, "normal", "G", None, ("NORM",))
    circles = film_circles([record, normal], 256, [(1024, 1024), (1024, 1024)])
    assert circles[1] == []
    ((row, col, radius),) = circles[0]
    assert (row, col, radius) == pytest.approx((127.5, 63.5, 10.0))
    assert lesion_mask((256, 256), circles[0]).sum() < lesion_mask((256, 256), circles[0], 2).sum()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("positives_per_lesion", 0),
        ("negatives_per_film", -1),
        ("jitter", 1.5),
        ("exclusion", 0.5),
        ("scale", 0.9),
    ],
)
def test_sampler_config_rejects_bad_values(field, value):
    with pytest.raises(ConfigError, match=field):
        from_dict(SamplerConfig, {field: value})
