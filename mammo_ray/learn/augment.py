"""Training-only augmentation: a per-sample random affine warp on a batch, and normalisation.

What the paper does and how it maps here
----------------------------------------
The paper (Sec. 2.3) augments the *training* images only, "with transformations like shift,
shear, standard normalization, and zoom", adding "five additional images ... to each
mammogram image in the training dataset" (Shorten and Khoshgoftaar, "A survey on Image Data
Augmentation for Deep Learning", J. Big Data 6(60), 2019). The terms are those of Keras'
``ImageDataGenerator``; the paper gives no ranges. :class:`AugmentConfig` reads them with the
parameter meanings of ``torchvision.transforms.v2.RandomAffine(degrees, translate, scale,
shear)``:

* ``shift`` = ``translate=(shift, shift)``: ``tx ~ U(-shift W, shift W)``,
  ``ty ~ U(-shift H, shift H)`` pixels (not rounded to whole pixels as torchvision does);
* ``shear`` = ``shear=shear``: a shear parallel to the x axis of ``U(-shear, shear)`` degrees;
* ``zoom`` = ``scale=(1 - zoom, 1 + zoom)``: one isotropic scale ``s ~ U(1 - zoom, 1 + zoom)``;
* ``rotation`` = ``degrees=rotation`` (0, off, in the paper), and optional horizontal and
  vertical flips, each with probability 1/2, applied after the affine warp;
* standard normalisation ``(x / 255 - mean) / std`` with the training set's mean and std,
  applied to every image, augmented or not.

``mode`` chooses between the paper's "five additional images" made once before training
(``"x5"``, :func:`expand_offline`, so the training set is ``1 + copies`` times larger), fresh
random transforms every epoch (``"online"``) and no augmentation (``"none"``, the ablation).

The warp
--------
For each image the affine map of ``torchvision.transforms.v2.functional.affine`` about the
image centre, ``M = T C R(a) S(s) SHy(sy) SHx(sx) C^-1``, is inverted, rescaled to the
normalised coordinates of :func:`torch.nn.functional.affine_grid` (``align_corners=False``),
and all images of a batch are warped at once with bilinear
:func:`torch.nn.functional.grid_sample` and zero padding. Sampling coordinates are computed in
float32 whatever the image dtype (a bfloat16 coordinate is off by pixels at 224 px).

Training-only augmentation holds by construction: :func:`build_train_transforms` is the only
place that augments, :func:`build_eval_transforms` only normalises.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

__all__ = [
    "AugmentMode",
    "AugmentConfig",
    "AffineParams",
    "sample_affine_params",
    "affine_theta",
    "warp_affine",
    "random_affine",
    "normalize",
    "build_train_transforms",
    "build_eval_transforms",
    "expand_offline",
]


AugmentMode = Literal["none", "online", "x5"]


_MODES = ("none", "online", "x5")


@dataclass(frozen=True)
class AugmentConfig:
    """Augmentation of the training images.

    Attributes
    ----------
    mode : ``"x5"`` (``copies`` augmented copies per training image, made once), ``"online"``
        (fresh random transforms every epoch) or ``"none"`` (no augmentation).
    copies : augmented copies per training image in ``"x5"`` mode, >= 1.
    shift : maximum translation as a fraction of the image width / height, in [0, 1].
    shear : maximum x-axis shear in degrees, in [0, 90).
    zoom : the scale is drawn from ``[1 - zoom, 1 + zoom]``; in [0, 1).
    rotation : maximum rotation in degrees, in [0, 180].
    hflip, vflip : flip left-right / up-down with probability 1/2.
    """

    mode: AugmentMode = "x5"
    copies: int = 5
    shift: float = 0.1
    shear: float = 10.0
    zoom: float = 0.1
    rotation: float = 0.0
    hflip: bool = False
    vflip: bool = False

    def __post_init__(self) -> None:
        if self.mode not in _MODES:
            raise ValueError(f"mode: {self.mode!r} is not one of {', '.join(_MODES)}")
        if isinstance(self.copies, bool) or not isinstance(self.copies, int) or self.copies < 1:
            raise ValueError(f"copies: must be an integer >= 1, got {self.copies!r}")
        if not 0.0 <= self.shift <= 1.0:
            raise ValueError(f"shift: must be in [0, 1] (fraction of the size), got {self.shift}")
        if not 0.0 <= self.shear < 90.0:
            raise ValueError(f"shear: must be in [0, 90) degrees, got {self.shear}")
        if not 0.0 <= self.zoom < 1.0:
            raise ValueError(
                f"zoom: must be in [0, 1) so that the scale stays > 0, got {self.zoom}"
            )
        if not 0.0 <= self.rotation <= 180.0:
            raise ValueError(f"rotation: must be in [0, 180] degrees, got {self.rotation}")
        for name in ("hflip", "vflip"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name}: expected true or false, got {getattr(self, name)!r}")


@dataclass(frozen=True)
class AffineParams:
    """Per-image parameters of a batch of affine warps, in torchvision's meanings.

    Attributes
    ----------
    angle : (B,) rotation in degrees, counter-clockwise on screen.
    translate : (B, 2) translation ``(tx, ty)`` in pixels, x right, y down.
    scale : (B,) isotropic scale.
    shear : (B, 2) shear angles ``(sx, sy)`` in degrees, parallel to the x and y axes.
    hflip, vflip : (B,) bool, flip after the warp.
    """

    angle: Tensor
    translate: Tensor
    scale: Tensor
    shear: Tensor
    hflip: Tensor
    vflip: Tensor


def sample_affine_params(
    cfg: AugmentConfig, batch: int, height: int, width: int, generator: torch.Generator
) -> AffineParams:
    """Draw independent parameters for ``batch`` images from the ranges of ``cfg``.

    ``angle ~ U(-rotation, rotation)``, ``tx ~ U(-shift W, shift W)``,
    ``ty ~ U(-shift H, shift H)``, ``scale ~ U(1 - zoom, 1 + zoom)``,
    ``sx ~ U(-shear, shear)``, ``sy = 0``, each flip with probability 1/2 when enabled.
    One ``torch.rand((batch, 7))`` call on ``generator``'s device consumes the stream, so the
    parameters depend only on the generator state and ``batch``.
    """
    u = torch.rand((batch, 7), generator=generator, device=generator.device)
    signed = 2.0 * u[:, :5] - 1.0
    translate = torch.stack(
        (signed[:, 1] * cfg.shift * width, signed[:, 2] * cfg.shift * height), 1
    )
    shear = torch.stack((signed[:, 4] * cfg.shear, torch.zeros_like(signed[:, 4])), 1)
    return AffineParams(
        angle=signed[:, 0] * cfg.rotation,
        translate=translate,
        scale=1.0 + signed[:, 3] * cfg.zoom,
        shear=shear,
        hflip=(u[:, 5] < 0.5) & cfg.hflip,
        vflip=(u[:, 6] < 0.5) & cfg.vflip,
    )


def affine_theta(params: AffineParams, height: int, width: int) -> Tensor:
    """(B, 2, 3) float32 matrices for :func:`~torch.nn.functional.affine_grid`, align_corners=False.

    With ``a = cos(r - sy) / cos(sy)``, ``b = -(a tan(sx) + sin(r))``,
    ``c = sin(r - sy) / cos(sy)``, ``d = cos(r) - c tan(sx)`` (``r`` the angle, all in
    radians), torchvision's output-to-input map in pixel coordinates centred on the image is
    ``p_in = A p_out - A t`` with ``A = [[d, -b], [-c, a]] / s`` and ``t = (tx, ty)``. In the
    normalised coordinates ``n = p / (W/2, H/2)`` this is
    ``theta = [D^-1 A D | -D^-1 A t]`` with ``D = diag(W/2, H/2)``. A flip negates the
    matching column of ``theta[:, :, :2]`` (the flip acts on the warped image).
    """
    rot = torch.deg2rad(params.angle.to(torch.float32))
    shear = torch.deg2rad(params.shear.to(torch.float32))
    sx, sy = shear[:, 0], shear[:, 1]
    scale = params.scale.to(torch.float32)
    a = torch.cos(rot - sy) / torch.cos(sy)
    b = -(a * torch.tan(sx) + torch.sin(rot))
    c = torch.sin(rot - sy) / torch.cos(sy)
    d = torch.cos(rot) - c * torch.tan(sx)
    half = torch.tensor([width / 2.0, height / 2.0], dtype=torch.float32, device=rot.device)
    inverse = torch.stack((torch.stack((d, -b), -1), torch.stack((-c, a), -1)), -2)
    inverse = inverse / scale[:, None, None]
    linear = inverse * half[None, None, :] / half[None, :, None]
    shift = -(inverse @ params.translate.to(torch.float32)[:, :, None]) / half[None, :, None]
    flips = torch.stack((params.hflip, params.vflip), -1).to(rot.device)
    linear = linear * torch.where(flips, -1.0, 1.0)[:, None, :]
    return torch.cat((linear, shift), dim=2)


def warp_affine(images: Tensor, theta: Tensor) -> Tensor:
    """Warp each image of a batch by its own matrix: bilinear sampling, zeros outside.

    Parameters
    ----------
    images : (B, C, H, W) uint8 or floating tensor, on any device.
    theta : (B, 2, 3) matrices from :func:`affine_theta`.

    Returns
    -------
    warped : same shape, dtype and device as ``images``; uint8 is rounded to nearest.
    """
    _check_batch(images)
    if theta.shape != (images.shape[0], 2, 3):
        raise ValueError(
            f"theta must have shape ({images.shape[0]}, 2, 3) for this batch, "
            f"got {tuple(theta.shape)}"
        )
    work = images.to(torch.float32)
    grid = F.affine_grid(
        theta.to(device=images.device, dtype=torch.float32), list(work.shape), align_corners=False
    )
    warped = F.grid_sample(work, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    if images.dtype == torch.uint8:
        return warped.round_().clamp_(0, 255).to(torch.uint8)
    return warped.to(images.dtype)


def random_affine(images: Tensor, cfg: AugmentConfig, generator: torch.Generator) -> Tensor:
    """Warp each image of a (B, C, H, W) batch by its own random affine map drawn from ``cfg``."""
    _check_batch(images)
    batch, _, height, width = images.shape
    params = sample_affine_params(cfg, batch, height, width, generator)
    return warp_affine(images, affine_theta(params, height, width))


def normalize(images: Tensor, mean: float, std: float) -> Tensor:
    """Standard normalisation ``(x / 255 - mean) / std`` as float32.

    ``images`` are on the 0-255 scale (uint8, or floating point of the same scale);
    ``mean`` and ``std`` are the training set's statistics on the 0-1 scale.
    """
    return (images.to(torch.float32) / 255.0 - mean) / std


def build_train_transforms(
    cfg: AugmentConfig, mean: float, std: float
) -> Callable[[Tensor, torch.Generator], Tensor]:
    """The batch transform of the training set: ``(images, generator) -> normalised float32``.

    ``"online"``: :func:`random_affine` (and flips), then :func:`normalize`. ``"x5"`` and
    ``"none"``: :func:`normalize` only (the ``x5`` copies were made by :func:`expand_offline`)
    and the generator is left untouched.
    """
    _check_statistics(mean, std)
    return _TrainTransform(cfg=cfg, mean=float(mean), std=float(std))


def build_eval_transforms(mean: float, std: float) -> Callable[[Tensor], Tensor]:
    """The batch transform of validation and test images: :func:`normalize` only."""
    _check_statistics(mean, std)
    return _EvalTransform(mean=float(mean), std=float(std))


def expand_offline(
    images: np.ndarray,
    labels: np.ndarray,
    cfg: AugmentConfig,
    seed: int,
    *,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The training images followed by ``cfg.copies`` augmented copies of each (the paper's x5).

    Row ``k * N + i`` of the result is image ``i`` (``k = 0``) or its ``k``-th copy. All
    ``N * copies`` parameter sets are drawn up front from ``torch.Generator().manual_seed(seed)``,
    so the result depends on ``seed``, not on ``batch_size`` (nor, up to floating-point
    rounding, on ``device``); the warps run ``batch_size`` images at a time on ``device``.

    Parameters
    ----------
    images : (N, H, W) uint8.
    labels : (N,) labels of the images (any dtype).
    cfg : augmentation config with ``mode == "x5"``.
    seed : seed of the random parameters.

    Returns
    -------
    images : (N * (1 + copies), H, W) uint8.
    labels : (N * (1 + copies),) ``labels[source_index]``.
    source_index : (N * (1 + copies),) int64 index of the original of each row.
    """
    if cfg.mode != "x5":
        raise ValueError(f"expand_offline makes the 'x5' copies; cfg.mode is {cfg.mode!r}")
    images = np.asarray(images)
    labels = np.asarray(labels)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise ValueError(f"images must be (N, H, W) uint8, got {images.shape} {images.dtype}")
    if labels.shape != (images.shape[0],):
        raise ValueError(f"labels must have shape ({images.shape[0]},), got {labels.shape}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    n_images, height, width = images.shape
    source_index = np.tile(np.arange(n_images, dtype=np.int64), 1 + cfg.copies)
    generator = torch.Generator().manual_seed(seed)
    params = sample_affine_params(cfg, n_images * cfg.copies, height, width, generator)
    theta = affine_theta(params, height, width)
    expanded = np.empty((source_index.size, height, width), dtype=np.uint8)
    expanded[:n_images] = images
    n_copies = theta.shape[0]
    for start in range(0, n_copies, batch_size):
        rows = slice(n_images + start, n_images + min(start + batch_size, n_copies))
        batch = torch.from_numpy(images[source_index[rows]][:, None]).to(device)
        warped = warp_affine(batch, theta[rows.start - n_images : rows.stop - n_images])
        expanded[rows] = warped[:, 0].cpu().numpy()
    return expanded, labels[source_index], source_index


@dataclass(frozen=True)
class _TrainTransform:
    cfg: AugmentConfig
    mean: float
    std: float

    def __call__(self, images: Tensor, generator: torch.Generator) -> Tensor:
        if self.cfg.mode == "online":
            images = random_affine(images.to(torch.float32), self.cfg, generator)
        return normalize(images, self.mean, self.std)


@dataclass(frozen=True)
class _EvalTransform:
    mean: float
    std: float

    def __call__(self, images: Tensor) -> Tensor:
        return normalize(images, self.mean, self.std)


def _check_batch(images: Tensor) -> None:
    if images.ndim != 4:
        raise ValueError(f"images must be a (B, C, H, W) batch, got shape {tuple(images.shape)}")
    if images.dtype != torch.uint8 and not images.is_floating_point():
        raise ValueError(f"images must be uint8 or floating point, got {images.dtype}")


def _check_statistics(mean: float, std: float) -> None:
    if not math.isfinite(mean):
        raise ValueError(f"mean must be finite, got {mean}")
    if not (math.isfinite(std) and std > 0.0):
        raise ValueError(f"std must be finite and > 0, got {std}")
