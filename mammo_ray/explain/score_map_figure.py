"""Where a patch model looks: its score map over the film, beside the LIME figure.

Each window of the map (``patch_size`` px, every ``stride`` px) is drawn as the
``stride``-square around its centre, coloured by 1 - p(normal) and blended over the film; the
window the model scores most abnormal is outlined, and the MIAS circles are dashed red as in the
LIME figure, so the two figures can be read side by side.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Circle, Rectangle

from mammo_ray.learn.bilateral_maps import AbnormalMaps

__all__ = ["score_map_figure", "write_score_map_figures"]

_MAP_ALPHA = 0.5


def score_map_figure(
    film: np.ndarray,
    abnormal: np.ndarray,
    inside: np.ndarray,
    patch_size: int,
    stride: int,
    *,
    title: str,
    circles: Sequence[tuple[float, float, float]] = (),
    figsize: tuple[float, float] = (8.0, 4.2),
    dpi: int = 100,
) -> Figure:
    """Two panels: (a) the film with its circles; (b) the map ``abnormal`` (h, w) over it,
    windows outside the breast (``inside`` False) left clear, the top window outlined."""
    height, width = film.shape
    rows, cols = abnormal.shape
    start = (patch_size - stride) / 2 - 0.5
    extent = (start, start + cols * stride, start + rows * stride, start)
    shown = np.ma.masked_where(~inside, abnormal)
    figure = Figure(figsize=figsize, dpi=dpi, layout="constrained")
    film_axes, map_axes = figure.subplots(1, 2)
    for axes in (film_axes, map_axes):
        axes.imshow(film, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        for row, col, radius in circles:
            axes.add_patch(
                Circle((col, row), radius, fill=False, color="red", linestyle="--", lw=1)
            )
        axes.set_xlim(-0.5, width - 0.5)
        axes.set_ylim(height - 0.5, -0.5)
        axes.set_axis_off()
    image = map_axes.imshow(shown, cmap="inferno", vmin=0, vmax=1, alpha=_MAP_ALPHA, extent=extent)
    if inside.any():
        top = np.unravel_index(int(np.where(inside, abnormal, -1).argmax()), abnormal.shape)
        corner = (top[1] * stride - 0.5, top[0] * stride - 0.5)
        map_axes.add_patch(
            Rectangle(corner, patch_size, patch_size, fill=False, color="cyan", lw=1.2)
        )
    figure.colorbar(image, ax=map_axes, shrink=0.8, label="1 - p(normal)")
    film_axes.set_title("(a) film", fontsize=9)
    map_axes.set_title(f"(b) score map ({patch_size} px windows, stride {stride})", fontsize=9)
    figure.suptitle(title, fontsize=10)
    return figure


def write_score_map_figures(
    films: np.ndarray,
    maps: AbnormalMaps,
    image_ids: Sequence[str],
    circles: Sequence[Sequence[tuple[float, float, float]]],
    out_dir: str | Path,
) -> list[str]:
    """``<image_id>_scoremap.png`` per film (N, S, S) in ``out_dir``; the file names."""
    names = []
    for i, image_id in enumerate(image_ids):
        name = f"{image_id}_scoremap.png"
        peak = float(np.where(maps.inside[i], maps.abnormal[i], 0).max())
        figure = score_map_figure(
            films[i],
            maps.abnormal[i],
            maps.inside[i],
            maps.patch_size,
            maps.stride,
            title=f"{image_id}: most abnormal window 1 - p(normal) = {peak:.2f}",
            circles=circles[i],
        )
        figure.savefig(Path(out_dir) / name, format="png", dpi=figure.dpi)
        names.append(name)
    return names
