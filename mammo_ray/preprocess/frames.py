"""Film pixels and cached-array pixels: where a point of the film lands in an ``enhanced_<S>``,
``segmented_<S>`` or ``breast_<S>`` array (see :func:`mammo_ray.preprocess.pipeline.resize_square`).
"""

from __future__ import annotations

from collections.abc import Sequence

from mammo_ray.data.mias import MIAS_IMAGE_SHAPE

__all__ = ["map_circles"]


def map_circles(
    circles: Sequence[tuple[float, float, float]],
    size: int,
    *,
    bbox: tuple[int, int, int, int] | None = None,
    shape: tuple[int, int] = MIAS_IMAGE_SHAPE,
) -> list[tuple[float, float, float]]:
    """Map circles ``(row, col, radius)`` from the film to an ``size x size`` model input.

    The input is ``resize_square(film[row0:row1, col0:col1], size)`` (see
    :func:`mammo_ray.preprocess.pipeline.resize_square`): the crop, zero-padded to a centred
    square of side ``L = max(h, w)`` (``top = (L - h) // 2``, ``left = (L - w) // 2``), then
    scaled by ``s = size / L``. With pixel centres mapped as cv2.resize maps them::

        row' = (row - row0 + top + 0.5) * s - 0.5
        col' = (col - col0 + left + 0.5) * s - 0.5
        radius' = radius * s

    Parameters
    ----------
    circles : (row, col, radius) in film pixels, row/col from the top-left corner.
    size : side of the model input, >= 1.
    bbox : half-open (row0, row1, col0, col1) of the crop, for ``segmented_*`` inputs
        (:attr:`mammo_ray.preprocess.segment.Segmentation.bbox`); None for ``enhanced_*``
        inputs, which are the whole film.
    shape : (height, width) of the film.

    Returns
    -------
    circles : (row, col, radius) in model-input pixels.

    Raises
    ------
    ValueError : if ``size`` < 1 or ``bbox`` is empty or leaves the film.
    """
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    height, width = shape
    row0, row1, col0, col1 = (0, height, 0, width) if bbox is None else bbox
    if not (0 <= row0 < row1 <= height and 0 <= col0 < col1 <= width):
        raise ValueError(f"bbox {bbox} is empty or outside a film of shape {tuple(shape)}")
    crop_h, crop_w = row1 - row0, col1 - col0
    side = max(crop_h, crop_w)
    top, left = (side - crop_h) // 2, (side - crop_w) // 2
    scale = size / side
    return [
        (
            (row - row0 + top + 0.5) * scale - 0.5,
            (col - col0 + left + 0.5) * scale - 0.5,
            radius * scale,
        )
        for row, col, radius in circles
    ]
