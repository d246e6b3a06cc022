"""``report.md`` on disk: load the inputs, draw or copy the figures, write atomically.

python -m mammo_ray.report --storage DIR [--out DIR/report.md]
"""

from __future__ import annotations

import argparse
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mammo_ray.cli import check_outputs
from mammo_ray.files import write_text_atomic
from mammo_ray.plots import plot_confusion_matrix, plot_metric_by_epoch, plot_selection_vs_test
from mammo_ray.report.cells import (
    validation_accuracy_series,
)
from mammo_ray.report.figures import CONFUSION_MATRIX_NAME, FIGURE6_NAME, MAX_LIME_FIGURES
from mammo_ray.report.inputs import (
    load_inputs,
)
from mammo_ray.report.sections import build_report
from mammo_ray.report.selection import SELECTION_FIGURE, selection_points

__all__ = ["write_report"]


def _lime_source(storage: Path, png: str) -> Path | None:
    path = Path(png)
    candidates = [path] if path.is_absolute() else [storage / "explain" / path, storage / path]
    return next((c for c in candidates if c.is_file()), None)


def _copy_lime(lime: Mapping[str, Any], storage: Path, target: Path) -> dict[str, Any]:
    """Copy the LIME PNGs that are shown; set ``png`` to ``None`` where the file is missing."""
    images = []
    shown = 0
    for image in lime["images"]:
        png = image.get("png")
        source = _lime_source(storage, str(png)) if png else None
        if source is not None and shown < MAX_LIME_FIGURES:
            target.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target / Path(str(png)).name)
            shown += 1
        images.append({**image, "png": png if source is not None else None})
    return {**lime, "images": images}


def write_report(storage: str | Path, out: str | Path | None = None) -> Path:
    """Write the report of the search in ``storage`` to ``out`` (default ``storage/report.md``).

    Figures go to ``<out stem>_figures/`` beside ``out``: Figure 6 drawn with
    :func:`mammo_ray.plots.plot_metric_by_epoch`, ``best/confusion_matrix.png`` copied (drawn
    from ``best/metrics.json`` when absent), up to :data:`MAX_LIME_FIGURES` LIME PNGs copied.
    The Markdown is written to a temporary file and renamed over ``out``.

    Returns
    -------
    Path : ``out``.

    Raises
    ------
    ConfigError : as :func:`load_inputs`.
    """
    storage = Path(storage)
    inputs = load_inputs(storage)
    out = Path(out) if out is not None else storage / "report.md"
    figures = f"{out.stem}_figures"
    figures_dir = out.parent / figures
    series = validation_accuracy_series(inputs.search)
    if series:
        plot_metric_by_epoch(
            series,
            figures_dir / FIGURE6_NAME,
            ylabel="validation accuracy (%)",
            title="Validation accuracy per epoch (best trial per backbone)",
        )
    points, chosen = selection_points(inputs.search)
    if len(points) >= 2:
        plot_selection_vs_test(
            points,
            figures_dir / SELECTION_FIGURE,
            xlabel=f"selection: {inputs.search['metric']}",
            title="Selection metric vs held-out test, per trial",
            chosen=chosen,
        )
    if inputs.best_metrics is not None:
        source = storage / "best" / CONFUSION_MATRIX_NAME
        figures_dir.mkdir(parents=True, exist_ok=True)
        if source.is_file():
            shutil.copyfile(source, figures_dir / CONFUSION_MATRIX_NAME)
        else:
            plot_confusion_matrix(
                inputs.best_metrics["confusion_matrix"],
                inputs.best_metrics["labels"],
                figures_dir / CONFUSION_MATRIX_NAME,
                title="Best model, test split",
            )
    lime = inputs.lime
    if lime is not None:
        lime = _copy_lime(lime, storage, figures_dir / "lime")
    text = build_report(
        inputs.search,
        inputs.best_metrics,
        lime,
        inputs.audit,
        inputs.quality,
        figures,
        resnet18_metrics=inputs.resnet18_metrics,
        audit_folds=inputs.audit_folds,
    )
    write_text_atomic(out, text)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m mammo_ray.report --storage DIR [--out FILE]``."""
    parser = argparse.ArgumentParser(
        prog="python -m mammo_ray.report",
        description="Write the Markdown report (with PNG figures beside it) of a finished "
        "search or ablation run, side by side with the paper's tables and figures.",
    )
    parser.add_argument("--storage", required=True, help="the search directory (search.json)")
    parser.add_argument("--out", help="report file (default: STORAGE/report.md)")
    args = parser.parse_args(argv)
    check_outputs(args, dirs=(), files=("out",))
    path = write_report(args.storage, args.out)
    print(f"wrote {path}")
    return 0
