"""The report's comparison of input modes: the best trial of each ``input.mode`` (the paper's
whole film, patches, patches against the other breast) and the fixed baselines
(:mod:`mammo_ray.search.baselines`), side by side on the same patient folds."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mammo_ray.report.cells import (
    DASH,
    as_number,
    best_of,
    best_value,
    interval_text,
    markdown_table,
    percent,
    scored_trials,
    trial_params,
)

__all__ = ["MODES", "modes_section"]

MODES = {
    "whole": "whole film (the paper's)",
    "patch": "patches, score maps",
    "patch+bilateral": "patches, against the other breast",
}
"""Row names of the searched input modes, in the table's order."""

_BACC = "val_balanced_accuracy"


def _auc_text(value: object) -> str:
    number = as_number(value)
    return DASH if number is None else f"{number:.3f}"


def _trial_row(search: Mapping[str, Any], mode: str, trial: Mapping[str, Any]) -> list[str]:
    cv = search["cv"]
    ci = [best_value(trial, f"{_BACC}_ci_low"), best_value(trial, f"{_BACC}_ci_high")]
    test = trial.get("test") if isinstance(trial.get("test"), Mapping) else {}
    return [
        MODES.get(mode, mode),
        f"`{trial['trial_id']}`",
        f"{int(best_value(trial, 'fold') or 0)}/{cv['folds'] * cv.get('repeats', 1)}",
        f"{percent(best_value(trial, _BACC))} ({interval_text(ci)})",
        _auc_text(best_value(trial, "val_auc_normal_vs_abnormal")),
        percent(test.get("balanced_accuracy")),
    ]


def _baseline_row(name: str, baseline: Mapping[str, Any]) -> list[str]:
    oof, test = baseline["out_of_fold"], baseline.get("test") or {}
    ci = (oof.get("ci95") or {}).get("balanced_accuracy")
    return [
        f"{name} (fixed baseline, `{baseline['dir']}/`)",
        DASH,
        f"{baseline['folds']}/{baseline['folds']}",
        f"{percent(oof.get('balanced_accuracy'))} ({interval_text(ci)})",
        _auc_text(oof.get("auc_normal_vs_abnormal")),
        percent(test.get("balanced_accuracy")),
    ]


def modes_section(search: Mapping[str, Any]) -> list[str]:
    """The best trial of each input mode the search tried and each fixed baseline, with their
    out-of-fold balanced accuracy (95% CI), normal-vs-abnormal AUC and outer TEST balanced
    accuracy; nothing for a search of whole-film models only, without baselines. A trial
    whose params lack ``input.mode`` has the search's fixed ``input_mode``."""
    baselines = search.get("baselines") or {}
    scored = scored_trials(search)
    by_mode: dict[str, list[Mapping[str, Any]]] = {}
    fixed_mode = str(search.get("input_mode", "whole"))
    for trial in scored:
        mode = str(trial_params(trial).get("input.mode", fixed_mode))
        by_mode.setdefault(mode, []).append(trial)
    if not search.get("cv") or (set(by_mode) <= {"whole"} and not baselines):
        return []
    order = [m for m in MODES if m in by_mode] + sorted(set(by_mode) - set(MODES))
    rows = [_trial_row(search, m, best_of(search, by_mode[m])) for m in order]
    rows += [_baseline_row(name, b) for name, b in baselines.items()]
    header = [
        "Model",
        "Trial",
        "Folds",
        "OOF balanced accuracy (%), 95% CI",
        "OOF AUC normal vs abnormal",
        "TEST balanced accuracy (%)",
    ]
    return [
        "## Input modes and baselines",
        "",
        "The best trial of each input mode, as the search ranked them (out of fold over the "
        "folds it ran; a mode whose trials ASHA stopped early has fewer), and the fixed "
        "baselines, cross-validated on the same patient folds after the trials and never "
        "selected. Chance: balanced accuracy 33.33 %, AUC 0.5. TEST: the outer test part, "
        "once, after selection.",
        "",
        *markdown_table(header, rows),
        "",
    ]
