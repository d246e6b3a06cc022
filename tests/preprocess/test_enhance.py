from __future__ import annotations

import dataclasses
import math
import tarfile
import typing

import numpy as np
import pytest

from mammo_ray.config import from_dict
from mammo_ray.errors import ConfigError
from mammo_ray.preprocess.enhance import (
    ENHANCE_METHODS,
    EnhanceConfig,
    adaptive_clahe,
    adaptive_clip_limit,
    clahe,
    enhance,
    estimate_noise_variance,
    histogram_equalize,
    lcm_enhance,
    median_filter,
    wiener_filter,
)
from mammo_ray.preprocess.quality import psnr

UINT8_STEPS = {
    "median": median_filter,
    "lcm": lcm_enhance,
    "clahe": clahe,
    "adaptive_clahe": adaptive_clahe,
    "histogram_equalize": histogram_equalize,
    "wiener": wiener_filter,
    **{
        f"enhance_{m}": (lambda image, m=m: enhance(image, EnhanceConfig(method=m)))
        for m in ENHANCE_METHODS
    },
}


def _step_image(shape=(64, 64), edge=32, low=60, high=180) -> np.ndarray:
    image = np.full(shape, low, np.uint8)
    image[:, edge:] = high
    return image


def _texture(shape=(96, 96), mean=120.0, amplitude=5.0, period=8) -> np.ndarray:
    rows, cols = np.mgrid[: shape[0], : shape[1]]
    wave = np.sin(2 * np.pi * rows / period) * np.sin(2 * np.pi * cols / period)
    return np.rint(mean + amplitude * wave).astype(np.uint8)


@pytest.mark.parametrize("name", UINT8_STEPS)
@pytest.mark.parametrize("value", [0, 37, 255])
def test_constant_image_is_returned_unchanged(name, value):
    image = np.full((40, 56), value, np.uint8)
    out = UINT8_STEPS[name](image)
    np.testing.assert_array_equal(out, image)


@pytest.mark.parametrize("step", [lcm_enhance, wiener_filter])
def test_constant_float_image_is_returned_unchanged(step):
    image = np.full((32, 32), 0.4, np.float32)
    np.testing.assert_allclose(step(image), image, atol=1e-6)


@pytest.mark.parametrize("name", UINT8_STEPS)
def test_uint8_in_uint8_out_same_shape(name):
    image = np.random.default_rng(0).integers(0, 256, (37, 53), dtype=np.uint8)
    out = UINT8_STEPS[name](image)
    assert out.dtype == np.uint8
    assert out.shape == image.shape
    assert out is not image


@pytest.mark.parametrize("name", UINT8_STEPS)
def test_step_edge_keeps_position_and_order(name):
    image = _step_image()
    out = UINT8_STEPS[name](image).astype(int)
    left, right = out[:, :32], out[:, 32:]
    assert left.max() < right.min(), "every dark pixel stays darker than every bright pixel"
    assert (out[:, 31] < out[:, 32]).all()
    assert np.ptp(out, axis=0).max() == 0, "rows stay identical: nothing moves along the edge"


def test_median_removes_isolated_salt_and_pepper():
    image = np.full((30, 30), 100, np.uint8)
    image[5::6, 5::6] = 255
    image[8::6, 2::6] = 0
    np.testing.assert_array_equal(median_filter(image, 3), np.full_like(image, 100))
    np.testing.assert_array_equal(median_filter(image, 5), np.full_like(image, 100))


def test_median_ksize_one_is_identity():
    image = np.random.default_rng(1).integers(0, 256, (9, 9), dtype=np.uint8)
    np.testing.assert_array_equal(median_filter(image, 1), image)


def _noisy_constant(variance: float, seed: int = 0) -> np.ndarray:
    noise = np.random.default_rng(seed).normal(0.0, math.sqrt(variance), (128, 128))
    return np.clip(np.rint(128.0 + noise), 0, 255).astype(np.uint8)


