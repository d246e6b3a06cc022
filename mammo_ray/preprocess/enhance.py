"""Mammogram enhancement: median filter, LCM, adaptive CLAHE and the adaptive Wiener filter.

The paper's enhancement block (:func:`enhance` with ``method="paper"``) is

    median filter  →  local contrast modification (LCM)  →  adaptive CLAHE  →  Wiener filter

and three baselines sit beside it: ``"none"`` (identity), ``"he"`` (global histogram
equalisation) and ``"clahe"`` (CLAHE with a fixed clip limit).

Every function takes a 2-D grayscale array and returns a new array of the same shape. The dtype
contract is stated per function: the histogram-based steps and the median filter take and return
``uint8``; :func:`lcm_enhance` and :func:`wiener_filter` also take ``float32`` in [0, 1] and then
return ``float32`` clipped to [0, 1]. A constant image is returned unchanged by every step.

All local statistics come from OpenCV box filters in ``float32`` with reflected borders
(``cv2.BORDER_REFLECT_101``), so the cost is a few passes over the image whatever the window size.

References
----------
.. [1] Sundaram, Ramar, Arumugam, Prabin, "Histogram Modified Local Contrast Enhancement for
       mammogram images", Applied Soft Computing 11(8), 5809-5816, 2011.
.. [2] Zuiderveld, "Contrast Limited Adaptive Histogram Equalization", Graphics Gems IV,
       474-485, Academic Press, 1994.
.. [3] Lim, "Two-Dimensional Signal and Image Processing", Prentice Hall, 1990 (the local
       mean/variance Wiener filter of MATLAB's ``wiener2`` and ``scipy.signal.wiener``).
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Literal

import cv2
import numpy as np

__all__ = [
    "ENHANCE_METHODS",
    "EnhanceConfig",
    "adaptive_clahe",
    "adaptive_clip_limit",
    "clahe",
    "enhance",
    "estimate_noise_variance",
    "histogram_equalize",
    "lcm_enhance",
    "median_filter",
    "wiener_filter",
]

EnhanceMethod = Literal["paper", "none", "he", "clahe"]
ENHANCE_METHODS: tuple[str, ...] = typing.get_args(EnhanceMethod)

_BORDER = cv2.BORDER_REFLECT_101


def _check_image(image: np.ndarray, dtypes: tuple[type, ...] = (np.uint8,)) -> np.ndarray:
    """``image`` as a C-contiguous array, checked to be 2-D, non-empty and of ``dtypes``."""
    image = np.asarray(image)
    if image.ndim != 2 or image.size == 0 or image.dtype not in dtypes:
        allowed = " or ".join(np.dtype(d).name for d in dtypes)
        raise ValueError(
            f"image must be a non-empty 2-D {allowed} array, "
            f"got dtype {image.dtype} with shape {image.shape}"
        )
    return np.ascontiguousarray(image)


def _is_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _check_odd(name: str, value: int, minimum: int) -> None:
    if not (_is_int(value) and value >= minimum and value % 2 == 1):
        raise ValueError(f"{name} must be an odd integer >= {minimum}, got {value!r}")


def _check_int(name: str, value: int, low: int, high: int | None = None) -> None:
    if not (_is_int(value) and value >= low and (high is None or value <= high)):
        bounds = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ValueError(f"{name} must be an integer {bounds}, got {value!r}")


def _check_positive(name: str, value: float) -> None:
    if not value > 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")


def _check_ordered(low_name: str, low: float, high_name: str, high: float) -> None:
    _check_positive(low_name, low)
    if not low <= high:
        raise ValueError(
            f"{low_name} must be <= {high_name}, got {low_name}={low!r} > {high_name}={high!r}"
        )


def _is_constant(image: np.ndarray) -> bool:
    lowest, highest, _, _ = cv2.minMaxLoc(image)
    return lowest == highest


def _as_float(image: np.ndarray) -> np.ndarray:
    return image.astype(np.float32, copy=image.dtype != np.float32)


def _back_to(result: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Clip a ``float32`` result to the range of ``dtype`` ([0, 255] rounded, or [0, 1])."""
    if dtype == np.uint8:
        return np.clip(np.rint(result, out=result), 0, 255, out=result).astype(np.uint8)
    return np.clip(result, 0.0, 1.0, out=result)


