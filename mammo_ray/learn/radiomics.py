"""Hand-made texture and calcification features of one film's breast: the radiomics baseline.

:func:`film_features` describes the breast region of a full-resolution film (200 µm/px) by

- **intensity**: mean, sd, skewness, excess kurtosis and percentiles of the breast pixels, and
  the breast's share of the film;
- **GLCM** (Haralick et al. 1973): contrast, homogeneity, energy and correlation of the grey
  level co-occurrence matrix at distances 1, 2 and 4 (of the film at 1/4 resolution, 32 grey
  levels, background excluded), averaged over four directions;
- **LBP** (Ojala et al. 2002): the histogram of uniform local binary patterns (P = 8, R = 1) at
  1/2 and 1/4 resolution;
- **Gabor energy**: mean magnitude of Gabor responses at wavelengths 4, 8 and 16 px (1/4
  resolution) over four orientations, and the orientation anisotropy ``(max - min) / mean``;
- **calcification specks**: bright spots a white top-hat (disc of radius 3 px at full
  resolution) lifts above ``mean + 5 sd`` of the breast's top-hat, of 1-40 px: their density
  per cm² and the most specks in any ~1 cm² window (a cluster: >= 3 within 1 cm²);
- **mass-scale blobs**: maxima and 99th percentiles of differences of Gaussians (of the breast
  alone, by normalised convolution) at two scales, in breast standard deviations.

Everything is computed inside the breast mask, eroded by 15 px so the skin line does not count.
The classifier that reads them (with the other breast's features, see
:mod:`mammo_ray.learn.bilateral`) is in :mod:`mammo_ray.learn.radiomics_cv`.
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy import stats
from skimage.feature import graycomatrix, graycoprops, local_binary_pattern

from mammo_ray.learn.config import FULL_RESOLUTION

__all__ = ["FEATURE_NAMES", "film_features"]

_PERCENTILES = (5, 25, 50, 75, 95, 99)
_GLCM_DISTANCES = (1, 2, 4)
_GLCM_PROPS = ("contrast", "homogeneity", "energy", "correlation")
_GLCM_LEVELS = 32
_LBP_BINS = 10
_GABOR_WAVELENGTHS = (4, 8, 16)
_DOG_SIGMAS = ((2.0, 4.0), (4.0, 8.0))
_SKIN_MARGIN = 15
_TOPHAT_RADIUS = 3
_SPECK_SD = 5.0
_SPECK_AREA = (1, 40)
_CLUSTER_CELL = 16
_PIXELS_PER_CM2 = (10.0 / 0.2) ** 2

FEATURE_NAMES: tuple[str, ...] = (
    ("mean", "sd", "skewness", "kurtosis")
    + tuple(f"p{p}" for p in _PERCENTILES)
    + ("breast_fraction",)
    + tuple(f"glcm_{prop}_d{d}" for d in _GLCM_DISTANCES for prop in _GLCM_PROPS)
    + tuple(f"lbp_{scale}_{b}" for scale in ("half", "quarter") for b in range(_LBP_BINS))
    + tuple(f"gabor_{w}_{kind}" for w in _GABOR_WAVELENGTHS for kind in ("energy", "anisotropy"))
    + ("speck_density", "speck_cluster_max", "tophat_p999")
    + tuple(f"dog_{int(s)}_{kind}" for s, _ in _DOG_SIGMAS for kind in ("max", "p99"))
)
"""Names of :func:`film_features`' values, in order."""


def _shrink(image: np.ndarray, factor: int) -> np.ndarray:
    side = (image.shape[1] // factor, image.shape[0] // factor)
    return cv2.resize(image, side, interpolation=cv2.INTER_AREA)


def _inner(mask: np.ndarray, margin: int) -> np.ndarray:
    """The mask eroded by ``margin`` px, or the mask itself when that would empty it."""
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * margin + 1, 2 * margin + 1))
    inner = cv2.erode(mask.astype(np.uint8), kernel) > 0
    return inner if inner.any() else mask


def _intensity(pixels: np.ndarray, breast_fraction: float) -> list[float]:
    values = pixels.astype(np.float64)
    return [
        values.mean(),
        values.std(),
        float(stats.skew(values)),
        float(stats.kurtosis(values)),
        *np.percentile(values, _PERCENTILES),
        breast_fraction,
    ]


