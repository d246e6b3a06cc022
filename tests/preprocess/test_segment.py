from __future__ import annotations

import re
import tarfile
from pathlib import PurePosixPath

import cv2
import numpy as np
import pytest
from skimage.filters import threshold_otsu

from mammo_ray.config import from_dict
from mammo_ray.errors import ConfigError
from mammo_ray.preprocess.quality import circles_mask, dice
from mammo_ray.preprocess.segment import (
    Segmentation,
    SegmentConfig,
    breast_mask,
    breast_side,
    candidate_dice,
    candidate_mask,
    otsu_threshold,
    pectoral_mask,
    segment,
)

SIZE = 256


def _grid(size: int = SIZE) -> tuple[np.ndarray, np.ndarray]:
    return np.mgrid[0:size, 0:size].astype(np.float64)


def _half_ellipse(side: str, size: int = SIZE) -> np.ndarray:
    """A breast-like half ellipse on the left or right edge, cut by the top edge as on MIAS."""
    rows, cols = _grid(size)
    centre_col = 0 if side == "left" else size - 1
    return ((rows - 0.45 * size) / (0.5 * size)) ** 2 + (
        (cols - centre_col) / (0.5 * size)
    ) ** 2 <= 1


def _label_box(side: str, size: int = SIZE) -> tuple[slice, slice]:
    """A bright film label in the top corner opposite the breast."""
    cols = slice(size - 50, size - 20) if side == "left" else slice(20, 50)
    return slice(10, 40), cols


def _film(side: str, tissue: np.ndarray | None = None, seed: int = 0) -> np.ndarray:
    """Noisy dark background (15), breast at 120 (or ``tissue``), a label at 230."""
    rng = np.random.default_rng(seed)
    image = rng.normal(15.0, 6.0, (SIZE, SIZE))
    breast = _half_ellipse(side)
    image[breast] = rng.normal(120.0, 8.0, int(breast.sum()))
    if tissue is not None:
        image[breast] = tissue[breast] + rng.normal(0.0, 8.0, int(breast.sum()))
    image[_label_box(side)] = 230.0
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def _corner_triangle(side: str, legs: int = 60, size: int = SIZE) -> np.ndarray:
    rows, cols = _grid(size)
    from_wall = cols if side == "left" else size - 1 - cols
    return rows + from_wall < legs