def _local_mean_var(image: np.ndarray, window: int, center: float) -> tuple[np.ndarray, np.ndarray]:
    """Local mean ``m`` and variance ``σ² = E[x²] − m²`` over a ``window``² box.

    The image is shifted by ``center`` before squaring so that ``E[x²] − m²`` does not lose its
    digits to cancellation in ``float32``; the variance is clipped at 0 for the same reason.
    """
    shifted = image - np.float32(center)
    size = (window, window)
    mean = cv2.boxFilter(shifted, cv2.CV_32F, size, borderType=_BORDER)
    mean_sq = cv2.boxFilter(shifted * shifted, cv2.CV_32F, size, borderType=_BORDER)
    var = np.maximum(mean_sq - mean * mean, 0.0, out=mean_sq)
    mean += np.float32(center)
    return mean, var


def median_filter(image: np.ndarray, ksize: int = 3) -> np.ndarray:
    """Median filter over a ``ksize`` × ``ksize`` window (``cv2.medianBlur``).

    ``out(x, y) = median{ image(u, v) : |u − x| ≤ r, |v − y| ≤ r }`` with ``r = ksize // 2`` and
    replicated borders. It removes isolated (salt-and-pepper) pixels while keeping step edges,
    the first step of the paper's enhancement block [1]_.

    Parameters
    ----------
    image : (M, N) uint8 ndarray
    ksize : odd int >= 1
        Window side; 1 returns a copy.

    Returns
    -------
    out : (M, N) uint8 ndarray

    Raises
    ------
    ValueError
        If ``image`` is not a non-empty 2-D uint8 array or ``ksize`` is not odd and positive.

    Examples
    --------
    >>> image = np.full((5, 5), 10, np.uint8); image[2, 2] = 255
    >>> int(median_filter(image)[2, 2])
    10

    References
    ----------
    .. [1] Sundaram et al., Applied Soft Computing 11(8), 2011.
    """
    image = _check_image(image)
    _check_odd("ksize", ksize, 1)
    return cv2.medianBlur(image, int(ksize))


def lcm_enhance(
    image: np.ndarray,
    window: int = 15,
    *,
    k: float = 0.25,
    gain_min: float = 1.0,
    gain_max: float = 3.0,
) -> np.ndarray:
    """Local contrast modification (LCM): amplify each pixel's deviation from its local mean.

    With ``m(x, y)`` and ``σ(x, y)`` the mean and standard deviation over the ``window`` ×
    ``window`` box around ``(x, y)``, and ``M`` the mean of the whole image [1]_::

        G(x, y)   = clip(k · M / σ(x, y), gain_min, gain_max)      (G = gain_max where σ = 0)
        out(x, y) = m(x, y) + G(x, y) · (image(x, y) − m(x, y))

    Flat regions (small ``σ``) get the largest gain and busy regions (large ``σ``, edges) the
    smallest, so faint texture is lifted without saturating strong edges; ``gain_min = 1``
    means no region loses contrast. A constant image is returned unchanged, because
    ``image − m = 0`` everywhere.

    Parameters
    ----------
    image : (M, N) uint8 ndarray, or float32 ndarray in [0, 1]
    window : odd int >= 3
        Side of the box of the local statistics, in pixels.
    k : float > 0
        Scale of the gain ``k · M / σ``; dimensionless, so the same value serves both dtypes.
    gain_min, gain_max : float, 0 < gain_min <= gain_max
        Bounds of the gain.

    Returns
    -------
    out : (M, N) ndarray of the input dtype; uint8 rounded and clipped to [0, 255],
        float32 clipped to [0, 1].

    Raises
    ------
    ValueError
        If ``image`` is not a non-empty 2-D uint8/float32 array, ``window`` is not odd and
        >= 3, or the gain parameters are not positive and ordered.

    References
    ----------
    .. [1] Sundaram et al., Applied Soft Computing 11(8), 2011 (local contrast modification
           of the local mean/standard deviation type).
    """
    image = _check_image(image, (np.uint8, np.float32))
    _check_odd("window", window, 3)
    _check_positive("k", k)
    _check_ordered("gain_min", gain_min, "gain_max", gain_max)
    values = _as_float(image)
    global_mean = float(values.mean(dtype=np.float64))
    mean, var = _local_mean_var(values, int(window), global_mean)
    std = np.sqrt(var, out=var)
    gain = np.full_like(std, gain_max)
    np.divide(np.float32(k * global_mean), std, out=gain, where=std > 0)
    np.clip(gain, gain_min, gain_max, out=gain)
    out = values - mean
    out *= gain
    out += mean
    return _back_to(out, image.dtype)


