from __future__ import annotations

import math

import numpy as np
import pytest

from mammo_ray.preprocess.quality import cii, eme, psnr, ssim


def _faint_texture(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(100, 151, (64, 64), dtype=np.uint8)


def _stretch(image: np.ndarray) -> np.ndarray:
    """Linear stretch of [min, max] onto [0, 255]."""
    low, high = float(image.min()), float(image.max())
    return np.rint((image - low) * 255.0 / (high - low)).astype(np.uint8)


def test_psnr_of_identical_images_is_inf():
    image = _faint_texture()
    assert psnr(image, image) == math.inf


def test_psnr_of_known_mse_is_exact():
    reference = np.full((10, 10), 100, np.uint8)
    image = reference.copy()
    image[:5] += 10  # MSE = 100 * 50 / 100 = 50
    assert psnr(reference, image) == pytest.approx(10 * math.log10(255**2 / 50), rel=1e-12)
    assert psnr(image, reference) == pytest.approx(psnr(reference, image), rel=1e-12)


def test_psnr_does_not_wrap_around_uint8():
    black, white = np.zeros((4, 4), np.uint8), np.full((4, 4), 255, np.uint8)
    assert psnr(black, white) == pytest.approx(0.0, abs=1e-12)
    assert psnr(white, black) == pytest.approx(0.0, abs=1e-12)


def test_psnr_of_float_images_uses_data_range():
    reference = np.zeros((8, 8), np.float32)
    image = np.full((8, 8), 0.1, np.float32)
    assert psnr(reference, image, data_range=1.0) == pytest.approx(20.0, rel=1e-6)


def test_ssim_of_identical_images_is_one():
    image = _faint_texture()
    assert ssim(image, image) == pytest.approx(1.0)


def test_ssim_drops_for_a_noisy_copy():
    image = _faint_texture()
    noise = np.random.default_rng(1).integers(-20, 21, image.shape)
    noisy = np.clip(image + noise, 0, 255).astype(np.uint8)
    assert ssim(image, noisy) < 0.9


def test_eme_of_constant_image_is_zero():
    assert eme(np.full((32, 32), 77, np.uint8)) == 0.0


def test_eme_of_known_blocks():
    image = np.full((4, 8), 9, np.uint8)
    image[0, 0] = 99  # left block: 20 log10((99 + 1) / (9 + 1)) = 20 dB; right block: 0 dB
    assert eme(image, blocks=(1, 2)) == pytest.approx(10.0)
    assert eme(image, blocks=(1, 2), eps=11.0) == pytest.approx(10 * math.log10(110 / 20))


def test_eme_drops_trailing_pixels_that_do_not_fill_a_block():
    image = np.full((5, 5), 10, np.uint8)
    image[4, 4] = 200
    assert eme(image, blocks=2) == 0.0


def test_eme_and_cii_are_higher_for_a_contrast_stretched_image():
    image = _faint_texture()
    stretched = _stretch(image)
    assert eme(stretched) > eme(image) + 10.0
    assert cii(image, stretched) > 2.0
    assert cii(stretched, image) < 0.5


def test_cii_of_known_checkerboards():
    checker = (np.indices((9, 9)).sum(axis=0) % 2).astype(np.uint8)
    faint = 1 + 2 * checker  # 1 and 3: every 3 x 3 window has contrast (3 - 1) / (3 + 1) = 0.5
    strong = 1 + 8 * checker  # 1 and 9: contrast 8 / 10 = 0.8
    assert cii(faint, strong) == pytest.approx(0.8 / 0.5, rel=1e-6)
    assert cii(faint, faint) == pytest.approx(1.0)


def test_cii_of_reference_without_contrast():
    flat = np.full((8, 8), 50, np.uint8)
    assert cii(flat, flat) == 1.0
    assert cii(np.zeros((8, 8), np.uint8), flat) == 1.0
    assert cii(flat, _faint_texture()[:8, :8]) == math.inf


@pytest.mark.parametrize("measure", [psnr, ssim, cii])
@pytest.mark.parametrize(
    ("reference", "image"),
    [
        (np.zeros((8, 8)), np.zeros((8, 9))),
        (np.zeros((8, 8, 3)), np.zeros((8, 8, 3))),
        (np.zeros((0, 8)), np.zeros((0, 8))),
    ],
)
def test_pair_measures_reject_bad_shapes(measure, reference, image):
    with pytest.raises(ValueError, match="non-empty 2-D arrays of the same shape"):
        measure(reference, image)


@pytest.mark.parametrize("measure", [psnr, ssim])
def test_data_range_must_be_positive(measure):
    image = np.zeros((8, 8), np.uint8)
    with pytest.raises(ValueError, match="data_range must be > 0, got 0"):
        measure(image, image, data_range=0)


def test_ssim_rejects_images_smaller_than_its_window():
    image = np.zeros((6, 20), np.uint8)
    with pytest.raises(ValueError, match=r"at least 7 x 7 pixels, got \(6, 20\)"):
        ssim(image, image)


@pytest.mark.parametrize("blocks", [0, 9, (2, 0), (2, 2, 2), 2.0, True, (2, 2.5)])
def test_eme_rejects_bad_blocks(blocks):
    with pytest.raises(ValueError, match="blocks must be 1 or 2 integers"):
        eme(np.zeros((8, 8), np.uint8), blocks=blocks)


def test_eme_rejects_bad_input():
    with pytest.raises(ValueError, match="non-empty 2-D array, got shape"):
        eme(np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(ValueError, match="eps must be > 0, got 0"):
        eme(np.zeros((8, 8), np.uint8), eps=0)
    with pytest.raises(ValueError, match="non-negative intensities"):
        eme(np.full((8, 8), -1.0))


def test_cii_rejects_negative_values():
    with pytest.raises(ValueError, match="non-negative intensities"):
        cii(np.zeros((8, 8)), np.full((8, 8), -1.0))
