"""Lesion supervision from the MIAS circles: lesion masks and training patches at full resolution.

The circles of a film (``Info.txt``, mapped into a cached ``enhanced_<S>`` array by
:func:`~mammo_ray.preprocess.frames.map_circles`) give pixel-level labels the whole-film models
do not use. :func:`sample_patches` draws patch centres from them:

- **positives**, one class per lesion (the film's label, ``mass`` or ``calc``), centred in the
  disc with a uniform jitter of up to ``jitter * radius`` (at most a quarter patch);
- **negatives** (``normal``), uniform over the breast mask outside every lesion disc grown by
  ``exclusion``: normal films and the lesion-free tissue of abnormal films alike.

An abnormal film without a circle (calcifications spread over the film, ``*NOTE 3*``, or a row
without a centre) gives no patch at all: its tissue is not known to be normal, and it teaches
through its film-level label only. :func:`extract_patches` cuts the patches out, with a random
scale, 90-degree rotation and flip when augmenting (zero outside the film).

Reference: L. Shen et al., "Deep learning to improve breast cancer detection on screening
mammography", Sci Rep 9:12495, 2019 (patch classifier trained on lesion ROIs, then run over
the whole image).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import cv2
import numpy as np

from mammo_ray.data.mias_info import LABELS, MiasRecord
from mammo_ray.preprocess.frames import map_circles
from mammo_ray.preprocess.quality import circles_mask

__all__ = [
    "Circle",
    "SamplerConfig",
    "PatchSet",
    "film_circles",
    "lesion_mask",
    "sample_patches",
    "extract_patches",
    "window_centres",
    "hard_negatives",
]

Circle = tuple[float, float, float]
"""(row, col, radius) in pixels of a cached array."""

_NEGATIVE_GRID = 4
"""Negatives are drawn on a grid of this pitch (pixels), plus a uniform offset within a cell."""


@dataclasses.dataclass(frozen=True)
class SamplerConfig:
    """How many patches of each kind one pass over the films draws, and where.

    Attributes
    ----------
    positives_per_lesion : patches centred in each lesion circle, >= 1.
    negatives_per_film : normal-tissue patches from each film that has a known lesion-free
        region (every normal film; abnormal films with a circle), >= 0.
    jitter : positives' centres lie within ``jitter * radius`` of the lesion centre (and
        within a quarter patch), in [0, 1].
    exclusion : negatives' centres lie outside every lesion disc grown ``exclusion`` times,
        >= 1.
    scale : positives and negatives are cut at a side ``size * s``, ``s`` log-uniform in
        ``[1 / scale, scale]``, and resized to ``size`` when augmenting; >= 1.
    """

    positives_per_lesion: int = 8
    negatives_per_film: int = 8
    jitter: float = 0.5
    exclusion: float = 1.5
    scale: float = 1.25

    def __post_init__(self) -> None:
        if self.positives_per_lesion < 1:
            raise ValueError(f"positives_per_lesion must be >= 1, got {self.positives_per_lesion}")
        if self.negatives_per_film < 0:
            raise ValueError(f"negatives_per_film must be >= 0, got {self.negatives_per_film}")
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"jitter must lie in [0, 1], got {self.jitter}")
        if self.exclusion < 1:
            raise ValueError(f"exclusion must be >= 1, got {self.exclusion}")
        if self.scale < 1:
            raise ValueError(f"scale must be >= 1, got {self.scale}")


@dataclasses.dataclass(frozen=True)
class PatchSet:
    """Patch centres: ``film[i]`` is the row of the films array, ``centre[i]`` the (row, col)
    in its pixels and ``label[i]`` the class index into :data:`LABELS`."""

    film: np.ndarray
    centre: np.ndarray
    label: np.ndarray

    def __len__(self) -> int:
        return int(self.label.size)


def film_circles(
    records: Sequence[MiasRecord], size: int, film_shapes: Sequence[tuple[int, int]]
) -> list[list[Circle]]:
    """Each record's circles in the pixels of its ``enhanced_<size>`` array (the whole film
    resized): ``[]`` for normal films and abnormal films without a centre."""
    return [
        map_circles([(c.row, c.col, c.radius) for c in record.rois], size, shape=shape)
        for record, shape in zip(records, film_shapes, strict=True)
    ]


def lesion_mask(shape: tuple[int, int], circles: Sequence[Circle], grow: float = 1.0) -> np.ndarray:
    """Boolean mask of the union of the lesion discs, each radius multiplied by ``grow``."""
    return circles_mask(shape, [(row, col, radius * grow) for row, col, radius in circles])


def _positives(
    rng: np.random.Generator, circles: Sequence[Circle], count: int, jitter: float, cap: float
) -> np.ndarray:
    """``count`` centres per circle, uniform over the disc of radius ``min(jitter * r, cap)``
    around its centre."""
    centres = []
    for row, col, radius in circles:
        limit = min(radius * jitter, cap)
        angle = rng.uniform(0, 2 * np.pi, count)
        distance = limit * np.sqrt(rng.uniform(0, 1, count))
        centres.append(
            np.stack([row + distance * np.sin(angle), col + distance * np.cos(angle)], 1)
        )
    return np.concatenate(centres) if centres else np.zeros((0, 2))


def _negatives(
    rng: np.random.Generator,
    breast: np.ndarray,
    circles: Sequence[Circle],
    count: int,
    exclusion: float,
) -> np.ndarray:
    """``count`` centres uniform over the breast outside the grown lesion discs (none when that
    region is empty): a grid point of the region moved within its cell, unless that leaves the
    breast."""
    allowed = breast[::_NEGATIVE_GRID, ::_NEGATIVE_GRID] > 0
    if circles:
        grid = [
            (r / _NEGATIVE_GRID, c / _NEGATIVE_GRID, rad / _NEGATIVE_GRID) for r, c, rad in circles
        ]
        allowed &= ~lesion_mask(allowed.shape, grid, exclusion)
    cells = np.flatnonzero(allowed)
    if cells.size == 0 or count == 0:
        return np.zeros((0, 2))
    chosen = rng.choice(cells, size=count, replace=cells.size < count)
    grid = np.stack(np.divmod(chosen, allowed.shape[1]), 1) * _NEGATIVE_GRID
    moved = grid + rng.uniform(0, _NEGATIVE_GRID, (count, 2))
    inside = breast[moved[:, 0].astype(int), moved[:, 1].astype(int)] > 0
    return np.where(inside[:, None], moved, grid)


def sample_patches(
    rng: np.random.Generator,
    breasts: np.ndarray,
    circles: Sequence[Sequence[Circle]],
    labels: np.ndarray,
    rows: Sequence[int],
    patch_size: int,
    cfg: SamplerConfig = SamplerConfig(),
) -> PatchSet:
    """Draw one pass of patch centres from the films ``rows`` (see the module notes).

    Parameters
    ----------
    rng : the generator every draw comes from.
    breasts : (N, S, S) uint8 breast masks (``breast_<S>``, nonzero inside).
    circles : each film's lesion circles in the same pixels (:func:`film_circles`).
    labels : (N,) film class index into :data:`LABELS`.
    rows : the films to draw from (a training part).
    patch_size : side of a patch in pixels, bounding the jitter to a quarter patch.
    """
    normal = LABELS.index("normal")
    films, centres, classes = [], [], []
    for row in rows:
        found = circles[row]
        if labels[row] != normal and not found:
            continue
        pos = _positives(rng, found, cfg.positives_per_lesion, cfg.jitter, patch_size / 4)
        neg = _negatives(rng, breasts[row], found, cfg.negatives_per_film, cfg.exclusion)
        films.append(np.full(len(pos) + len(neg), row, np.int64))
        centres.append(np.concatenate([pos, neg]))
        classes.append(np.r_[np.full(len(pos), labels[row]), np.full(len(neg), normal)])
    if not films:
        return PatchSet(np.zeros(0, np.int64), np.zeros((0, 2), np.float32), np.zeros(0, np.int64))
    return PatchSet(
        np.concatenate(films),
        np.concatenate(centres).astype(np.float32),
        np.concatenate(classes).astype(np.int64),
    )


def _crop(image: np.ndarray, row: float, col: float, side: int) -> np.ndarray:
    """The ``side x side`` window of ``image`` centred at (row, col), zero outside the image."""
    top, left = int(round(row - side / 2)), int(round(col - side / 2))
    out = np.zeros((side, side), image.dtype)
    r0, c0 = max(top, 0), max(left, 0)
    r1, c1 = min(top + side, image.shape[0]), min(left + side, image.shape[1])
    if r0 < r1 and c0 < c1:
        out[r0 - top : r1 - top, c0 - left : c1 - left] = image[r0:r1, c0:c1]
    return out


def extract_patches(
    images: np.ndarray,
    patches: PatchSet,
    size: int,
    rng: np.random.Generator | None = None,
    scale: float = 1.25,
) -> np.ndarray:
    """(n, size, size) uint8 patches of ``images`` (N, S, S) at ``patches``' centres.

    With ``rng``, each patch is cut at side ``size * s`` (``s`` log-uniform in ``[1/scale,
    scale]``) and resized to ``size``, then rotated by a random multiple of 90 degrees and
    flipped left-right with probability 1/2; without, it is cut at ``size`` as is.
    """
    out = np.empty((len(patches), size, size), np.uint8)
    for i, (film, (row, col)) in enumerate(zip(patches.film, patches.centre, strict=True)):
        if rng is None:
            out[i] = _crop(images[film], row, col, size)
            continue
        side = max(2, int(round(size * np.exp(rng.uniform(-np.log(scale), np.log(scale))))))
        patch = _crop(images[film], row, col, side)
        if side != size:
            interpolation = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
            patch = cv2.resize(patch, (size, size), interpolation=interpolation)
        patch = np.rot90(patch, int(rng.integers(4)))
        out[i] = patch[:, ::-1] if rng.integers(2) else patch
    return out


def window_centres(shape: tuple[int, int], patch_size: int, stride: int) -> np.ndarray:
    """(h, w, 2) film (row, col) of the centre of each window of a score map of ``shape``:
    window ``(i, j)`` covers rows ``[i s, i s + p)`` and columns ``[j s, j s + p)``."""
    rows = np.arange(shape[0]) * stride + (patch_size - 1) / 2
    cols = np.arange(shape[1]) * stride + (patch_size - 1) / 2
    return np.stack(np.meshgrid(rows, cols, indexing="ij"), axis=-1)


def hard_negatives(
    score: np.ndarray,
    inside: np.ndarray,
    circles: Sequence[Circle],
    patch_size: int,
    stride: int,
    count: int,
    exclusion: float = 1.5,
) -> np.ndarray:
    """(count, 2) centres of the ``count`` windows of a film's score map that score highest
    (``score``, e.g. 1 - p_normal, (h, w)) inside the breast (``inside``, (h, w) bool) and
    outside every lesion disc grown ``exclusion`` times; repeated when fewer windows qualify,
    none when no window does."""
    centres = window_centres(score.shape, patch_size, stride).reshape(-1, 2)
    allowed = inside.reshape(-1).astype(bool)
    for row, col, radius in circles:
        distance = np.hypot(centres[:, 0] - row, centres[:, 1] - col)
        allowed &= distance > exclusion * radius
    candidates = np.flatnonzero(allowed)
    if candidates.size == 0 or count == 0:
        return np.zeros((0, 2))
    ranked = candidates[np.argsort(score.reshape(-1)[candidates], kind="stable")[::-1]]
    return centres[np.resize(ranked[:count], count)]