def _clahe(image: np.ndarray, clip_limit: float, tiles: int) -> np.ndarray:
    if _is_constant(image):
        return image.copy()
    return cv2.createCLAHE(clipLimit=float(clip_limit), tileGridSize=(tiles, tiles)).apply(image)


def clahe(image: np.ndarray, clip_limit: float = 2.0, tiles: int = 8) -> np.ndarray:
    """Contrast limited adaptive histogram equalisation with a fixed clip limit [1]_.

    The image is cut into ``tiles`` × ``tiles`` regions; each region's 256-bin histogram is
    clipped at ``clip_limit · (region area) / 256`` counts, the excess is spread evenly over
    all bins, and the clipped cumulative histogram is the region's grey-level mapping. Pixels
    are mapped by bilinear interpolation between the four nearest regions' mappings
    (``cv2.createCLAHE``). A clip limit of 1 flattens every histogram (almost no change);
    larger values allow more contrast and more noise. A constant image is returned unchanged.

    Parameters
    ----------
    image : (M, N) uint8 ndarray
    clip_limit : float > 0
        Clip limit as a multiple of the mean bin count.
    tiles : int >= 1
        Number of regions along each axis.

    Returns
    -------
    out : (M, N) uint8 ndarray

    Raises
    ------
    ValueError
        If ``image`` is not a non-empty 2-D uint8 array, ``clip_limit <= 0`` or ``tiles < 1``.

    References
    ----------
    .. [1] Zuiderveld, "Contrast Limited Adaptive Histogram Equalization", Graphics Gems IV,
           1994.
    """
    image = _check_image(image)
    _check_positive("clip_limit", clip_limit)
    _check_int("tiles", tiles, 1)
    return _clahe(image, clip_limit, int(tiles))


def adaptive_clip_limit(
    image: np.ndarray,
    *,
    clip_min: float = 1.0,
    clip_max: float = 4.0,
    std_ref: float = 80.0,
    background: int = 10,
) -> float:
    """CLAHE clip limit chosen from the image's own contrast.

    With ``s`` the standard deviation of the breast pixels (``image > background``, so the
    black film background does not dominate)::

        clip = clip_min + (clip_max − clip_min) · clip(1 − s / std_ref, 0, 1)

    A low-contrast image (small ``s``) gets a clip near ``clip_max`` (strong equalisation), an
    image already spanning the grey range (``s >= std_ref``) gets ``clip_min``. An image with
    no pixel above ``background`` counts as having no contrast and gets ``clip_max``.
    The default ``std_ref = 80`` sits above the breast-pixel standard deviations of the MIAS
    films (about 45-70 grey levels); with the default bounds they get clips of about 1.3-2.2.

    Parameters
    ----------
    image : (M, N) uint8 ndarray
    clip_min, clip_max : float, 0 < clip_min <= clip_max
    std_ref : float > 0
        Standard deviation (grey levels) at and above which ``clip_min`` is used.
    background : int in [0, 254]
        Grey level at or below which a pixel counts as background.

    Returns
    -------
    clip : float in [clip_min, clip_max]

    Raises
    ------
    ValueError
        If ``image`` is not a non-empty 2-D uint8 array or a parameter is out of range.
    """
    image = _check_image(image)
    _check_clip_rule(clip_min, clip_max, std_ref, background)
    foreground = image[image > background]
    if foreground.size == 0:
        return float(clip_max)
    spread = float(foreground.std(dtype=np.float64))
    fraction = min(max(1.0 - spread / std_ref, 0.0), 1.0)
    return float(clip_min + (clip_max - clip_min) * fraction)


def _check_clip_rule(clip_min: float, clip_max: float, std_ref: float, background: int) -> None:
    _check_ordered("clip_min", clip_min, "clip_max", clip_max)
    _check_positive("std_ref", std_ref)
    _check_int("background", background, 0, 254)


