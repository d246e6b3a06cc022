"""The paper's Figure 8 layout for one LIME explanation."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Circle
from skimage.segmentation import mark_boundaries

from mammo_ray.explain.superpixels import describe_input

__all__ = ["explanation_figure"]


_SUPPORT_COLOUR = (1.0, 0.85, 0.0)


_AGAINST_COLOUR = (0.0, 0.75, 1.0)


_OVERLAY_ALPHA = 0.45


def _overlay(gray: np.ndarray, mask: np.ndarray, colour: tuple[float, float, float]) -> np.ndarray:
    """RGB in [0, 1]: ``gray`` with ``mask`` tinted by ``colour`` and its outline drawn."""

    rgb = np.repeat(gray[..., None].astype(np.float64) / 255.0, 3, axis=2)
    rgb[mask] = (1 - _OVERLAY_ALPHA) * rgb[mask] + _OVERLAY_ALPHA * np.asarray(colour)
    return mark_boundaries(rgb, mask.astype(np.int64), color=colour, mode="inner")


def explanation_figure(
    image: np.ndarray,
    explanation: Any,
    label: int,
    *,
    title: str,
    circles: Sequence[tuple[float, float, float]] = (),
    num_features: int = 5,
    figsize: tuple[float, float] = (12.0, 3.6),
    dpi: int = 100,
) -> Figure:
    """The paper's Figure 8 for one image: four panels in a row.

    (a) the model input; (b) its superpixels; (c) the ``num_features`` superpixels with the
    largest positive weight for class ``label``
    (``get_image_and_mask(label, positive_only=True)``); (d) the superpixels against it, those
    of weight < 0 among the ``num_features`` largest ``|w|``
    (``get_image_and_mask(label, positive_only=False)``, mask -1). MIAS circles are drawn as
    dashed red outlines on (a), (c) and (d).

    Parameters
    ----------
    image : uint8 (H, W), the model input that was explained.
    explanation : ``lime.lime_image.ImageExplanation`` of ``image`` holding ``label``.
    label : class index explained.
    title : figure title. circles : (row, col, radius) in input pixels.
    num_features : superpixels shown in (c) and considered in (d), >= 1.
    figsize : (width, height) in inches. dpi : pixels per inch.

    Raises
    ------
    ValueError : if ``image`` is not 2-D uint8 of the explanation's shape or
        ``num_features`` < 1.
    """

    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 2:
        raise ValueError(f"image must be a 2-D uint8 array, got {describe_input(image)}")
    if image.shape != explanation.segments.shape:
        raise ValueError(
            f"image shape {image.shape} differs from the explanation's {explanation.segments.shape}"
        )
    if num_features < 1:
        raise ValueError(f"num_features must be >= 1, got {num_features}")
    _, support = explanation.get_image_and_mask(
        label, positive_only=True, num_features=num_features, hide_rest=False
    )
    _, signed = explanation.get_image_and_mask(
        label, positive_only=False, num_features=num_features, hide_rest=False
    )
    n_superpixels = len(np.unique(explanation.segments))
    panels = [
        ("(a) input", np.repeat(image[..., None], 3, axis=2), True),
        (
            f"(b) superpixels ({n_superpixels})",
            mark_boundaries(image, explanation.segments, color=_SUPPORT_COLOUR),
            False,
        ),
        ("(c) supporting the prediction", _overlay(image, support > 0, _SUPPORT_COLOUR), True),
        ("(d) against the prediction", _overlay(image, signed < 0, _AGAINST_COLOUR), True),
    ]
    figure = Figure(figsize=figsize, dpi=dpi, layout="constrained")
    for axes, (name, rgb, with_circles) in zip(figure.subplots(1, 4), panels, strict=True):
        axes.imshow(rgb, interpolation="nearest")
        if with_circles:
            for row, col, radius in circles:
                axes.add_patch(
                    Circle((col, row), radius, fill=False, color="red", linestyle="--", lw=1)
                )
        axes.set_title(name, fontsize=9)
        axes.set_axis_off()
    figure.suptitle(title, fontsize=10)
    return figure
