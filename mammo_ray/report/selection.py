"""The report's selection section: the top trials as the search ranked them (cross-validated:
out of fold with a 95% CI, and mean ± sd across folds), and the held-out test results of the
best trial and of the best ResNet-18 trial (the paper's pick) side by side."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import PurePosixPath
from typing import Any

import numpy as np
from scipy.stats import spearmanr

from mammo_ray.report.cells import (
    DASH,
    NOT_RUN,
    as_number,
    best_value,
    figure_link,
    interval_text,
    markdown_table,
    metric_text,
    percent,
    ran_every_fold,
    rank_key,
    scored_trials,
    trial_params,
)

__all__ = ["TOP_TRIALS", "SELECTION_FIGURE", "selection_points", "selection_section"]

TOP_TRIALS = 10
"""Rows of the top-trials table."""

SELECTION_FIGURE = "selection_vs_test.png"
"""The scatter plot of the selection metric against the test balanced accuracy."""


def selection_points(
    search: Mapping[str, Any],
) -> tuple[list[tuple[float, float]], int | None]:
    """``(selection metric, test balanced accuracy)`` of every scored trial that has both (a
    cross-validated one only if it ran every fold), and the index of the best trial among them
    (None if it has no test figure)."""
    points, chosen = [], None
    for trial in filter(ran_every_fold, scored_trials(search)):
        test = trial.get("test") if isinstance(trial.get("test"), Mapping) else {}
        value = as_number(test.get("balanced_accuracy"))
        if value is None:
            continue
        if trial["trial_id"] == search.get("best_trial"):
            chosen = len(points)
        points.append((best_value(trial, search["metric"]) or 0.0, value))
    return points, chosen


def _agreement(points: list[tuple[float, float]], mode: str) -> str:
    """Spearman's rank correlation of the selection ranking (the metric, negated when lower
    is better) with the test balanced accuracy, as a sentence."""
    x, y = (np.array(v) for v in zip(*points, strict=True))
    if len(points) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return f"Too few distinct trials ({len(points)}) for a rank correlation."
    rho = float(spearmanr(-x if mode == "min" else x, y).statistic)
    return (
        f"Spearman's rank correlation between the search's ranking and the test balanced "
        f"accuracy over these {len(points)} trials: {rho:+.2f} (1: the search ranked the "
        "trials as new patients do; 0: no relation)."
    )


def _params_text(trial: Mapping[str, Any]) -> str:
    return ", ".join(
        f"{k}={v:.2g}" if isinstance(v, float) else f"{k}={v}"
        for k, v in trial_params(trial).items()
    )


def _mean_sd(trial: Mapping[str, Any], measure: str) -> str:
    """Mean ± sd across the trial's folds; the mean alone after one fold."""
    mean, sd = best_value(trial, f"cv_mean_{measure}"), best_value(trial, f"cv_sd_{measure}")
    if mean is None or sd is None:
        return DASH
    return (
        f"{100 * mean:.2f}"
        if (best_value(trial, "fold") or 0) < 2
        else f"{100 * mean:.2f} ± {100 * sd:.2f}"
    )


def _ranked(search: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Scored trials best first (:func:`~mammo_ray.report.cells.rank_key`)."""
    return sorted(scored_trials(search), key=lambda t: rank_key(search, t), reverse=True)


def _test_cells(trial: Mapping[str, Any], metrics: Mapping[str, Any] | None) -> list[str]:
    """The trial's test balanced accuracy and accuracy; with a CI for an evaluated one."""
    if metrics is None:
        test = trial.get("test") if isinstance(trial.get("test"), Mapping) else {}
        return [percent(test.get("balanced_accuracy")), percent(test.get("accuracy"))]
    ci = metrics.get("ci95") if isinstance(metrics.get("ci95"), Mapping) else {}
    return [
        f"{percent(metrics.get('balanced_accuracy'))} "
        f"({interval_text(ci.get('balanced_accuracy'))})",
        percent(as_number(metrics.get("accuracy"))),
    ]


def selection_section(
    search: Mapping[str, Any],
    best_metrics: Mapping[str, Any] | None,
    resnet18_metrics: Mapping[str, Any] | None,
    figures_dir: str | PurePosixPath,
) -> list[str]:
    """The top trials by the search metric, the test results of the chosen ones (with CIs)
    and of the others, and :data:`SELECTION_FIGURE` (linked when two trials have a test
    figure: :func:`~mammo_ray.report.document.write_report` draws it)."""
    cv = search.get("cv")
    metric = search["metric"]
    tested = {search.get("best_trial"): best_metrics}
    if search.get("best_resnet18_trial"):
        tested[search["best_resnet18_trial"]] = resnet18_metrics
    lines = ["## Selection: the top trials", ""]
    if cv:
        lines += [
            f"Every trial cross-validated its configuration over {cv['folds']} patient folds "
            + (f"({cv['repeats']} repeats) " if cv.get("repeats", 1) > 1 else "")
            + "one fold after another; ASHA compared trials after each fold and stopped poor "
            f"ones early (fold racing). `{metric}` is out of fold: every film of the folds a "
            "trial ran predicted once by the model that did not train on its patient. Trials "
            "that ran every fold rank first. A trial's TEST figures come from its fold ensemble "
            "(mean of the fold models' probabilities) on the outer test part.",
            "",
        ]
        header = ["Trial", "Params", "Folds", f"`{metric}`, 95% CI", "Fold bacc (%) mean ± sd"]
    else:
        header = ["Trial", "Params", "Epochs", f"`{metric}` (validation)"]
    header += ["TEST balanced accuracy (%), 95% CI", "TEST accuracy (%)"]
    rows = []
    for trial in _ranked(search)[:TOP_TRIALS]:
        row = [f"`{trial['trial_id']}`", _params_text(trial) or DASH]
        value = best_value(trial, metric)
        if cv:
            ci = [best_value(trial, f"{metric}_ci_low"), best_value(trial, f"{metric}_ci_high")]
            row += [
                f"{int(best_value(trial, 'fold') or 0)}/{cv['folds'] * cv.get('repeats', 1)}",
                f"{metric_text(metric, value)} ({interval_text(ci)})",
                _mean_sd(trial, "balanced_accuracy"),
            ]
        else:
            row += [len(trial.get("history") or []), metric_text(metric, value)]
        rows.append(row + _test_cells(trial, tested.get(trial["trial_id"])))
    if not rows:
        return [*lines, f"{NOT_RUN}: no trial reported `{metric}`.", ""]
    lines += [*markdown_table(header, rows), ""]
    lines += [
        "TEST figures of every trial are computed after the best trial was chosen and select "
        "nothing; the best trial's (and the best ResNet-18's) come with a patient-bootstrap "
        "95% CI.",
        "",
    ]
    points, _ = selection_points(search)
    if len(points) >= 2:
        lines += [
            f"![Selection metric against test balanced accuracy, one dot per trial]"
            f"({figure_link(figures_dir, SELECTION_FIGURE)})",
            "",
            _agreement(points, str(search.get("mode", "max"))),
            "",
        ]
    if search.get("best_resnet18_trial"):
        lines += [
            f"The best trial is not a ResNet-18; the best ResNet-18 trial "
            f"`{search['best_resnet18_trial']}` (the paper's pick) is evaluated on the same "
            "test part beside it (`best_resnet18/`).",
            "",
        ]
    return lines