def adaptive_clahe(
    image: np.ndarray,
    *,
    tiles: int = 8,
    clip_min: float = 1.0,
    clip_max: float = 4.0,
    std_ref: float = 80.0,
    background: int = 10,
) -> np.ndarray:
    """CLAHE [1]_ whose clip limit is :func:`adaptive_clip_limit` of the image itself.

    ``out = clahe(image, clip_limit=adaptive_clip_limit(image, ...), tiles=tiles)``: low-contrast
    films are equalised harder than films that already use the grey range. A constant image is
    returned unchanged.

    Parameters
    ----------
    image : (M, N) uint8 ndarray
    tiles : int >= 1
        Number of CLAHE regions along each axis.
    clip_min, clip_max, std_ref, background
        The clip rule, see :func:`adaptive_clip_limit`.

    Returns
    -------
    out : (M, N) uint8 ndarray

    Raises
    ------
    ValueError
        If ``image`` is not a non-empty 2-D uint8 array or a parameter is out of range.

    References
    ----------
    .. [1] Zuiderveld, "Contrast Limited Adaptive Histogram Equalization", Graphics Gems IV,
           1994.
    """
    _check_int("tiles", tiles, 1)
    clip = adaptive_clip_limit(
        image, clip_min=clip_min, clip_max=clip_max, std_ref=std_ref, background=background
    )
    return _clahe(np.ascontiguousarray(image), clip, int(tiles))


def histogram_equalize(image: np.ndarray) -> np.ndarray:
    """Global histogram equalisation (``cv2.equalizeHist``), the baseline of CLAHE.

    ``out = round(255 · (cdf(image) − cdf_min) / (N − cdf_min))`` with ``cdf`` the cumulative
    histogram, ``cdf_min`` its first non-zero value and ``N`` the number of pixels. A constant
    image is returned unchanged.

    Parameters
    ----------
    image : (M, N) uint8 ndarray

    Returns
    -------
    out : (M, N) uint8 ndarray

    Raises
    ------
    ValueError
        If ``image`` is not a non-empty 2-D uint8 array.
    """
    return cv2.equalizeHist(_check_image(image))


def estimate_noise_variance(image: np.ndarray, window: int = 5) -> float:
    """Noise variance ``ν²`` estimated as the mean of the local variances [1]_.

    ``ν² = mean over (x, y) of σ²(x, y)``, ``σ²`` the variance over the ``window`` × ``window``
    box (biased, ``E[x²] − m²``), as MATLAB's ``wiener2`` and ``scipy.signal.wiener`` do. On
    pure white noise of variance ``s²`` it gives ``s² (n − 1) / n`` with ``n = window²``.

    Parameters
    ----------
    image : (M, N) uint8 ndarray, or float32 ndarray in [0, 1]
    window : odd int >= 3

    Returns
    -------
    noise : float, in the squared units of the image (grey levels² for uint8).

    Raises
    ------
    ValueError
        If ``image`` is not a non-empty 2-D uint8/float32 array or ``window`` is not odd and >= 3.

    References
    ----------
    .. [1] Lim, "Two-Dimensional Signal and Image Processing", 1990.
    """
    image = _check_image(image, (np.uint8, np.float32))
    _check_odd("window", window, 3)
    values = _as_float(image)
    _, var = _local_mean_var(values, int(window), float(values.mean(dtype=np.float64)))
    return float(var.mean(dtype=np.float64))


def wiener_filter(image: np.ndarray, window: int = 5, noise: float | None = None) -> np.ndarray:
    """Adaptive (local mean/variance) Wiener filter [1]_.

    With ``μ`` and ``σ²`` the mean and variance over the ``window`` × ``window`` box::

        out = μ + max(σ² − ν², 0) / max(σ², ν²) · (image − μ)

    where ``ν²`` is the noise variance, :func:`estimate_noise_variance` when ``noise`` is None.
    Where the local variance is at the noise level the output is the local mean (smoothing);
    where it is well above, the pixel is kept (edges). Where ``σ² = ν² = 0`` the output is
    ``μ``, so a constant image is returned unchanged. Unlike ``wiener2`` the borders are
    reflected rather than zero-padded, so they are not darkened.

    Parameters
    ----------
    image : (M, N) uint8 ndarray, or float32 ndarray in [0, 1]
    window : odd int >= 3
    noise : float >= 0, optional
        Noise variance in the squared units of the image (grey levels² for uint8).

    Returns
    -------
    out : (M, N) ndarray of the input dtype; uint8 rounded and clipped to [0, 255],
        float32 clipped to [0, 1].

    Raises
    ------
    ValueError
        If ``image`` is not a non-empty 2-D uint8/float32 array, ``window`` is not odd and
        >= 3, or ``noise`` is negative.

    References
    ----------
    .. [1] Lim, "Two-Dimensional Signal and Image Processing", 1990.
    """
    image = _check_image(image, (np.uint8, np.float32))
    _check_odd("window", window, 3)
    if noise is not None and not noise >= 0:
        raise ValueError(f"noise must be >= 0 or None, got {noise!r}")
    values = _as_float(image)
    mean, var = _local_mean_var(values, int(window), float(values.mean(dtype=np.float64)))
    nu2 = np.float32(var.mean(dtype=np.float64) if noise is None else noise)
    denominator = np.maximum(var, nu2)
    gain = np.maximum(var - nu2, 0.0, out=var)
    np.divide(gain, denominator, out=gain, where=denominator > 0)
    out = values - mean
    out *= gain
    out += mean
    return _back_to(out, image.dtype)