def _glcm(image: np.ndarray, mask: np.ndarray) -> list[float]:
    """Haralick properties with the background as grey level 0, dropped from the matrix."""
    levels = np.where(mask, 1 + image.astype(np.int32) * (_GLCM_LEVELS - 1) // 255, 0)
    matrix = graycomatrix(
        levels.astype(np.uint8),
        distances=_GLCM_DISTANCES,
        angles=(0, np.pi / 4, np.pi / 2, 3 * np.pi / 4),
        levels=_GLCM_LEVELS + 1,
        symmetric=True,
    )[1:, 1:].astype(np.float64)
    matrix /= np.maximum(matrix.sum(axis=(0, 1), keepdims=True), 1.0)
    return [
        float(graycoprops(matrix, prop)[d].mean())
        for d in range(len(_GLCM_DISTANCES))
        for prop in _GLCM_PROPS
    ]


def _lbp(image: np.ndarray, mask: np.ndarray) -> list[float]:
    codes = local_binary_pattern(image, P=8, R=1, method="uniform")[mask]
    histogram = np.bincount(codes.astype(np.int64), minlength=_LBP_BINS)[:_LBP_BINS]
    return (histogram / max(codes.size, 1)).tolist()


def _gabor(image: np.ndarray, mask: np.ndarray) -> list[float]:
    values = image.astype(np.float32) / 255.0
    features = []
    for wavelength in _GABOR_WAVELENGTHS:
        sigma = 0.56 * wavelength
        size = int(6 * sigma) | 1
        energy = np.array(
            [
                np.abs(
                    cv2.filter2D(
                        values, -1, cv2.getGaborKernel((size, size), sigma, theta, wavelength, 0.5)
                    )[mask]
                ).mean()
                for theta in np.arange(4) * np.pi / 4
            ]
        )
        mean = float(energy.mean())
        features += [mean, float((energy.max() - energy.min()) / mean) if mean > 0 else 0.0]
    return features


def _specks(image: np.ndarray, mask: np.ndarray) -> list[float]:
    """Top-hat speck density (per cm²), the largest count in a 3 x 3 block of 16 px cells
    (~1 cm²) and the top-hat's 99.9th percentile."""
    size = 2 * _TOPHAT_RADIUS + 1
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
    tophat = cv2.morphologyEx(image, cv2.MORPH_TOPHAT, kernel)
    inside = tophat[mask].astype(np.float64)
    threshold = inside.mean() + _SPECK_SD * inside.std()
    bright = ((tophat > threshold) & mask).astype(np.uint8)
    _, _, components, centroids = cv2.connectedComponentsWithStats(bright, connectivity=8)
    area = components[1:, cv2.CC_STAT_AREA]
    keep = (area >= _SPECK_AREA[0]) & (area <= _SPECK_AREA[1])
    cells = (np.asarray(image.shape) + _CLUSTER_CELL - 1) // _CLUSTER_CELL
    counts = np.zeros(cells, np.float32)
    rows, cols = (centroids[1:][keep][:, ::-1] // _CLUSTER_CELL).astype(np.int64).T
    np.add.at(counts, (rows, cols), 1.0)
    clustered = cv2.boxFilter(counts, -1, (3, 3), normalize=False, borderType=cv2.BORDER_CONSTANT)
    return [
        keep.sum() / (mask.sum() / _PIXELS_PER_CM2),
        float(clustered.max()),
        float(np.percentile(inside, 99.9)),
    ]


def _masked_blur(values: np.ndarray, weight: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of the breast alone (normalised convolution): ``G * (v m) / G * m``, so
    the dark background does not pull the edge of the breast down."""
    blurred = cv2.GaussianBlur(values * weight, (0, 0), sigma)
    return blurred / np.maximum(cv2.GaussianBlur(weight, (0, 0), sigma), 1e-6)


def _blobs(image: np.ndarray, mask: np.ndarray) -> list[float]:
    values = image.astype(np.float32)
    weight = mask.astype(np.float32)
    spread = max(float(values[mask].std()), 1e-6)
    features = []
    for small, large in _DOG_SIGMAS:
        dog = _masked_blur(values, weight, small) - _masked_blur(values, weight, large)
        inside = dog[mask] / spread
        features += [float(inside.max()), float(np.percentile(inside, 99))]
    return features


def film_features(image: np.ndarray, breast: np.ndarray) -> np.ndarray:
    """The :data:`FEATURE_NAMES` values (float64) of a full-resolution uint8 film and its breast
    mask (nonzero inside), see the module notes.

    Raises
    ------
    ValueError
        When the image is not 2-D uint8 of :data:`FULL_RESOLUTION` pixels a side, the mask's
        shape differs, or the mask is empty.
    """
    if image.dtype != np.uint8 or image.shape != (FULL_RESOLUTION, FULL_RESOLUTION):
        raise ValueError(
            f"radiomics needs a {FULL_RESOLUTION} x {FULL_RESOLUTION} uint8 film, "
            f"got {image.shape} {image.dtype}"
        )
    if breast.shape != image.shape or not breast.any():
        raise ValueError(f"the breast mask must be a non-empty {image.shape} array")
    cv2.setNumThreads(1)
    mask = breast > 0
    inner = _inner(mask, _SKIN_MARGIN)
    half, quarter = _shrink(image, 2), _shrink(image, 4)
    half_mask = _shrink(inner.astype(np.uint8), 2) > 0
    quarter_mask = _shrink(inner.astype(np.uint8), 4) > 0
    values = (
        _intensity(image[inner], float(mask.mean()))
        + _glcm(quarter, quarter_mask)
        + _lbp(half, half_mask)
        + _lbp(quarter, quarter_mask)
        + _gabor(quarter, quarter_mask)
        + _specks(image, inner)
        + _blobs(quarter, quarter_mask)
    )
    return np.asarray(values, dtype=np.float64)
