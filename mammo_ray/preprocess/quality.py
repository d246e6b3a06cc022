"""Quality measures of enhancement and segmentation.

Enhancement: :func:`psnr` and :func:`ssim` compare an enhanced image with its original;
:func:`eme` (contrast of one image) and :func:`cii` (contrast of a processed image relative to
its original) measure how much contrast an enhancement added.

Segmentation overlap: :func:`circles_mask` draws the MIAS ground-truth circles and
:func:`dice` compares a predicted mask with it. A MIAS circle *encloses* the
lesion, so even a perfect lesion mask has Dice well below 1 against it; read the numbers
as overlap with the annotated region, not as segmentation accuracy.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import cv2
import numpy as np
from skimage.metrics import structural_similarity

__all__ = ["circles_mask", "dice", "psnr", "ssim", "eme", "cii"]


def circles_mask(
    shape: tuple[int, int], circles: Iterable[tuple[float, float, float]]
) -> np.ndarray:
    """Boolean mask of the union of discs ``(row, col, radius)`` in image coordinates.

    A pixel ``(r, c)`` is inside a disc when ``(r - row)^2 + (c - col)^2 <= radius^2``.

    Parameters
    ----------
    shape : (height, width) of the mask.
    circles : iterable of (row, col, radius), row/col from the top-left corner, in pixels.

    Returns
    -------
    mask : bool ndarray of ``shape``.
    """
    rows = np.arange(shape[0], dtype=np.float32)[:, None]
    cols = np.arange(shape[1], dtype=np.float32)[None, :]
    mask = np.zeros(shape, dtype=bool)
    for row, col, radius in circles:
        mask |= (rows - row) ** 2 + (cols - col) ** 2 <= radius**2
    return mask


def dice(predicted: np.ndarray, truth: np.ndarray) -> float:
    """Dice similarity coefficient ``DSC = 2|A ∩ B| / (|A| + |B|)`` of two boolean masks.

    Dice, "Measures of the amount of ecologic association between species", Ecology 26(3), 1945.
    Two empty masks agree perfectly and give 1.0.

    Raises
    ------
    ValueError : if the masks differ in shape.
    """
    predicted = np.asarray(predicted, dtype=bool)
    truth = np.asarray(truth, dtype=bool)
    if predicted.shape != truth.shape:
        raise ValueError(f"mask shapes differ: {predicted.shape} vs {truth.shape}")
    total = int(predicted.sum()) + int(truth.sum())
    if total == 0:
        return 1.0
    return 2.0 * int(np.logical_and(predicted, truth).sum()) / total


def _check_pair(reference: np.ndarray, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    reference = np.asarray(reference)
    image = np.asarray(image)
    if reference.ndim != 2 or reference.shape != image.shape or reference.size == 0:
        raise ValueError(
            "reference and image must be non-empty 2-D arrays of the same shape, "
            f"got {reference.shape} and {image.shape}"
        )
    return reference, image


def _check_data_range(data_range: float) -> None:
    if not data_range > 0:
        raise ValueError(f"data_range must be > 0, got {data_range!r}")


def psnr(reference: np.ndarray, image: np.ndarray, data_range: float = 255.0) -> float:
    """Peak signal-to-noise ratio ``PSNR = 10 · log10(R² / MSE)`` in dB.

    ``MSE = mean((reference − image)²)`` computed in float64 and ``R = data_range`` (255 for
    uint8, 1 for float images in [0, 1]). Identical images give ``inf``.

    Parameters
    ----------
    reference, image : (M, N) ndarray, any real dtype, same shape
    data_range : float > 0

    Returns
    -------
    psnr : float, dB

    Raises
    ------
    ValueError
        If the images are not 2-D arrays of the same shape or ``data_range <= 0``.
    """
    reference, image = _check_pair(reference, image)
    _check_data_range(data_range)
    difference = reference.astype(np.float64) - image.astype(np.float64)
    mse = float(np.mean(difference * difference))
    if mse == 0.0:
        return math.inf
    return 10.0 * math.log10(data_range * data_range / mse)


def ssim(reference: np.ndarray, image: np.ndarray, data_range: float = 255.0) -> float:
    """Mean structural similarity index (``skimage.metrics.structural_similarity``).

    ``SSIM = (2 μx μy + C1)(2 σxy + C2) / ((μx² + μy² + C1)(σx² + σy² + C2))`` over 7 × 7
    windows, ``C1 = (0.01 R)²``, ``C2 = (0.03 R)²``, averaged over the image; identical images
    give 1. Wang, Bovik, Sheikh, Simoncelli, "Image quality assessment: from error visibility
    to structural similarity", IEEE TIP 13(4), 2004.

    Parameters
    ----------
    reference, image : (M, N) ndarray, same shape, both sides >= 7
    data_range : float > 0
        ``R``, 255 for uint8 and 1 for float images in [0, 1].

    Returns
    -------
    ssim : float in [-1, 1]

    Raises
    ------
    ValueError
        If the images are not 2-D arrays of the same shape, smaller than 7 × 7, or
        ``data_range <= 0``.
    """
    # Imported here: scikit-image's metrics take ~0.3 s to import and few callers need them.

    reference, image = _check_pair(reference, image)
    _check_data_range(data_range)
    if min(reference.shape) < 7:
        raise ValueError(f"ssim needs images of at least 7 x 7 pixels, got {reference.shape}")
    return float(
        structural_similarity(
            reference.astype(np.float64), image.astype(np.float64), data_range=data_range
        )
    )


def _block_counts(blocks: int | tuple[int, int], shape: tuple[int, ...]) -> tuple[int, int]:
    counts = (blocks, blocks) if np.ndim(blocks) == 0 else tuple(blocks)
    valid = len(counts) == 2 and all(
        isinstance(k, (int, np.integer)) and not isinstance(k, bool) and 1 <= k <= side
        for k, side in zip(counts, shape, strict=True)
    )
    if not valid:
        raise ValueError(
            f"blocks must be 1 or 2 integers from 1 to the image sides {shape}, got {blocks!r}"
        )
    return int(counts[0]), int(counts[1])


def eme(image: np.ndarray, blocks: int | tuple[int, int] = 8, eps: float = 1.0) -> float:
    """Agaian's measure of enhancement (EME) of one image.

    The image is cut into ``k1 × k2`` blocks (trailing rows/columns that do not fill a block
    are dropped) and::

        EME = 1 / (k1 k2) · Σ_blocks 20 · log10((I_max + eps) / (I_min + eps))

    with ``I_max``, ``I_min`` the extreme values of each block. ``eps`` keeps black blocks
    finite; its default of 1 is one grey level for uint8 images (use ``1/255`` for float
    images in [0, 1]). A higher EME means more local contrast; a constant image gives 0.
    Agaian, Panetta, Grigoryan, "Transform-based image enhancement algorithms with performance
    measure", IEEE TIP 10(3), 2001.

    Parameters
    ----------
    image : (M, N) ndarray of non-negative values
    blocks : int or (k1, k2)
        Number of blocks along each axis (an int is used for both), at most the image side.
    eps : float > 0

    Returns
    -------
    eme : float, dB

    Raises
    ------
    ValueError
        If ``image`` is not a non-empty 2-D array, has negative values, or ``blocks`` or
        ``eps`` is out of range.
    """
    image = np.asarray(image)
    if image.ndim != 2 or image.size == 0:
        raise ValueError(f"image must be a non-empty 2-D array, got shape {image.shape}")
    k1, k2 = _block_counts(blocks, image.shape)
    if not eps > 0:
        raise ValueError(f"eps must be > 0, got {eps!r}")
    if image.min() < 0:
        raise ValueError(f"eme needs non-negative intensities, got minimum {image.min()!r}")
    height, width = image.shape[0] // k1, image.shape[1] // k2
    tiles = image[: k1 * height, : k2 * width].reshape(k1, height, k2, width).astype(np.float64)
    ratio = (tiles.max(axis=(1, 3)) + eps) / (tiles.min(axis=(1, 3)) + eps)
    return float(np.mean(20.0 * np.log10(ratio)))


def _mean_local_contrast(image: np.ndarray) -> float:
    """Mean over pixels of ``(max − min) / (max + min)`` over 3 × 3 windows (0 where both are 0)."""
    values = image.astype(np.float32)
    kernel = np.ones((3, 3), np.uint8)
    high = cv2.dilate(values, kernel, borderType=cv2.BORDER_REFLECT_101)
    low = cv2.erode(values, kernel, borderType=cv2.BORDER_REFLECT_101)
    total = high + low
    contrast = np.zeros_like(total)
    np.divide(high - low, total, out=contrast, where=total > 0)
    return float(contrast.mean(dtype=np.float64))


def cii(reference: np.ndarray, image: np.ndarray) -> float:
    """Contrast improvement index ``CII = C_processed / C_original``.

    ``C`` is the mean over all pixels of the local contrast ``(max − min) / (max + min)`` of
    the 3 × 3 window around the pixel (grey-level dilation and erosion). ``CII > 1`` means the
    processed image has more local contrast. A reference without any local contrast gives
    ``inf`` when the processed image has some and 1 when it has none either. Agaian, Panetta,
    Grigoryan, IEEE TIP 10(3), 2001, and Laine, Fan, Yang, "Wavelets for contrast enhancement
    of digital mammography", IEEE EMB Magazine 14(5), 1995.

    Parameters
    ----------
    reference : (M, N) ndarray of non-negative values, the original image
    image : (M, N) ndarray of non-negative values, the processed image

    Returns
    -------
    cii : float

    Raises
    ------
    ValueError
        If the images are not 2-D arrays of the same shape or have negative values.
    """
    reference, image = _check_pair(reference, image)
    if reference.min() < 0 or image.min() < 0:
        raise ValueError("cii needs non-negative intensities in both images")
    original = _mean_local_contrast(reference)
    processed = _mean_local_contrast(image)
    if original == 0.0:
        return 1.0 if processed == 0.0 else math.inf
    return processed / original