@dataclasses.dataclass(frozen=True)
class EnhanceConfig:
    """Which enhancement to run and the parameters of each step.

    ``method``: ``"paper"`` = median → LCM → adaptive CLAHE → Wiener; ``"none"`` = identity;
    ``"he"`` = :func:`histogram_equalize`; ``"clahe"`` = :func:`clahe` with ``clahe_clip``.
    The other fields are the parameters of the functions of the same name, see their docstrings.
    """

    method: EnhanceMethod = "paper"
    median_ksize: int = 3
    lcm_window: int = 15
    lcm_k: float = 0.25
    lcm_gain_min: float = 1.0
    lcm_gain_max: float = 3.0
    clahe_tiles: int = 8
    clahe_clip_min: float = 1.0
    clahe_clip_max: float = 4.0
    clahe_std_ref: float = 80.0
    clahe_background: int = 10
    clahe_clip: float = 2.0
    wiener_window: int = 5
    wiener_noise: float | None = None

    def __post_init__(self) -> None:
        if self.method not in ENHANCE_METHODS:
            choices = ", ".join(repr(m) for m in ENHANCE_METHODS)
            raise ValueError(f"method must be one of {choices}, got {self.method!r}")
        _check_odd("median_ksize", self.median_ksize, 1)
        _check_odd("lcm_window", self.lcm_window, 3)
        _check_positive("lcm_k", self.lcm_k)
        _check_ordered("lcm_gain_min", self.lcm_gain_min, "lcm_gain_max", self.lcm_gain_max)
        _check_int("clahe_tiles", self.clahe_tiles, 1)
        _check_ordered("clahe_clip_min", self.clahe_clip_min, "clahe_clip_max", self.clahe_clip_max)
        _check_positive("clahe_std_ref", self.clahe_std_ref)
        _check_int("clahe_background", self.clahe_background, 0, 254)
        _check_positive("clahe_clip", self.clahe_clip)
        _check_odd("wiener_window", self.wiener_window, 3)
        if self.wiener_noise is not None and not self.wiener_noise >= 0:
            raise ValueError(f"wiener_noise must be >= 0 or None, got {self.wiener_noise!r}")


def enhance(image: np.ndarray, cfg: EnhanceConfig) -> np.ndarray:
    """Run the enhancement named by ``cfg.method`` on a uint8 mammogram.

    ``"paper"``: ``wiener_filter(adaptive_clahe(lcm_enhance(median_filter(image))))`` with the
    parameters of ``cfg``, the enhancement block of the reproduced paper (median + LCM [1]_,
    adaptive CLAHE [2]_ + Wiener [3]_). ``"none"`` returns a copy, ``"he"`` and ``"clahe"`` are
    the global and fixed-clip baselines.

    Parameters
    ----------
    image : (M, N) uint8 ndarray
    cfg : EnhanceConfig

    Returns
    -------
    out : (M, N) uint8 ndarray

    Raises
    ------
    ValueError
        If ``image`` is not a non-empty 2-D uint8 array.
    """
    image = _check_image(image)
    if cfg.method == "none":
        return image.copy()
    if cfg.method == "he":
        return histogram_equalize(image)
    if cfg.method == "clahe":
        return clahe(image, cfg.clahe_clip, cfg.clahe_tiles)
    out = median_filter(image, cfg.median_ksize)
    out = lcm_enhance(
        out, cfg.lcm_window, k=cfg.lcm_k, gain_min=cfg.lcm_gain_min, gain_max=cfg.lcm_gain_max
    )
    out = adaptive_clahe(
        out,
        tiles=cfg.clahe_tiles,
        clip_min=cfg.clahe_clip_min,
        clip_max=cfg.clahe_clip_max,
        std_ref=cfg.clahe_std_ref,
        background=cfg.clahe_background,
    )
    return wiener_filter(out, cfg.wiener_window, cfg.wiener_noise)
