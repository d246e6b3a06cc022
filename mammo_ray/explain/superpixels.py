"""SLIC superpixels of a mammogram for LIME, the zeroed background kept as one superpixel."""

from __future__ import annotations

from typing import Any

import numpy as np
from skimage.segmentation import slic

__all__ = ["slic_superpixels", "describe_input"]


def slic_superpixels(
    gray: np.ndarray,
    *,
    n_segments: int = 100,
    compactness: float = 0.05,
    sigma: float = 1.0,
) -> np.ndarray:
    """SLIC superpixels of a gray uint8 image, labelled ``0 .. K-1`` without gaps.

    ``skimage.segmentation.slic(gray / 255, n_segments, compactness, sigma,
    channel_axis=None, mask=gray > 0)``: SLIC clusters pixels by ``D = sqrt(d_c^2 + (d_s /
    S)^2 m^2)``, ``d_c`` the intensity difference, ``d_s`` the spatial distance, ``S`` the
    grid step and ``m`` the compactness (Achanta et al., IEEE TPAMI 34(11), 2012). Pixels
    equal to 0 (zeroed background, padding) are left out of SLIC and become one label; an
    all-black image is segmented without a mask. LIME needs labels ``0 .. K-1``, so they are
    renumbered in order.

    Parameters
    ----------
    gray : uint8 (H, W).
    n_segments : approximate number of superpixels, >= 1.
    compactness : ``m`` for intensities in [0, 1]; larger gives squarer superpixels, > 0.
    sigma : width of the Gaussian smoothing before clustering, >= 0.

    Returns
    -------
    labels : int64 (H, W).

    Raises
    ------
    ValueError : if ``gray`` is not 2-D uint8 or a parameter is out of range.
    """

    if not isinstance(gray, np.ndarray) or gray.dtype != np.uint8 or gray.ndim != 2:
        raise ValueError(f"gray must be a 2-D uint8 array, got {describe_input(gray)}")
    if n_segments < 1:
        raise ValueError(f"n_segments must be >= 1, got {n_segments}")
    if not compactness > 0:
        raise ValueError(f"compactness must be > 0, got {compactness}")
    if sigma < 0:
        raise ValueError(f"sigma must be >= 0, got {sigma}")
    tissue = gray > 0
    labels = slic(
        gray.astype(np.float64) / 255.0,
        n_segments=n_segments,
        compactness=compactness,
        sigma=sigma,
        channel_axis=None,
        start_label=1,
        mask=tissue if tissue.any() else None,
    )
    _, contiguous = np.unique(labels, return_inverse=True)
    return contiguous.reshape(gray.shape).astype(np.int64)


def describe_input(value: Any) -> str:
    """``uint8 array of shape (8, 8)`` for an array, else the type's name: for error messages."""
    if isinstance(value, np.ndarray):
        return f"{value.dtype} array of shape {value.shape}"
    return type(value).__name__
