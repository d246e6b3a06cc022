"""MIAS abnormality circles in model-input pixels, and the share of LIME's positive weight
inside them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from mammo_ray.data.mias_info import MiasRecord
from mammo_ray.explain.superpixels import describe_input
from mammo_ray.learn.config import TrainConfig
from mammo_ray.preprocess.frames import map_circles
from mammo_ray.preprocess.prepared import PreparedData
from mammo_ray.preprocess.quality import circles_mask

__all__ = ["input_circles", "positive_weight_in_circles"]


_Circles = list[tuple[float, float, float]]


def input_circles(
    records: Sequence[MiasRecord], cfg: TrainConfig, data: PreparedData
) -> list[_Circles]:
    """The MIAS circles of each record, in the coordinates of the model input of ``cfg``.

    ``cfg`` is the model's training config and ``data`` the preprocessing cache it reads.
    ``enhanced_<S>`` inputs are the whole film scaled; ``segmented_<S>`` inputs are the crop
    box the cache recorded for each film (``data.manifest.crop_boxes``), so no film is read or
    segmented again. Records without circles give ``[]``.
    """
    row = {image_id: i for i, image_id in enumerate(data.image_ids)}
    mapped = []
    for record in records:
        i = row[record.image_id]
        mapped.append(
            map_circles(
                [(c.row, c.col, c.radius) for c in record.rois],
                cfg.input_size,
                bbox=data.manifest.crop_boxes[i] if cfg.segmentation else None,
                shape=data.manifest.film_shapes[i],
            )
        )
    return mapped


def positive_weight_in_circles(
    segments: np.ndarray,
    weights: Mapping[int, float],
    circles: Sequence[tuple[float, float, float]],
) -> float | None:
    """Share of the positive LIME weight that lies inside the circles.

    Each superpixel ``k`` spreads its weight ``w_k`` evenly over its ``|S_k|`` pixels; with
    ``C`` the union of the discs (:func:`mammo_ray.preprocess.quality.circles_mask`)::

        f = sum_k max(w_k, 0) |S_k ∩ C| / |S_k|  /  sum_k max(w_k, 0)

    Parameters
    ----------
    segments : int (H, W) superpixel labels.
    weights : superpixel label -> LIME weight; labels not listed weigh 0.
    circles : (row, col, radius) in the pixels of ``segments``.

    Returns
    -------
    f : float in [0, 1]; None when there is no circle or no positive weight.

    Raises
    ------
    ValueError : if ``segments`` is not a 2-D integer array or a weighted label is not in it.
    """

    if (
        not isinstance(segments, np.ndarray)
        or segments.ndim != 2
        or not np.issubdtype(segments.dtype, np.integer)
    ):
        raise ValueError(f"segments must be a 2-D integer array, got {describe_input(segments)}")
    if segments.size and segments.min() < 0:
        raise ValueError("segments must hold labels >= 0")
    sizes = np.bincount(segments.ravel(), minlength=1)
    absent = [k for k in weights if not 0 <= k < len(sizes) or sizes[k] == 0]
    if absent:
        raise ValueError(f"weights name superpixel {absent[0]}, which is not in segments")
    circles = list(circles)
    positive = {k: w for k, w in weights.items() if w > 0}
    if not circles or not positive:
        return None
    inside = np.bincount(segments[circles_mask(segments.shape, circles)], minlength=len(sizes))
    total = sum(positive.values())
    return float(sum(w * inside[k] / sizes[k] for k, w in positive.items()) / total)
