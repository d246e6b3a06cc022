"""PNG figures of an evaluation and of training: confusion matrix, curves per epoch.

Each function draws one :class:`matplotlib.figure.Figure`, writes it as a PNG of exactly
``figsize * dpi`` pixels, and returns the path. The figures are built with the object API
and rendered by the Agg canvas, never through ``pyplot``: nothing here selects a global
backend or keeps a figure alive, so the functions are safe headless, in Ray workers and
threads, and leave an interactive session's backend as it was.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

__all__ = [
    "plot_confusion_matrix",
    "plot_training_curves",
    "plot_metric_by_epoch",
    "plot_selection_vs_test",
]

_LOSS_KEYS = ("train_loss", "val_loss")
_ACCURACY_KEYS = ("train_accuracy", "val_accuracy", "val_balanced_accuracy")


def _save(figure: Figure, path: str | Path, dpi: int) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png", dpi=dpi)
    return path


def plot_confusion_matrix(
    cm: np.ndarray | Sequence[Sequence[float]],
    labels: Sequence[str],
    path: str | Path,
    title: str = "Confusion matrix",
    *,
    figsize: tuple[float, float] = (5.0, 4.5),
    dpi: int = 120,
) -> Path:
    """Heat map of a confusion matrix with the count written in every cell.

    x axis = predicted class, y axis = true class (``cm[i, j]``: true ``i`` predicted ``j``),
    the layout of the paper's Figure 7. Integer matrices are annotated as counts, others
    (e.g. row-normalised) with two decimals; the text turns white on dark cells.

    Parameters
    ----------
    cm : (C, C) non-negative matrix, e.g. ``classification_metrics(...)["confusion_matrix"]``.
    labels : C class names.
    path : PNG file to write; missing parent folders are created.
    title : figure title.
    figsize : (width, height) in inches. dpi : pixels per inch.

    Returns
    -------
    Path : ``path``.

    Raises
    ------
    ValueError : if ``cm`` is not a (C, C) matrix of finite non-negative values for C labels.
    """
    matrix = np.asarray(cm)
    names = list(labels)
    if matrix.shape != (len(names), len(names)) or not names:
        raise ValueError(
            f"confusion matrix must have shape ({len(names)}, {len(names)}) for labels {names}, "
            f"got {matrix.shape}"
        )
    if not np.issubdtype(matrix.dtype, np.number) or not np.all(np.isfinite(matrix)):
        raise ValueError("confusion matrix must hold finite numbers")
    if np.any(matrix < 0):
        raise ValueError("confusion matrix must not hold negative values")

    integer = np.issubdtype(matrix.dtype, np.integer)
    figure = Figure(figsize=figsize, dpi=dpi, layout="constrained")
    axes = figure.add_subplot()
    image = axes.imshow(matrix, cmap="Blues", vmin=0)
    figure.colorbar(image, ax=axes)
    threshold = matrix.max() / 2.0
    for (row, col), value in np.ndenumerate(matrix):
        axes.text(
            col,
            row,
            f"{int(value)}" if integer else f"{value:.2f}",
            ha="center",
            va="center",
            color="white" if value > threshold else "black",
        )
    ticks = np.arange(len(names))
    axes.set_xticks(ticks, names)
    axes.set_yticks(ticks, names)
    axes.set_xlabel("Predicted class")
    axes.set_ylabel("True class")
    axes.set_title(title)
    return _save(figure, path, dpi)


def _series(history: Sequence[Mapping[str, Any]], key: str) -> tuple[list[float], list[float]]:
    epochs: list[float] = []
    values: list[float] = []
    for index, row in enumerate(history):
        if row.get(key) is not None:
            epochs.append(float(row.get("epoch", index + 1)))
            values.append(float(row[key]))
    return epochs, values


def _draw_panel(axes: Any, history: Sequence[Mapping[str, Any]], keys: Sequence[str]) -> None:
    drawn = False
    for key in keys:
        epochs, values = _series(history, key)
        if epochs:
            axes.plot(epochs, values, marker="o", markersize=3, label=key)
            drawn = True
    if drawn:
        axes.legend()
    else:
        axes.text(0.5, 0.5, "no data", ha="center", va="center", transform=axes.transAxes)
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_xlabel("epoch")
    axes.grid(alpha=0.3)


def plot_training_curves(
    history: Sequence[Mapping[str, Any]],
    path: str | Path,
    *,
    figsize: tuple[float, float] = (10.0, 4.0),
    dpi: int = 120,
) -> Path:
    """Two panels per epoch: losses (``train_loss``, ``val_loss``) and accuracies
    (``train_accuracy``, ``val_accuracy``, ``val_balanced_accuracy``).

    Each row of ``history`` is one epoch; the x value is its ``epoch`` key, or its position
    (from 1) when the key is missing. A key that is missing or ``None`` in a row is skipped
    for that row only; a panel none of whose keys occur says "no data".

    Parameters
    ----------
    history : per-epoch dicts, e.g. ``{"epoch": 1, "train_loss": 0.9, "val_accuracy": 0.6}``.
    path : PNG file to write; missing parent folders are created.
    figsize : (width, height) in inches. dpi : pixels per inch.

    Returns
    -------
    Path : ``path``.

    Raises
    ------
    ValueError : if ``history`` is empty or no row holds any of the keys above.
    """
    if not history:
        raise ValueError("history is empty: there is no epoch to plot")
    known = set(_LOSS_KEYS) | set(_ACCURACY_KEYS)
    present = {key for row in history for key in row}
    if not present & known:
        raise ValueError(
            f"history rows hold none of {sorted(known)}; their keys are {sorted(present)}"
        )
    figure = Figure(figsize=figsize, dpi=dpi, layout="constrained")
    loss_axes, accuracy_axes = figure.subplots(1, 2)
    _draw_panel(loss_axes, history, _LOSS_KEYS)
    loss_axes.set_ylabel("loss")
    loss_axes.set_title("Loss")
    _draw_panel(accuracy_axes, history, _ACCURACY_KEYS)
    accuracy_axes.set_ylabel("accuracy")
    accuracy_axes.set_title("Accuracy")
    return _save(figure, path, dpi)


def plot_metric_by_epoch(
    series: Mapping[str, Sequence[tuple[int, float]]],
    path: str | Path,
    ylabel: str,
    title: str,
    *,
    figsize: tuple[float, float] = (6.0, 4.0),
    dpi: int = 120,
) -> Path:
    """One line per name of a metric against the epoch (the paper's Figure 6: accuracy per
    epoch of each backbone).

    Parameters
    ----------
    series : ``{name: [(epoch, value), ...]}``; points are drawn in order of epoch.
    path : PNG file to write; missing parent folders are created.
    ylabel : y axis label. title : figure title.
    figsize : (width, height) in inches. dpi : pixels per inch.

    Returns
    -------
    Path : ``path``.

    Raises
    ------
    ValueError : if ``series`` is empty, or a name has no points or a point that is not an
        (epoch, value) pair.
    """
    if not series:
        raise ValueError("series is empty: there is no line to plot")
    figure = Figure(figsize=figsize, dpi=dpi, layout="constrained")
    axes = figure.add_subplot()
    for name, points in series.items():
        pairs = [tuple(point) for point in points]
        if not pairs:
            raise ValueError(f"series {name!r} has no points")
        if any(len(pair) != 2 for pair in pairs):
            raise ValueError(f"series {name!r}: every point must be an (epoch, value) pair")
        epochs, values = zip(*sorted(pairs), strict=True)
        axes.plot(epochs, values, marker="o", markersize=3, label=name)
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_xlabel("epoch")
    axes.set_ylabel(ylabel)
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend()
    return _save(figure, path, dpi)


def plot_selection_vs_test(
    points: Sequence[tuple[float, float]],
    path: str | Path,
    xlabel: str,
    title: str,
    *,
    chosen: int | None = None,
    figsize: tuple[float, float] = (5.5, 4.5),
    dpi: int = 120,
) -> Path:
    """One dot per trial: its selection metric (x) against its test balanced accuracy (y),
    the chosen trial (index into ``points``) circled, chance (1/3) dashed.

    Raises
    ------
    ValueError : if ``points`` is empty or ``chosen`` is not one of its indices.
    """
    if not points:
        raise ValueError("points is empty: there is no trial to plot")
    if chosen is not None and not 0 <= chosen < len(points):
        raise ValueError(f"chosen={chosen} is not an index of the {len(points)} points")
    figure = Figure(figsize=figsize, dpi=dpi, layout="constrained")
    axes = figure.add_subplot()
    x, y = np.asarray(points, dtype=np.float64).T
    axes.scatter(x, y, s=25, alpha=0.8, label="trial")
    if chosen is not None:
        axes.scatter(
            x[chosen], y[chosen], s=160, facecolors="none", edgecolors="red", label="selected"
        )
    axes.axhline(1 / 3, color="grey", linestyle="--", linewidth=1, label="chance")
    axes.set_xlabel(xlabel)
    axes.set_ylabel("test balanced accuracy")
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend()
    return _save(figure, path, dpi)
