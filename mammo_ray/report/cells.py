"""Markdown cells and tables of the report, and the trial look-ups its sections share."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import quote

from mammo_ray.config import flatten_dotted
from mammo_ray.report.paper import (
    PAPER_BACKBONES,
)

__all__ = [
    "validation_accuracy_series",
    "NOT_RUN",
    "DASH",
    "markdown_table",
    "as_number",
    "percent",
    "paper_text",
    "interval_text",
    "metric_text",
    "figure_link",
    "trial_params",
    "best_value",
    "trial_failed",
    "ran_every_fold",
    "scored_trials",
    "rank_key",
    "best_of",
    "table_backbones",
    "backbone_name",
    "best_by_backbone",
    "best_trial_record",
]


NOT_RUN = "not run"


DASH = "—"


def _cell(value: object) -> str:
    return str(value).replace("\n", " ").replace("|", "\\|")


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    lines = ["| " + " | ".join(_cell(h) for h in header) + " |"]
    lines.append("|" + "|".join("---" for _ in header) + "|")
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return lines


def as_number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def percent(value: object) -> str:
    number = as_number(value)
    return DASH if number is None else f"{100.0 * number:.2f}"


def paper_text(value: float | None) -> str:
    return DASH if value is None else f"{value:g}"


def interval_text(bounds: object) -> str:
    if not isinstance(bounds, Sequence) or len(bounds) != 2:
        return DASH
    lo, hi = (as_number(b) for b in bounds)
    return DASH if lo is None or hi is None else f"{100 * lo:.2f}–{100 * hi:.2f}"


def metric_text(metric: str, value: object) -> str:
    number = as_number(value)
    if number is None or "loss" in metric:
        return DASH if number is None else f"{number:.4f}"
    return f"{100 * number:.2f} %"


def figure_link(figures_dir: str | PurePosixPath, name: str) -> str:
    return quote(str(PurePosixPath(figures_dir) / name))


def trial_params(trial: Mapping[str, Any]) -> dict[str, Any]:
    params = trial.get("params")
    return flatten_dotted(params) if isinstance(params, Mapping) else {}


def best_value(trial: Mapping[str, Any], key: str) -> float | None:
    best = trial.get("best")
    return as_number(best.get(key)) if isinstance(best, Mapping) else None


def trial_failed(trial: Mapping[str, Any]) -> bool:
    return trial.get("status") == "ERROR"


def ran_every_fold(trial: Mapping[str, Any]) -> bool:
    """False only for a cross-validated trial stopped (by ASHA, or the budget) before its last
    fold: its score covers fewer films than the others'."""
    fold, folds = best_value(trial, "fold"), best_value(trial, "folds")
    return fold is None or folds is None or fold >= folds


def scored_trials(search: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Trials that did not fail and hold a finite value of the search metric."""
    metric = search["metric"]
    return [
        t for t in search["trials"] if not trial_failed(t) and best_value(t, metric) is not None
    ]


def rank_key(search: Mapping[str, Any], trial: Mapping[str, Any]) -> tuple[float, float]:
    """Sort key of a scored trial, higher is better: folds run (cross-validated trials), then
    the search metric, negated for ``mode: min`` (the search's own ranking)."""
    sign = -1.0 if search.get("mode") == "min" else 1.0
    return best_value(trial, "fold") or 0.0, sign * (best_value(trial, search["metric"]) or 0.0)


def best_of(search: Mapping[str, Any], trials: Sequence[Mapping[str, Any]]) -> Mapping | None:
    return max(trials, key=lambda t: rank_key(search, t)) if trials else None


def table_backbones(search: Mapping[str, Any]) -> list[str]:
    """The paper's backbones in its row order, then any other backbone a trial used."""
    used = {trial_params(t).get("model.backbone") for t in search["trials"]} - {None}
    return list(PAPER_BACKBONES) + sorted(str(b) for b in used - set(PAPER_BACKBONES))


def backbone_name(key: str) -> str:
    paper = PAPER_BACKBONES.get(key)
    if key == "mnasnet_100":
        return f"{key} ({paper}, stand-in)"
    return f"{key} ({paper})" if paper else key


def best_by_backbone(search: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    scored = scored_trials(search)
    best: dict[str, Mapping[str, Any]] = {}
    for key in table_backbones(search):
        trial = best_of(search, [t for t in scored if trial_params(t).get("model.backbone") == key])
        if trial is not None:
            best[key] = trial
    return best


def best_trial_record(search: Mapping[str, Any]) -> Mapping[str, Any] | None:
    wanted = search.get("best_trial")
    return next((t for t in search["trials"] if t.get("trial_id") == wanted), None)


def validation_accuracy_series(search: Mapping[str, Any]) -> dict[str, list[tuple[int, float]]]:
    """Validation accuracy (%) per epoch of the best trial of each backbone (Figure 6).

    The best trial of a backbone is the one with the best value of the search metric
    (``search["metric"]``, ``search["mode"]``) at its best epoch; failed trials do not count.

    Returns
    -------
    dict : ``{"resnet18 (ResNet-18)": [(epoch, 100 * val_accuracy), ...]}``, only for backbones
        whose best trial has a history holding ``val_accuracy``; in the paper's row order.
    """
    series: dict[str, list[tuple[int, float]]] = {}
    for key, trial in best_by_backbone(search).items():
        points = []
        for index, row in enumerate(trial.get("history") or [], start=1):
            if isinstance(row, Mapping) and "fold" in row:
                continue
            value = as_number(row.get("val_accuracy")) if isinstance(row, Mapping) else None
            if value is not None:
                points.append((int(row.get("epoch", index)), 100.0 * value))
        if points:
            series[backbone_name(key)] = points
    return series
