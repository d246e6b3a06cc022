"""Tests of mammo_ray.augment: the vectorised affine warp, normalisation, offline copies."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from mammo_ray.config import from_dict
from mammo_ray.errors import ConfigError
from mammo_ray.learn.augment import (
    AffineParams,
    AugmentConfig,
    affine_theta,
    build_eval_transforms,
    build_train_transforms,
    expand_offline,
    random_affine,
    sample_affine_params,
    warp_affine,
)

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _smooth(height: int = 64, width: int = 64) -> torch.Tensor:
    """(1, 1, H, W) float32 smooth test pattern in [0, 255], not symmetric in x or y."""
    y, x = torch.meshgrid(
        torch.arange(height, dtype=torch.float32),
        torch.arange(width, dtype=torch.float32),
        indexing="ij",
    )
    image = 110.0 + 60.0 * torch.sin(x / 7.0) * torch.cos(y / 5.0) + 0.8 * x - 0.3 * y
    return image[None, None]


def _params(angle=0.0, translate=(0.0, 0.0), scale=1.0, shear=(0.0, 0.0), hflip=False, vflip=False):
    return AffineParams(
        angle=torch.tensor([angle]),
        translate=torch.tensor([translate], dtype=torch.float32),
        scale=torch.tensor([scale]),
        shear=torch.tensor([shear], dtype=torch.float32),
        hflip=torch.tensor([hflip]),
        vflip=torch.tensor([vflip]),
    )


def _generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("device", DEVICES)
def test_identity_params_give_identity_output(device):
    image = _smooth(40, 56).to(device)
    theta = affine_theta(_params(), 40, 56)
    assert torch.allclose(warp_affine(image, theta), image, atol=1e-3)
    as_uint8 = image.round().to(torch.uint8)
    assert torch.equal(warp_affine(as_uint8, theta), as_uint8)


@pytest.mark.parametrize("size", [(64, 64), (48, 80)])
@pytest.mark.parametrize(
    ("angle", "translate", "scale", "shear"),
    [(12.0, (5.0, -3.0), 1.08, (7.0, 0.0)), (-25.0, (0.0, 4.0), 0.9, (-9.0, 6.0))],
)
def test_warp_agrees_with_torchvision_affine(size, angle, translate, scale, shear):
    image = _smooth(*size)
    expected = TF.affine(
        image,
        angle=angle,
        translate=list(translate),
        scale=scale,
        shear=list(shear),
        interpolation=InterpolationMode.BILINEAR,
    )
    got = warp_affine(image, affine_theta(_params(angle, translate, scale, shear), *size))
    inner = (slice(None), slice(None), slice(8, -8), slice(8, -8))
    assert (got - expected)[inner].abs().mean() < 0.01
    assert (got - expected).abs().max() < 0.05


def test_flips_agree_with_torch_flip():
    image = _smooth(32, 48).round().to(torch.uint8)
    horizontal = warp_affine(image, affine_theta(_params(hflip=True), 32, 48))
    vertical = warp_affine(image, affine_theta(_params(vflip=True), 32, 48))
    assert torch.equal(horizontal, torch.flip(image, dims=[3]))
    assert torch.equal(vertical, torch.flip(image, dims=[2]))


def test_each_image_of_a_batch_gets_its_own_parameters():
    batch = _smooth(48, 48).repeat(6, 1, 1, 1)
    warped = random_affine(batch, AugmentConfig(), _generator())
    for i in range(6):
        for j in range(i + 1, 6):
            assert (warped[i] - warped[j]).abs().mean() > 0.5, (i, j)


def test_sampled_parameters_stay_in_their_ranges():
    cfg = AugmentConfig(shift=0.1, shear=10.0, zoom=0.2, rotation=15.0, hflip=True)
    params = sample_affine_params(cfg, 2000, 100, 200, _generator())
    assert params.angle.abs().max() <= 15.0 and params.angle.abs().max() > 14.0
    assert params.translate[:, 0].abs().max() <= 20.0 and params.translate[:, 0].abs().max() > 19.0
    assert params.translate[:, 1].abs().max() <= 10.0 and params.translate[:, 1].abs().max() > 9.0
    assert params.scale.min() >= 0.8 and params.scale.max() <= 1.2
    assert params.shear[:, 0].abs().max() <= 10.0 and torch.all(params.shear[:, 1] == 0)
    assert 800 < int(params.hflip.sum()) < 1200
    assert not params.vflip.any()


def test_random_affine_is_deterministic_for_a_seed():
    batch = _smooth().repeat(3, 1, 1, 1).round().to(torch.uint8)
    cfg = AugmentConfig(rotation=10.0, hflip=True)
    first = random_affine(batch, cfg, _generator(5))
    assert torch.equal(random_affine(batch, cfg, _generator(5)), first)
    assert not torch.equal(random_affine(batch, cfg, _generator(6)), first)
    assert first.dtype == torch.uint8


@pytest.mark.parametrize("device", DEVICES)
def test_bfloat16_input_keeps_dtype_and_follows_float32(device):
    batch = _smooth().repeat(2, 1, 1, 1).to(device)
    cfg = AugmentConfig(mode="online")
    as_float = random_affine(batch, cfg, _generator(1))
    as_bf16 = random_affine(batch.to(torch.bfloat16), cfg, _generator(1))
    assert as_bf16.dtype == torch.bfloat16 and as_bf16.device == batch.device
    assert (as_bf16.float() - as_float).abs().mean() < 1.0


@pytest.mark.parametrize("device", DEVICES)
def test_train_transform_online_augments_and_normalises(device):
    batch = _smooth().repeat(2, 1, 1, 1).round().to(torch.uint8).to(device)
    train = build_train_transforms(AugmentConfig(mode="online"), mean=0.4, std=0.2)
    out = train(batch, _generator())
    assert out.dtype == torch.float32 and out.shape == batch.shape and out.device == batch.device
    plain = build_eval_transforms(mean=0.4, std=0.2)(batch)
    assert (out - plain).abs().mean() > 0.05


def test_eval_transform_is_exactly_the_normalisation():
    batch = torch.tensor([0, 51, 102, 255], dtype=torch.uint8).reshape(1, 1, 2, 2)
    out = build_eval_transforms(mean=0.5, std=0.25)(batch)
    expected = torch.tensor([-2.0, -1.2, -0.4, 2.0]).reshape(1, 1, 2, 2)
    assert out.dtype == torch.float32
    assert torch.allclose(out, expected, atol=1e-6)
    assert torch.allclose(build_eval_transforms(0.5, 0.25)(batch.float()), expected, atol=1e-6)


@pytest.mark.parametrize("mode", ["none", "x5"])
def test_train_transform_without_online_mode_draws_nothing(mode):
    batch = _smooth().repeat(2, 1, 1, 1).round().to(torch.uint8)
    generator = _generator(3)
    state = generator.get_state()
    out = build_train_transforms(AugmentConfig(mode=mode), mean=0.3, std=0.1)(batch, generator)
    assert torch.equal(generator.get_state(), state)
    assert torch.equal(out, build_eval_transforms(mean=0.3, std=0.1)(batch))


@pytest.mark.parametrize(("mean", "std"), [(0.5, 0.0), (0.5, -1.0), (float("nan"), 0.2)])
def test_transforms_reject_bad_statistics(mean, std):
    with pytest.raises(ValueError, match="mean|std"):
        build_eval_transforms(mean, std)
    with pytest.raises(ValueError, match="mean|std"):
        build_train_transforms(AugmentConfig(), mean, std)


def test_expand_offline_shapes_labels_and_sources():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(4, 24, 24), dtype=np.uint8)
    labels = np.array(["normal", "mass", "calc", "mass"])
    cfg = AugmentConfig(copies=5)
    expanded, new_labels, source = expand_offline(images, labels, cfg, seed=0, batch_size=3)
    assert expanded.shape == (24, 24, 24) and expanded.dtype == np.uint8
    assert np.array_equal(source, np.tile(np.arange(4), 6))
    assert np.array_equal(new_labels, labels[source])
    assert np.array_equal(expanded[:4], images)
    assert all(not np.array_equal(expanded[i], images[source[i]]) for i in range(4, 24))


def test_expand_offline_depends_on_the_seed_only():
    images = np.stack([_smooth(32, 32)[0, 0].round().numpy().astype(np.uint8)] * 3)
    labels = np.zeros(3, dtype=np.int64)
    cfg = AugmentConfig(copies=2)
    first = expand_offline(images, labels, cfg, seed=4, batch_size=1)[0]
    assert np.array_equal(expand_offline(images, labels, cfg, seed=4, batch_size=64)[0], first)
    assert not np.array_equal(expand_offline(images, labels, cfg, seed=5)[0], first)


@pytest.mark.parametrize(
    ("images", "labels", "cfg", "message"),
    [
        (np.zeros((2, 8, 8), np.uint8), np.zeros(2), AugmentConfig(mode="online"), "'x5'"),
        (np.zeros((2, 8, 8), np.float32), np.zeros(2), AugmentConfig(), "uint8"),
        (np.zeros((2, 1, 8, 8), np.uint8), np.zeros(2), AugmentConfig(), r"\(N, H, W\)"),
        (np.zeros((2, 8, 8), np.uint8), np.zeros(3), AugmentConfig(), "labels"),
    ],
)
def test_expand_offline_rejects_bad_input(images, labels, cfg, message):
    with pytest.raises(ValueError, match=message):
        expand_offline(images, labels, cfg, seed=0)


def test_warp_rejects_bad_batches():
    theta = affine_theta(_params(), 8, 8)
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        warp_affine(torch.zeros(1, 8, 8), theta)
    with pytest.raises(ValueError, match="uint8 or floating"):
        warp_affine(torch.zeros(1, 1, 8, 8, dtype=torch.int32), theta)
    with pytest.raises(ValueError, match=r"theta must have shape \(2, 2, 3\)"):
        warp_affine(torch.zeros(2, 1, 8, 8), theta)


def test_augment_config_defaults_follow_the_paper():
    cfg = from_dict(AugmentConfig, {})
    assert (cfg.mode, cfg.copies, cfg.shift, cfg.shear, cfg.zoom) == ("x5", 5, 0.1, 10.0, 0.1)
    assert (cfg.rotation, cfg.hflip, cfg.vflip) == (0.0, False, False)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"mode": "x6"}, "is not one of"),
        ({"copies": 0}, "copies"),
        ({"copies": 2.5}, "expected an integer"),
        ({"shift": 1.5}, "shift"),
        ({"shift": -0.1}, "shift"),
        ({"shear": 90.0}, "shear"),
        ({"zoom": 1.0}, "zoom"),
        ({"rotation": 200.0}, "rotation"),
        ({"hflip": "yes"}, "expected true or false"),
        ({"flip": True}, "unknown key 'flip'"),
    ],
)
def test_bad_augment_config_is_a_config_error(data, message):
    with pytest.raises(ConfigError, match=message):
        from_dict(AugmentConfig, data, where="augment")