def _bbox_of(mask: np.ndarray) -> tuple[int, int, int, int]:
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def test_otsu_threshold_of_bimodal_image_lies_between_modes_and_matches_skimage():
    rng = np.random.default_rng(1)
    values = np.concatenate([rng.normal(60, 12, 30_000), rng.normal(180, 12, 20_000)])
    image = np.clip(np.rint(values), 0, 255).astype(np.uint8).reshape(250, 200)
    threshold = otsu_threshold(image)
    assert 90 < threshold < 150
    assert abs(threshold - threshold_otsu(image)) <= 2
    cv2_threshold, _ = cv2.threshold(image, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    assert abs(threshold - cv2_threshold) <= 1


def test_otsu_threshold_counts_only_masked_pixels():
    rng = np.random.default_rng(2)
    left = np.clip(rng.normal(60, 10, (100, 100)), 0, 255).astype(np.uint8)
    left[50:] = np.clip(rng.normal(160, 10, (50, 100)), 0, 255).astype(np.uint8)
    image = np.hstack([left, np.full((100, 100), 250, np.uint8)])
    mask = np.zeros(image.shape, bool)
    mask[:, :100] = True
    assert otsu_threshold(image, mask) == otsu_threshold(left)
    assert otsu_threshold(image) > otsu_threshold(left)


def test_otsu_threshold_of_constant_image_is_its_value():
    image = np.full((20, 20), 77, np.uint8)
    assert otsu_threshold(image) == 77
    assert not (image > otsu_threshold(image)).any()


@pytest.mark.parametrize(
    ("image", "mask", "match"),
    [
        (np.zeros((8, 8), np.float32), None, "2-D uint8 array, got float32"),
        (np.zeros((8, 8, 3), np.uint8), None, r"shape \(8, 8, 3\)"),
        ([[0, 1], [2, 3]], None, "got list"),
        (np.zeros((8, 8), np.uint8), np.ones((4, 4), bool), r"mask must be an array of shape"),
        (np.zeros((8, 8), np.uint8), np.zeros((8, 8), bool), "mask selects no pixel"),
    ],
)
def test_otsu_threshold_rejects_bad_input(image, mask, match):
    with pytest.raises(ValueError, match=match):
        otsu_threshold(image, mask)


@pytest.mark.parametrize("side", ["left", "right"])
def test_breast_mask_keeps_the_breast_and_drops_the_label(side):
    film = _film(side)
    mask = breast_mask(film)
    assert mask.dtype == bool and mask.shape == film.shape
    assert dice(mask, _half_ellipse(side)) > 0.95
    assert not mask[_label_box(side)].any()


def test_breast_mask_of_plain_otsu_still_finds_the_breast():
    mask = breast_mask(_film("left"), SegmentConfig(breast_threshold_scale=1.0))
    assert dice(mask, _half_ellipse("left")) > 0.95


def test_breast_mask_fills_dark_holes_inside_the_breast():
    hole = circles_mask((SIZE, SIZE), [(120.0, 50.0, 20.0)])
    film = _film("left", tissue=np.where(hole, 10.0, 120.0))
    assert breast_mask(film)[hole].all()


def test_breast_mask_fills_a_hole_that_only_the_closing_encloses():
    rows, cols = _grid()
    distance = np.hypot(rows - 128, cols - 128)
    ring = (distance >= 50) & (distance <= 80) & ~((np.abs(rows - 128) <= 3) & (cols > 128))
    film = np.where(ring, 120, 0).astype(np.uint8)
    mask = breast_mask(film)
    assert mask[distance < 50].all()


@pytest.mark.parametrize("side", ["left", "right"])
def test_breast_side_finds_the_chest_wall(side):
    assert breast_side(_half_ellipse(side)) == side
    assert breast_side(breast_mask(_film(side))) == side


def test_breast_side_is_right_away_from_the_image_edge():
    """A breast padded away from the image edge (like mdb001) is judged by its own box."""
    shifted = np.zeros((SIZE, SIZE), bool)
    shifted[:, : SIZE - 40] = _half_ellipse("right")[:, 40:]
    assert breast_side(shifted) == "right"


@pytest.mark.parametrize(
    ("mask", "match"),
    [(np.zeros((8, 8), bool), "mask is empty"), (np.ones((2, 2, 2), bool), "must be 2-D")],
)
def test_breast_side_rejects_empty_or_non_2d_mask(mask, match):
    with pytest.raises(ValueError, match=match):
        breast_side(mask)


@pytest.mark.parametrize("dark_first_row", [False, True])
@pytest.mark.parametrize("side", ["left", "right"])
def test_pectoral_mask_removes_the_corner_triangle_and_nothing_far_from_it(side, dark_first_row):
    triangle = _corner_triangle(side) & _half_ellipse(side)
    tissue = np.where(triangle, 220.0, 120.0)
    film = _film(side, tissue=tissue)
    if dark_first_row:  # as on many MIAS films; the breast mask's closing still takes it in
        film[0] = 0
    breast = breast_mask(film)
    muscle = pectoral_mask(film, breast)
    assert dice(muscle, triangle) > 0.9
    assert not (muscle & ~breast).any()
    row0, row1, col0, col1 = _bbox_of(breast)
    box = np.zeros_like(breast)
    width = int(np.ceil(0.5 * (col1 - col0)))
    box_cols = slice(col0, col0 + width) if side == "left" else slice(col1 - width, col1)
    box[row0 : row0 + int(np.ceil(0.5 * (row1 - row0))), box_cols] = True
    assert not (muscle & ~box).any()

    suppressed = segment(film, film, SegmentConfig(pectoral=True)).breast_mask
    assert (suppressed & triangle).sum() < 0.1 * triangle.sum()
    np.testing.assert_array_equal(suppressed[~box], breast[~box])


def test_pectoral_mask_finds_nothing_in_a_uniform_breast():
    film = _film("left")
    assert not pectoral_mask(film, breast_mask(film)).any()
    assert not pectoral_mask(film, np.zeros(film.shape, bool)).any()


def test_pectoral_suppression_is_off_by_default():
    triangle = _corner_triangle("left") & _half_ellipse("left")
    film = _film("left", tissue=np.where(triangle, 220.0, 120.0))
    assert SegmentConfig().pectoral is False
    assert segment(film, film).breast_mask[triangle].all()


def test_candidate_region_finds_a_bright_disc_inside_the_breast():
    disc = [(128.0, 60.0, 20.0)]
    film = _film("left", tissue=np.where(circles_mask((SIZE, SIZE), disc), 190.0, 110.0))
    enhanced = cv2.medianBlur(film, 3)
    seg = segment(film, enhanced)
    assert candidate_dice(seg, disc) > 0.7
    assert not (seg.candidate_mask & ~seg.breast_mask).any()


def test_candidate_region_drops_components_below_the_minimum_area():
    big, small = (128.0, 60.0, 20.0), (60.0, 40.0, 4.0)
    film = _film("left", tissue=np.where(circles_mask((SIZE, SIZE), [big, small]), 190.0, 110.0))
    breast = _half_ellipse("left")
    kept = candidate_mask(film, breast, SegmentConfig(candidate_open_radius=0))
    assert kept[circles_mask((SIZE, SIZE), [big])].mean() > 0.9
    assert not kept[circles_mask((SIZE, SIZE), [small])].any()
    small_kept = candidate_mask(
        film, breast, SegmentConfig(candidate_open_radius=0, candidate_min_area=10)
    )
    assert small_kept[circles_mask((SIZE, SIZE), [small])].mean() > 0.9


def test_more_candidate_passes_keep_only_the_brightest_part():
    dense, lesion = (128.0, 50.0, 45.0), (128.0, 50.0, 12.0)
    tissue = np.full((SIZE, SIZE), 80.0)
    tissue[circles_mask((SIZE, SIZE), [dense])] = 150.0
    tissue[circles_mask((SIZE, SIZE), [lesion])] = 230.0
    film = _film("left", tissue=tissue)
    breast = _half_ellipse("left")
    one_pass = candidate_mask(film, breast, SegmentConfig(candidate_passes=1))
    two_passes = candidate_mask(film, breast, SegmentConfig(candidate_passes=2))
    assert dice(one_pass, circles_mask((SIZE, SIZE), [dense])) > 0.9
    assert dice(two_passes, circles_mask((SIZE, SIZE), [lesion])) > 0.9


def test_candidate_passes_beyond_the_brightest_level_give_an_empty_region():
    film = _film("left", tissue=np.full((SIZE, SIZE), 120.0))
    assert not candidate_mask(film, _half_ellipse("left"), SegmentConfig(candidate_passes=8)).any()


def test_candidate_mask_rejects_a_breast_mask_of_another_shape():
    with pytest.raises(ValueError, match=r"breast must be an array of shape \(256, 256\)"):
        candidate_mask(_film("left"), np.ones((10, 10), bool))


def test_candidate_dice_is_none_without_circles():
    film = _film("left")
    assert candidate_dice(segment(film, film), []) is None


@pytest.mark.parametrize("side", ["left", "right"])
def test_crop_zeroes_the_background_and_its_box_is_tight(side):
    film = _film(side)
    enhanced = cv2.medianBlur(film, 3)
    seg = segment(film, enhanced)
    assert isinstance(seg, Segmentation)
    assert seg.breast_mask.dtype == bool and seg.candidate_mask.dtype == bool
    assert seg.bbox == _bbox_of(seg.breast_mask)
    row0, row1, col0, col1 = seg.bbox
    inside = seg.breast_mask[row0:row1, col0:col1]
    assert seg.cropped.dtype == np.uint8 and seg.cropped.shape == inside.shape
    assert not seg.cropped[~inside].any()
    np.testing.assert_array_equal(seg.cropped[inside], enhanced[row0:row1, col0:col1][inside])
    assert inside[0].any() and inside[-1].any() and inside[:, 0].any() and inside[:, -1].any()


def test_all_black_film_gives_empty_masks_and_the_whole_image():
    black = np.zeros((64, 48), np.uint8)
    enhanced = np.full((64, 48), 9, np.uint8)
    seg = segment(black, enhanced)
    assert not seg.breast_mask.any() and not seg.candidate_mask.any()
    assert seg.bbox == (0, 64, 0, 48)
    np.testing.assert_array_equal(seg.cropped, enhanced)
    assert seg.cropped is not enhanced
    assert not pectoral_mask(black, seg.breast_mask).any()
    assert not segment(black, black, SegmentConfig(pectoral=True)).breast_mask.any()


@pytest.mark.parametrize(
    ("original", "enhanced", "match"),
    [
        (np.zeros((8, 8), np.uint8), np.zeros((8, 9), np.uint8), "image shapes differ"),
        (
            np.zeros((8, 8), np.float64),
            np.zeros((8, 8), np.uint8),
            "original must be a 2-D uint8 array",
        ),
        (
            np.zeros((8, 8), np.uint8),
            np.zeros((2, 8, 8), np.uint8),
            "enhanced must be a 2-D uint8 array",
        ),
    ],
)
def test_segment_rejects_bad_images(original, enhanced, match):
    with pytest.raises(ValueError, match=match):
        segment(original, enhanced)


@pytest.mark.parametrize(
    ("key", "value", "match"),
    [
        ("breast_threshold_scale", 0.0, r"breast_threshold_scale must be in \(0, 1\]"),
        ("breast_threshold_scale", 1.5, r"breast_threshold_scale must be in \(0, 1\]"),
        ("pectoral_height", -0.1, r"pectoral_height must be in \(0, 1\]"),
        ("pectoral_width", "half", "pectoral_width must be a number"),
        ("breast_open_radius", -1, "breast_open_radius must be >= 0"),
        ("breast_close_radius", 2.5, "breast_close_radius must be an integer"),
        ("candidate_passes", 0, "candidate_passes must be >= 1"),
        ("candidate_open_radius", True, "candidate_open_radius must be an integer"),
        ("candidate_min_area", -5, "candidate_min_area must be >= 0"),
        ("pectoral", 1, "pectoral must be true or false"),
    ],
)
def test_segment_config_rejects_bad_values(key, value, match):
    with pytest.raises(ValueError, match=match):
        SegmentConfig(**{key: value})


def test_segment_config_from_yaml_data_names_the_bad_key():
    assert from_dict(SegmentConfig, {"breast_threshold_scale": 1}).breast_threshold_scale == 1.0
    with pytest.raises(ConfigError, match=r"segment: candidate_min_area must be >= 0, got -1"):
        from_dict(SegmentConfig, {"candidate_min_area": -1}, where="segment")
    with pytest.raises(ConfigError, match="unknown key 'kernel'"):
        from_dict(SegmentConfig, {"kernel": 3}, where="segment")


def _read_p5(data: bytes) -> np.ndarray:
    header = re.match(rb"P5\s+(\d+)\s+(\d+)\s+(\d+)\s", data)
    assert header is not None, "not a binary PGM"
    width, height, maxval = (int(v) for v in header.groups())
    assert maxval == 255
    pixels = np.frombuffer(data, np.uint8, count=width * height, offset=header.end())
    return pixels.reshape(height, width)


@pytest.mark.integration
def test_segment_real_mias_films(mias_dev_path):
    wanted = {"mdb001.pgm", "mdb002.pgm", "mdb012.pgm"}
    films = {}
    with tarfile.open(mias_dev_path, "r:gz") as archive:
        for member in archive:
            name = PurePosixPath(member.name).name
            if name in wanted:
                films[name] = _read_p5(archive.extractfile(member).read())
                if len(films) == len(wanted):
                    break
    assert set(films) == wanted
    for name, original in sorted(films.items()):
        seg = segment(original, cv2.medianBlur(original, 3))
        assert 0.15 <= seg.breast_mask.mean() <= 0.80, name
        side = breast_side(seg.breast_mask)
        # MIAS alternates breasts: odd films have the chest wall on the right of the image.
        assert side == ("right" if int(name[3:6]) % 2 else "left"), name
        far = slice(0, 32) if side == "right" else slice(-32, None)
        assert not seg.breast_mask[:32, far].any() and not seg.breast_mask[-32:, far].any(), name
        assert seg.cropped.dtype == np.uint8 and seg.cropped.size > 0 and seg.cropped.any(), name
