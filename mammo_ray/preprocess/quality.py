"""Quality measures of enhancement and segmentation.

Segmentation overlap (this section): :func:`circles_mask` draws the MIAS ground-truth
circles and :func:`dice` compares a predicted mask with it. A MIAS circle *encloses* the
lesion, so even a perfect lesion mask has Dice well below 1 against it; read the numbers
as overlap with the annotated region, not as segmentation accuracy.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

__all__ = ["circles_mask", "dice"]


def circles_mask(shape: tuple[int, int], circles: Iterable[tuple[float, float, float]]) -> np.ndarray:
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
