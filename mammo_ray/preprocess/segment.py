"""Segmentation of a MIAS film: breast region, optional pectoral muscle, candidate abnormal region.

The paper segments "through the use of a hybrid approach that combines the morphological
features extraction method with the Otsu thresholding method". This module makes that exact.
All images are 2-D ``uint8`` arrays (MIAS films: 1024x1024, black background, bright film labels
and tape strips, the breast against the left or the right side). Every threshold below is an
Otsu threshold (:func:`otsu_threshold`); connectivity is 8; a structuring element of radius
``r`` is ``(2r + 1) x (2r + 1)``: a square (``cv2.MORPH_RECT``, separable and ten times faster
than a disc at r = 10) for the breast and the pectoral muscle, a disc (``cv2.MORPH_ELLIPSE``)
for the candidate region, whose shape matters. A radius of 0 skips the operation.

Breast region, from the **original** film (:func:`breast_mask`)
    Its histogram is cleanly bimodal (film background vs. tissue); the enhanced image is not
    used here because CLAHE lifts the background noise towards the tissue.

    1. ``image > floor(breast_threshold_scale * t)``, ``t`` the Otsu threshold of the whole
       film. On MIAS, ``t`` (61-107 on the dev subset) falls inside the dim, uncompressed
       breast periphery; the default scale 0.5 keeps that periphery, 1.0 is plain Otsu.
    2. Opening with a square of radius ``breast_open_radius``: removes noise, scanner text and
       bridges thinner than ``2r + 1`` between the breast and tape strips.
    3. The largest connected component (largest area inside its outer contour), holes filled:
       drops film labels and strips, which are smaller.
    4. Closing with a square of radius ``breast_close_radius``, then holes filled again.

Chest-wall side (:func:`breast_side`)
    The side of the breast's bounding box whose outer tenth of the columns holds more mask
    pixels: the chest wall is a long straight edge, the nipple side tapers.

Pectoral muscle, optional (``pectoral=True``, :func:`pectoral_mask`)
    Corner box: the top ``pectoral_height`` of the rows and the chest-wall ``pectoral_width``
    of the columns of the breast's bounding box. In it: Otsu threshold over the breast pixels
    of the original film, opening with a square of radius ``r = breast_open_radius``, then the
    largest bright component reaching both the top ``r + 1`` rows and the chest-wall ``r + 1``
    columns of the box (films often have a dark first row or column), dilated once by a square
    of radius ``2r`` within the bright pixels (giving back the corners the opening cut). The
    muscle is taken as the right triangle spanned by that component's extent along those top
    rows and chest-wall columns (its hypotenuse approximates the muscle edge, which is close to
    straight on MLO films), intersected with the breast mask, and removed from the breast mask.
    The triangle lies inside the corner box, so nothing else is ever removed.

Candidate abnormal region, from the **enhanced** image (:func:`candidate_mask`)
    1. ``t_1`` = Otsu threshold of the enhanced image over the breast-mask pixels (after the
       pectoral muscle was removed, when it is). With ``candidate_passes = k > 1``, ``t_j`` is
       the Otsu threshold over the breast pixels brighter than ``t_(j-1)`` (recursive Otsu:
       each pass keeps the brighter class of the previous one).
    2. ``enhanced > t_k`` inside the breast mask; opening with a disc of radius
       ``candidate_open_radius`` removes specks.
    3. Connected components with fewer than ``candidate_min_area`` pixels are dropped.

    With one pass the region is the dense (fibroglandular) tissue plus any lesion in it, so
    its Dice against the small MIAS circles is low; more passes keep only the brightest part.

Classifier input of the "with segmentation" ablation (:attr:`Segmentation.cropped`)
    ``where(breast_mask, enhanced, 0)[row0:row1, col0:col1]``: the **enhanced** image with every
    pixel outside the breast mask (background, labels, strips and, when suppressed, the
    pectoral muscle) set to 0, cropped to the half-open bounding box ``(row0, row1, col0,
    col1)`` of the breast mask; ``uint8``, not resized (resizing is the pipeline's job). The
    candidate region is not part of the classifier input; it is scored against the MIAS circles
    (:func:`candidate_dice`).

Degenerate films (all black, or nothing left after the opening) give an empty breast mask, an
empty candidate mask, the whole image as bounding box and ``cropped = enhanced`` (a copy).

Reference: N. Otsu, "A threshold selection method from gray-level histograms", IEEE Trans.
Systems, Man, and Cybernetics 9(1), 62-66, 1979, doi:10.1109/TSMC.1979.4310076.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

from mammo_ray.preprocess.quality import circles_mask, dice

__all__ = [
    "SegmentConfig",
    "Segmentation",
    "otsu_threshold",
    "breast_mask",
    "breast_side",
    "pectoral_mask",
    "candidate_mask",
    "segment",
    "candidate_dice",
]

_GREY_LEVELS = 256


@dataclass(frozen=True)
class SegmentConfig:
    """Segmentation settings; defaults suit 1024x1024 MIAS films (200 µm pixels).

    Attributes
    ----------
    breast_threshold_scale : the breast threshold is this fraction of the film's Otsu
        threshold, in (0, 1].
    breast_open_radius : radius (px) of the square opening before the largest component is
        taken, and of the opening of the pectoral step. 0 disables it.
    breast_close_radius : radius (px) of the square closing of the breast component. 0
        disables it.
    pectoral : remove the pectoral muscle from the breast mask (off by default).
    pectoral_height, pectoral_width : size of the chest-wall corner box searched for the
        muscle, as fractions in (0, 1] of the breast bounding box's height and width.
    candidate_passes : number of recursive Otsu passes over the breast pixels, >= 1.
    candidate_open_radius : disc radius (px) of the opening of the candidate region. 0 disables it.
    candidate_min_area : candidate components with fewer pixels are dropped, >= 0.
    """

    breast_threshold_scale: float = 0.5
    breast_open_radius: int = 10
    breast_close_radius: int = 10
    pectoral: bool = False
    pectoral_height: float = 0.5
    pectoral_width: float = 0.5
    candidate_passes: int = 1
    candidate_open_radius: int = 3
    candidate_min_area: int = 100

    def __post_init__(self) -> None:
        for name in ("breast_threshold_scale", "pectoral_height", "pectoral_width"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"{name} must be a number, got {value!r}")
            if not 0.0 < value <= 1.0:
                raise ValueError(f"{name} must be in (0, 1], got {value!r}")
        minimums = {
            "breast_open_radius": 0,
            "breast_close_radius": 0,
            "candidate_passes": 1,
            "candidate_open_radius": 0,
            "candidate_min_area": 0,
        }
        for name, minimum in minimums.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{name} must be an integer, got {value!r}")
            if value < minimum:
                raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
        if not isinstance(self.pectoral, bool):
            raise ValueError(f"pectoral must be true or false, got {self.pectoral!r}")


@dataclass(frozen=True, eq=False)
class Segmentation:
    """Result of :func:`segment` for one film of shape (H, W).

    Attributes
    ----------
    breast_mask : bool (H, W); the breast, without the pectoral muscle when it was suppressed.
    candidate_mask : bool (H, W); the candidate abnormal region, a subset of ``breast_mask``.
    bbox : (row0, row1, col0, col1), half-open bounding box of ``breast_mask``; the whole
        image when the mask is empty.
    cropped : uint8 (row1 - row0, col1 - col0); the classifier input,
        ``where(breast_mask, enhanced, 0)[row0:row1, col0:col1]``.
    """

    breast_mask: np.ndarray
    candidate_mask: np.ndarray
    bbox: tuple[int, int, int, int]
    cropped: np.ndarray


def _check_image(image: np.ndarray, name: str) -> None:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 2:
        got = (
            f"{image.dtype} array of shape {image.shape}"
            if isinstance(image, np.ndarray)
            else type(image).__name__
        )
        raise ValueError(f"{name} must be a 2-D uint8 array, got {got}")


def _check_mask(mask: np.ndarray, shape: tuple[int, ...], name: str) -> None:
    if not isinstance(mask, np.ndarray) or mask.shape != shape:
        got = mask.shape if isinstance(mask, np.ndarray) else type(mask).__name__
        raise ValueError(f"{name} must be an array of shape {shape}, got {got}")


def _morph(mask: np.ndarray, op: int, radius: int, shape: int) -> np.ndarray:
    if radius == 0:
        return mask
    kernel = cv2.getStructuringElement(shape, (2 * radius + 1, 2 * radius + 1))
    return cv2.morphologyEx(mask, op, kernel)


def _otsu_from_histogram(hist: np.ndarray) -> int:
    """Otsu threshold of a grey-level histogram; the grey level itself when only one is present."""
    total = hist.sum()
    levels = np.arange(hist.size, dtype=np.float64)
    omega0 = np.cumsum(hist) / total
    mu = np.cumsum(hist * levels) / total
    between = omega0 * (1.0 - omega0)
    valid = between > 1e-12
    if not valid.any():
        return int(np.flatnonzero(hist)[0])
    sigma_b = np.zeros_like(omega0)
    sigma_b[valid] = (mu[-1] * omega0[valid] - mu[valid]) ** 2 / between[valid]
    return int(np.argmax(sigma_b))


def _histogram(image: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    hist = cv2.calcHist([image], [0], mask, [_GREY_LEVELS], [0, _GREY_LEVELS])
    return hist.ravel().astype(np.float64)


def otsu_threshold(image: np.ndarray, mask: np.ndarray | None = None) -> int:
    """Otsu's threshold ``t`` of a uint8 image: foreground is ``image > t``.

    With ``p_i`` the fraction of pixels at grey level ``i``, ``ω0(t) = Σ_{i<=t} p_i``,
    ``ω1 = 1 - ω0``, ``μ0(t)``, ``μ1(t)`` the class means and ``μ_T`` the global mean, ``t``
    maximises the between-class variance

        ``σ_B²(t) = ω0(t) ω1(t) (μ0(t) − μ1(t))² = (μ_T ω0(t) − μ(t))² / (ω0(t) ω1(t))``,

    ``μ(t) = Σ_{i<=t} i p_i`` (Otsu's zeroth and first cumulative moments); the first maximum
    is taken. Same value as ``cv2.threshold(..., THRESH_OTSU)`` and
    ``skimage.filters.threshold_otsu`` (up to ties).

    Parameters
    ----------
    image : uint8 (H, W).
    mask : optional (H, W) array; only pixels where it is non-zero count.

    Returns
    -------
    t : int in [0, 255]. An image with a single grey level ``g`` gives ``t = g`` (no
        foreground).

    Raises
    ------
    ValueError : if ``image`` is not 2-D uint8, ``mask`` has another shape, or selects no pixel.

    References
    ----------
    N. Otsu, "A threshold selection method from gray-level histograms", IEEE Trans. Systems,
    Man, and Cybernetics 9(1), 62-66, 1979, doi:10.1109/TSMC.1979.4310076.
    """
    _check_image(image, "image")
    mask_u8 = None
    if mask is not None:
        _check_mask(mask, image.shape, "mask")
        mask_u8 = np.asarray(mask != 0, dtype=np.uint8)
    hist = _histogram(image, mask_u8)
    if hist.sum() == 0:
        raise ValueError("mask selects no pixel: no Otsu threshold")
    return _otsu_from_histogram(hist)


def _fill_largest(mask: np.ndarray) -> np.ndarray:
    """The 8-connected component whose outer contour encloses the largest area, holes filled."""
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    filled = np.zeros_like(mask)
    if contours:
        largest = max(contours, key=cv2.contourArea)
        cv2.drawContours(filled, [largest], -1, 1, thickness=cv2.FILLED)
    return filled


def _breast_mask_u8(image: np.ndarray, cfg: SegmentConfig) -> np.ndarray:
    level = math.floor(cfg.breast_threshold_scale * otsu_threshold(image))
    mask = (image > level).astype(np.uint8)
    mask = _morph(mask, cv2.MORPH_OPEN, cfg.breast_open_radius, cv2.MORPH_RECT)
    mask = _morph(_fill_largest(mask), cv2.MORPH_CLOSE, cfg.breast_close_radius, cv2.MORPH_RECT)
    return _fill_largest(mask)


def breast_mask(image: np.ndarray, cfg: SegmentConfig | None = None) -> np.ndarray:
    """Breast region: scaled Otsu threshold, opening, largest component, closing, holes filled.

    See the module docstring for the exact steps; no pectoral suppression here.

    Parameters
    ----------
    image : uint8 (H, W), the original film.
    cfg : settings; ``SegmentConfig()`` when omitted.

    Returns
    -------
    mask : bool (H, W); empty when nothing survives the opening (e.g. an all-black film).
    """
    _check_image(image, "image")
    return _breast_mask_u8(image, cfg or SegmentConfig()).astype(bool)


def _bbox(mask: np.ndarray) -> tuple[int, int, int, int]:
    col0, row0, width, height = cv2.boundingRect(np.asarray(mask, dtype=np.uint8))
    return row0, row0 + height, col0, col0 + width


def breast_side(mask: np.ndarray) -> Literal["left", "right"]:
    """Image side of the chest wall: ``"left"`` when the breast extends from the left edge.

    Inside the bounding box of ``mask`` (width ``w``), compare the mask pixels in its first and
    its last ``max(1, w // 10)`` columns; the chest wall is a long straight edge, the nipple
    side tapers. Ties give ``"left"``.

    Parameters
    ----------
    mask : 2-D array, non-zero on the breast.

    Raises
    ------
    ValueError : if ``mask`` is not 2-D or is empty.
    """
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D, got shape {mask.shape}")
    row0, row1, col0, col1 = _bbox(mask != 0)
    if row1 == row0:
        raise ValueError("mask is empty: no chest-wall side")
    band = max(1, (col1 - col0) // 10)
    box = mask[row0:row1, col0:col1] != 0
    return "left" if box[:, :band].sum() >= box[:, -band:].sum() else "right"


def _corner_box(
    bbox: tuple[int, int, int, int], side: str, cfg: SegmentConfig
) -> tuple[int, int, int, int]:
    row0, row1, col0, col1 = bbox
    height = math.ceil(cfg.pectoral_height * (row1 - row0))
    width = math.ceil(cfg.pectoral_width * (col1 - col0))
    if side == "left":
        return row0, row0 + height, col0, col0 + width
    return row0, row0 + height, col1 - width, col1


def _pectoral_mask_u8(image: np.ndarray, breast: np.ndarray, cfg: SegmentConfig) -> np.ndarray:
    result = np.zeros_like(breast)
    if not breast.any():
        return result
    side = breast_side(breast)
    row0, row1, col0, col1 = _corner_box(_bbox(breast), side, cfg)
    region = breast[row0:row1, col0:col1]
    pixels = image[row0:row1, col0:col1]
    level = _otsu_from_histogram(_histogram(pixels, region))
    bright = ((pixels > level) & (region != 0)).astype(np.uint8)
    opened = _morph(bright, cv2.MORPH_OPEN, cfg.breast_open_radius, cv2.MORPH_RECT)
    _, labels, stats, _ = cv2.connectedComponentsWithStats(opened, connectivity=8)
    # Films often have a dark first row or column that the breast mask's closing took in, so
    # "touching" the top row or the chest wall means reaching into a band of the opening's size.
    band = cfg.breast_open_radius + 1
    width = labels.shape[1]
    wall_column = 0 if side == "left" else width - 1
    wall_band = np.s_[:, :band] if side == "left" else np.s_[:, width - band :]
    touching = np.intersect1d(labels[:band, :], labels[wall_band])
    touching = touching[touching > 0]
    if touching.size == 0:
        return result
    muscle = (labels == touching[np.argmax(stats[touching, cv2.CC_STAT_AREA])]).astype(np.uint8)
    # The opening cuts up to 2r + 1 px off the muscle's 45-degree corners; one dilation by 2r
    # inside the bright pixels gives them back without re-attaching what the opening cut off.
    muscle = _morph(muscle, cv2.MORPH_DILATE, 2 * cfg.breast_open_radius, cv2.MORPH_RECT) & bright
    along_top = np.flatnonzero(muscle[:band, :].any(axis=0))
    far_column = along_top[-1] if side == "left" else along_top[0]
    bottom_row = np.flatnonzero(muscle[wall_band].any(axis=1))[-1]
    corners = np.array([[wall_column, 0], [far_column, 0], [wall_column, bottom_row]], np.int32)
    triangle = np.zeros_like(region)
    cv2.fillConvexPoly(triangle, corners, 1)
    result[row0:row1, col0:col1] = triangle & region
    return result


def pectoral_mask(
    image: np.ndarray, breast: np.ndarray, cfg: SegmentConfig | None = None
) -> np.ndarray:
    """Pectoral muscle: a triangle in the breast's top corner on the chest-wall side.

    In the corner box (top ``pectoral_height`` of the breast bounding box's rows, chest-wall
    ``pectoral_width`` of its columns, side from :func:`breast_side`): Otsu over the breast
    pixels of the box, opening with a square of radius ``r = breast_open_radius``, the largest
    bright component reaching both the box's top ``r + 1`` rows and its chest-wall ``r + 1``
    columns, dilated once by a square of radius ``2r`` within the bright pixels. The muscle is
    the right triangle with vertices at the box's top chest-wall corner, the component's
    farthest column in those top rows and its lowest row in those chest-wall columns,
    intersected with ``breast``. The result never leaves the corner box.

    Parameters
    ----------
    image : uint8 (H, W), the film the breast mask was computed from.
    breast : (H, W) breast mask (non-zero inside).
    cfg : settings; ``SegmentConfig()`` when omitted (``cfg.pectoral`` is not consulted).

    Returns
    -------
    mask : bool (H, W), a subset of ``breast``; empty when no component qualifies or
        ``breast`` is empty.
    """
    _check_image(image, "image")
    _check_mask(breast, image.shape, "breast")
    breast_u8 = np.asarray(breast != 0, dtype=np.uint8)
    return _pectoral_mask_u8(image, breast_u8, cfg or SegmentConfig()).astype(bool)


def _candidate_mask_u8(enhanced: np.ndarray, breast: np.ndarray, cfg: SegmentConfig) -> np.ndarray:
    result = np.zeros_like(breast)
    row0, row1, col0, col1 = _bbox(breast)
    if row1 == row0:
        return result
    # Work in the breast's box padded by the opening radius: outside it everything is 0, so
    # the result is that of the whole image, at a fraction of the cost.
    pad = cfg.candidate_open_radius
    window = np.s_[max(row0 - pad, 0) : row1 + pad, max(col0 - pad, 0) : col1 + pad]
    pixels, region = enhanced[window], breast[window]
    hist = _histogram(pixels, region)
    level = -1
    for _ in range(cfg.candidate_passes):
        hist[: level + 1] = 0
        if hist.sum() == 0:
            break
        level = _otsu_from_histogram(hist)
    candidate = ((pixels > level) & (region != 0)).astype(np.uint8)
    candidate = _morph(candidate, cv2.MORPH_OPEN, cfg.candidate_open_radius, cv2.MORPH_ELLIPSE)
    _, labels, stats, _ = cv2.connectedComponentsWithStats(candidate, connectivity=8)
    keep = (stats[:, cv2.CC_STAT_AREA] >= cfg.candidate_min_area).astype(np.uint8)
    keep[0] = 0
    result[window] = keep[labels]
    return result


def candidate_mask(
    enhanced: np.ndarray, breast: np.ndarray, cfg: SegmentConfig | None = None
) -> np.ndarray:
    """Candidate abnormal region: recursive Otsu over the breast, opening, small parts dropped.

    ``t_1`` is the Otsu threshold of ``enhanced`` over the ``breast`` pixels; pass ``j`` takes
    the Otsu threshold over the pixels brighter than ``t_(j-1)``; after ``candidate_passes``
    passes the region is ``enhanced > t_k`` inside ``breast``, opened with a disc of radius
    ``candidate_open_radius``, without the 8-connected components smaller than
    ``candidate_min_area`` pixels.

    Parameters
    ----------
    enhanced : uint8 (H, W), the enhanced film.
    breast : (H, W) breast mask (non-zero inside), without the pectoral muscle if it is to be
        excluded.
    cfg : settings; ``SegmentConfig()`` when omitted.

    Returns
    -------
    mask : bool (H, W), a subset of ``breast``; empty when ``breast`` is empty.
    """
    _check_image(enhanced, "enhanced")
    _check_mask(breast, enhanced.shape, "breast")
    breast_u8 = np.asarray(breast != 0, dtype=np.uint8)
    return _candidate_mask_u8(enhanced, breast_u8, cfg or SegmentConfig()).astype(bool)


def segment(
    original: np.ndarray, enhanced: np.ndarray, cfg: SegmentConfig | None = None
) -> Segmentation:
    """Segment one film: breast mask from ``original``, candidate region and crop from ``enhanced``.

    Breast mask (:func:`breast_mask`, minus :func:`pectoral_mask` when ``cfg.pectoral``),
    candidate region (:func:`candidate_mask`) and classifier input
    ``where(breast_mask, enhanced, 0)[row0:row1, col0:col1]``, as in the module docstring. An
    empty breast mask gives an empty candidate, the whole image as ``bbox`` and
    ``cropped = enhanced.copy()``.

    Parameters
    ----------
    original : uint8 (H, W), the film as read.
    enhanced : uint8 (H, W), the same film after enhancement.
    cfg : settings; ``SegmentConfig()`` when omitted.

    Raises
    ------
    ValueError : if either image is not 2-D uint8 or their shapes differ.
    """
    _check_image(original, "original")
    _check_image(enhanced, "enhanced")
    if original.shape != enhanced.shape:
        raise ValueError(
            f"image shapes differ: original {original.shape} vs enhanced {enhanced.shape}"
        )
    cfg = cfg or SegmentConfig()
    breast = _breast_mask_u8(original, cfg)
    if cfg.pectoral:
        breast &= 1 - _pectoral_mask_u8(original, breast, cfg)
    candidate = _candidate_mask_u8(enhanced, breast, cfg)
    row0, row1, col0, col1 = _bbox(breast)
    if row1 == row0:
        row0, row1, col0, col1 = 0, enhanced.shape[0], 0, enhanced.shape[1]
        cropped = enhanced.copy()
    else:
        window = np.s_[row0:row1, col0:col1]
        cropped = np.where(breast[window] != 0, enhanced[window], np.uint8(0))
    return Segmentation(
        breast_mask=breast.astype(bool),
        candidate_mask=candidate.astype(bool),
        bbox=(row0, row1, col0, col1),
        cropped=cropped,
    )


def candidate_dice(
    seg: Segmentation, circles: Iterable[tuple[float, float, float]]
) -> float | None:
    """Dice of the candidate region against the union of MIAS circles ``(row, col, radius)``.

    ``DSC = 2|C ∩ G| / (|C| + |G|)`` with ``C`` the candidate mask and ``G`` the circles drawn by
    :func:`~mammo_ray.preprocess.quality.circles_mask`. A circle encloses its lesion, so Dice is
    capped below 1 even for a perfect lesion mask.

    Parameters
    ----------
    seg : a segmentation of the film.
    circles : (row, col, radius) in pixels, row/col from the top-left corner of the film.

    Returns
    -------
    dsc : float in [0, 1], or None when there are no circles (normal films, mdb059).
    """
    circles = list(circles)
    if not circles:
        return None
    return dice(seg.candidate_mask, circles_mask(seg.candidate_mask.shape, circles))