def test_wiener_noise_estimate_is_close_to_the_true_variance():
    image = _noisy_constant(100.0)
    # the local variance is biased (divides by n = 25): expect 24/25 of the sample variance
    sample_variance = image.astype(float).var()
    assert sample_variance == pytest.approx(100.0, rel=0.02)
    assert estimate_noise_variance(image, 5) == pytest.approx(sample_variance * 24 / 25, rel=0.02)


def test_wiener_reduces_noise_variance_substantially():
    image = _noisy_constant(100.0)
    out = wiener_filter(image, 5)
    assert out.astype(float).var() < 0.2 * image.astype(float).var()
    assert abs(out.astype(float).mean() - 128.0) < 1.0


def test_wiener_with_known_noise_on_float_image():
    image = _noisy_constant(100.0).astype(np.float32) / 255
    out = wiener_filter(image, 5, noise=100.0 / 255**2)
    assert out.dtype == np.float32
    assert out.var() < 0.2 * image.var()


def test_wiener_with_zero_noise_keeps_the_image():
    image = _texture()
    np.testing.assert_array_equal(wiener_filter(image, 5, noise=0.0), image)


def _naive_local_stats(image: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Local mean and (biased) variance by explicit windows over a reflect-101 padded image."""
    padded = np.pad(image.astype(np.float64), window // 2, mode="reflect")
    windows = np.lib.stride_tricks.sliding_window_view(padded, (window, window))
    return windows.mean(axis=(2, 3)), windows.var(axis=(2, 3))


def test_lcm_matches_the_documented_formula():
    # skewed intensities (mean far from median), most gains strictly inside the bounds
    image = (40 + np.random.default_rng(3).exponential(30, (12, 14))).astype(np.uint8)
    mean, var = _naive_local_stats(image, 5)
    raw_gain = 0.6 * image.mean() / np.sqrt(var)
    assert ((raw_gain > 1.2) & (raw_gain < 2.5)).mean() > 0.5
    gain = np.clip(raw_gain, 1.2, 2.5)
    expected = np.clip(np.rint(mean + gain * (image - mean)), 0, 255)
    out = lcm_enhance(image, 5, k=0.6, gain_min=1.2, gain_max=2.5)
    assert np.abs(out.astype(int) - expected).max() <= 1


def test_wiener_matches_the_documented_formula():
    image = np.random.default_rng(4).integers(0, 256, (12, 14), dtype=np.uint8)
    mean, var = _naive_local_stats(image, 3)
    for noise in (None, 500.0):
        nu2 = var.mean() if noise is None else noise
        gain = np.maximum(var - nu2, 0) / np.maximum(var, nu2)
        expected = np.clip(np.rint(mean + gain * (image - mean)), 0, 255)
        out = wiener_filter(image, 3, noise=noise)
        assert np.abs(out.astype(int) - expected).max() <= 1
    assert estimate_noise_variance(image, 3) == pytest.approx(var.mean(), rel=1e-5)


def test_lcm_increases_local_contrast_of_faint_texture():
    image = _texture(amplitude=5.0)
    out = lcm_enhance(image, 15)
    centre = (slice(16, -16), slice(16, -16))
    assert out[centre].astype(float).std() > 2.0 * image[centre].astype(float).std()
    assert abs(out[centre].astype(float).mean() - image[centre].astype(float).mean()) < 2.0


def test_lcm_gain_one_is_identity():
    image = _texture()
    np.testing.assert_array_equal(lcm_enhance(image, 15, gain_min=1.0, gain_max=1.0), image)


def test_lcm_float_matches_uint8_on_the_same_scale():
    image = _texture(amplitude=20.0)
    as_uint8 = lcm_enhance(image).astype(np.float32) / 255
    as_float = lcm_enhance(image.astype(np.float32) / 255)
    assert as_float.dtype == np.float32
    assert np.abs(as_float - as_uint8).max() <= 1.0 / 255 + 1e-6


def test_adaptive_clip_is_higher_for_low_contrast():
    rng = np.random.default_rng(2)
    low = rng.integers(100, 131, (64, 64), dtype=np.uint8)
    high = rng.integers(20, 256, (64, 64), dtype=np.uint8)
    assert adaptive_clip_limit(low) > adaptive_clip_limit(high)
    # the higher clip stretches the faint image further than the clip of a contrasty one would
    stronger = adaptive_clahe(low, tiles=2).astype(float).std()
    weaker = clahe(low, adaptive_clip_limit(high), tiles=2).astype(float).std()
    assert stronger > 1.2 * weaker


def test_adaptive_clip_follows_the_documented_rule():
    image = np.zeros((40, 40), np.uint8)
    image[:10] = 50
    image[10:20] = 150
    # breast pixels: half 50, half 150 -> std 50; background zeros are ignored
    expected = 1.0 + (4.0 - 1.0) * (1.0 - 50.0 / 80.0)
    assert adaptive_clip_limit(image) == pytest.approx(expected)
    np.testing.assert_array_equal(adaptive_clahe(image), clahe(image, expected))
    assert adaptive_clip_limit(image, std_ref=40.0) == 1.0
    assert adaptive_clip_limit(np.full((8, 8), 5, np.uint8)) == 4.0


BAD_IMAGES = {
    "3-D": np.zeros((8, 8, 3), np.uint8),
    "1-D": np.zeros(8, np.uint8),
    "empty": np.zeros((0, 8), np.uint8),
    "float64": np.zeros((8, 8), np.float64),
    "uint16": np.zeros((8, 8), np.uint16),
}


@pytest.mark.parametrize("name", UINT8_STEPS)
@pytest.mark.parametrize("kind", BAD_IMAGES)
def test_bad_image_raises_value_error(name, kind):
    with pytest.raises(ValueError, match="image must be a non-empty 2-D"):
        UINT8_STEPS[name](BAD_IMAGES[kind])


@pytest.mark.parametrize("step", [median_filter, clahe, adaptive_clahe, histogram_equalize])
def test_uint8_only_steps_reject_float32(step):
    with pytest.raises(ValueError, match="uint8 array, got dtype float32"):
        step(np.zeros((8, 8), np.float32))


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda im: median_filter(im, 4), "ksize must be an odd integer >= 1, got 4"),
        (lambda im: median_filter(im, 0), "ksize must be an odd integer >= 1, got 0"),
        (lambda im: median_filter(im, 3.0), "ksize must be an odd integer >= 1, got 3.0"),
        (lambda im: lcm_enhance(im, 8), "window must be an odd integer >= 3, got 8"),
        (lambda im: lcm_enhance(im, 1), "window must be an odd integer >= 3, got 1"),
        (lambda im: lcm_enhance(im, k=0.0), "k must be > 0, got 0.0"),
        (lambda im: lcm_enhance(im, gain_min=3.0, gain_max=2.0), "gain_min must be <= gain_max"),
        (lambda im: lcm_enhance(im, gain_min=-1.0), "gain_min must be > 0, got -1.0"),
        (lambda im: wiener_filter(im, 4), "window must be an odd integer >= 3, got 4"),
        (lambda im: wiener_filter(im, noise=-1.0), "noise must be >= 0 or None, got -1.0"),
        (lambda im: estimate_noise_variance(im, 6), "window must be an odd integer >= 3, got 6"),
        (lambda im: clahe(im, clip_limit=0.0), "clip_limit must be > 0, got 0.0"),
        (lambda im: clahe(im, tiles=0), "tiles must be an integer >= 1, got 0"),
        (lambda im: adaptive_clahe(im, tiles=2.5), "tiles must be an integer >= 1, got 2.5"),
        (lambda im: adaptive_clahe(im, clip_min=5.0), "clip_min must be <= clip_max"),
        (lambda im: adaptive_clip_limit(im, std_ref=0.0), "std_ref must be > 0, got 0.0"),
        (lambda im: adaptive_clip_limit(im, background=255), "background must be an integer"),
    ],
)
def test_bad_parameter_raises_value_error(call, match):
    with pytest.raises(ValueError, match=match):
        call(np.zeros((16, 16), np.uint8))


def test_enhance_methods_match_the_config_literal():
    assert ENHANCE_METHODS == ("paper", "none", "he", "clahe")
    hints = typing.get_type_hints(EnhanceConfig)
    assert typing.get_args(hints["method"]) == ENHANCE_METHODS


def test_enhance_methods_are_the_documented_compositions():
    image = _texture(amplitude=30.0)
    cfg = EnhanceConfig(lcm_window=9, clahe_tiles=4, wiener_window=3)
    expected = wiener_filter(adaptive_clahe(lcm_enhance(median_filter(image, 3), 9), tiles=4), 3)
    np.testing.assert_array_equal(enhance(image, cfg), expected)
    none = enhance(image, EnhanceConfig(method="none"))
    np.testing.assert_array_equal(none, image)
    assert none is not image
    np.testing.assert_array_equal(
        enhance(image, EnhanceConfig(method="he")), histogram_equalize(image)
    )
    fixed = EnhanceConfig(method="clahe", clahe_clip=3.0, clahe_tiles=2)
    np.testing.assert_array_equal(enhance(image, fixed), clahe(image, 3.0, 2))


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        (
            {"method": "retinex"},
            "method must be one of 'paper', 'none', 'he', 'clahe', got 'retinex'",
        ),
        ({"median_ksize": 4}, "median_ksize must be an odd integer >= 1, got 4"),
        ({"lcm_window": 0}, "lcm_window must be an odd integer >= 3, got 0"),
        ({"lcm_k": -0.1}, "lcm_k must be > 0, got -0.1"),
        ({"lcm_gain_min": 2.0, "lcm_gain_max": 1.5}, "lcm_gain_min must be <= lcm_gain_max"),
        ({"clahe_tiles": 0}, "clahe_tiles must be an integer >= 1, got 0"),
        ({"clahe_clip_min": 0.0}, "clahe_clip_min must be > 0, got 0.0"),
        ({"clahe_clip_min": 5.0}, "clahe_clip_min must be <= clahe_clip_max"),
        ({"clahe_std_ref": 0.0}, "clahe_std_ref must be > 0, got 0.0"),
        ({"clahe_background": -1}, r"clahe_background must be an integer in \[0, 254\], got -1"),
        ({"clahe_clip": 0.0}, "clahe_clip must be > 0, got 0.0"),
        ({"wiener_window": 2}, "wiener_window must be an odd integer >= 3, got 2"),
        ({"wiener_noise": -2.0}, "wiener_noise must be >= 0 or None, got -2.0"),
    ],
)
def test_enhance_config_validation(changes, match):
    with pytest.raises(ValueError, match=match):
        EnhanceConfig(**changes)


def test_enhance_config_from_dict_names_the_source():
    cfg = from_dict(EnhanceConfig, {"method": "clahe", "clahe_clip": 3, "wiener_noise": None})
    assert cfg == dataclasses.replace(EnhanceConfig(), method="clahe", clahe_clip=3.0)
    with pytest.raises(ConfigError, match="enhance.yaml: median_ksize must be an odd integer"):
        from_dict(EnhanceConfig, {"median_ksize": 2}, where="enhance.yaml")
    with pytest.raises(ConfigError, match=r"enhance.yaml.method: 'retinex' is not one of"):
        from_dict(EnhanceConfig, {"method": "retinex"}, where="enhance.yaml")


def _read_first_mias_image(path) -> np.ndarray:
    """First ``mdbNNN.pgm`` of the archive, decoded as a binary (P5) 8-bit PGM."""
    with tarfile.open(path, "r:*") as archive:
        for member in archive:
            if member.isfile() and member.name.rsplit("/", 1)[-1].startswith("mdb"):
                data = archive.extractfile(member).read()
                break
        else:
            pytest.fail(f"{path}: no mdbNNN.pgm member")
    magic, width, height, maxval = data.split(maxsplit=4)[:4]
    assert (magic, maxval) == (b"P5", b"255")
    size = int(width) * int(height)
    return np.frombuffer(data[-size:], np.uint8).reshape(int(height), int(width))


@pytest.mark.integration
def test_paper_enhancement_on_a_real_mias_image(mias_dev_path):
    image = _read_first_mias_image(mias_dev_path)
    out = enhance(image, EnhanceConfig())
    assert out.dtype == np.uint8
    assert out.shape == (1024, 1024)
    value = psnr(image, out)
    assert math.isfinite(value)
    assert value > 15.0
