"""The report's header and its tables beside the paper's: the headline numbers, Table 3 (per
backbone, validation) and Table 4 (the segmentation x augmentation ablation, validation).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mammo_ray.report.cells import (
    DASH,
    NOT_RUN,
    as_number,
    backbone_name,
    best_by_backbone,
    best_trial_record,
    best_value,
    interval_text,
    markdown_table,
    metric_text,
    paper_text,
    percent,
    ran_every_fold,
    scored_trials,
    table_backbones,
    trial_failed,
    trial_params,
)
from mammo_ray.report.paper import (
    PAPER_FIGURE7,
    PAPER_TABLE3,
    PAPER_TABLE4,
)

__all__ = [
    "header_section",
    "headline_section",
    "plan_check",
    "table3_section",
    "table4_section",
]

_ABLATION_CELLS = (
    ("NSNA", False, False),
    ("NSWA", False, True),
    ("WSNA", True, False),
    ("WSWA", True, True),
)


_SPLIT_TEXT = {
    "patient": "patient-level split (the two films of a patient stay on one side)",
    "paper": "image-level random split, the paper's protocol (films of one patient on both "
    "sides: leaky)",
    "cv": "patient-level k-fold cross-validation of every trial, an outer patient-level test "
    "part held out",
}


def header_section(search: Mapping[str, Any]) -> list[str]:
    trials = search["trials"]
    finished = sum(t.get("status") == "TERMINATED" for t in trials)
    failed = sum(trial_failed(t) for t in trials)
    cut = len(trials) - finished - failed
    split = search.get("split")
    lines = [f"# Search report: {search['name']}", ""]
    if search.get("leaky") is True:
        lines += [
            "> **Warning: leaky split.** This search split films, not patients: the two films "
            "of one patient can fall on both sides of train, validation and test, so its "
            "validation and test numbers overstate accuracy on new patients. It reproduces the "
            "paper's protocol; compare it with a patient-level search, never with clinical "
            "performance.",
            "",
        ]
    lines += [
        f"- Split protocol: `{split}` — {_SPLIT_TEXT.get(str(split), 'unknown protocol')}",
        f"- Selection metric: `{search['metric']}` ({search.get('mode', 'max')}), "
        + (
            "out of fold over each trial's folds" if search.get("cv") else "on the validation split"
        ),
        f"- Trials: {len(trials)} ({finished} finished, {failed} failed"
        + (f", {cut} cut by the time budget before their first result)" if cut else ")"),
        *_plan_lines(search),
        f"- Search space: `{search.get('space', DASH)}`",
        f"- Command: `{search.get('command', DASH)}`",
    ]
    mlflow = search.get("mlflow")
    if isinstance(mlflow, Mapping) and mlflow.get("uri"):
        lines += [
            f"- MLflow: `{mlflow['uri']}`, experiment `{mlflow.get('experiment', DASH)}`, "
            f"parent run `{mlflow.get('parent_run_id', DASH)}`; browse it with "
            f"`mlflow ui --backend-store-uri {mlflow['uri']}`",
        ]
    else:
        lines.append(f"- MLflow: {NOT_RUN}")
    return [*lines, ""]


def plan_check(plan: Mapping[str, Any], trials: list[dict[str, Any]]) -> str | None:
    """A search's ``plan`` (``search.json``; :mod:`mammo_ray.search.plan`) against its trials'
    measured times (``seconds`` of each trial record): the published trial (the first) and the
    mean of the others that reported; None when no trial reported."""
    timed = [t for t in trials if t.get("seconds")]
    if not timed:
        return None
    parts = []
    if plan.get("published_s") and trials[0].get("seconds"):
        parts.append(
            f"the published trial took {trials[0]['seconds'] / 60:.1f} min "
            f"(planned {plan['published_s'] / 60:.1f})"
        )
    others = [t["seconds"] for t in timed if t is not trials[0]]
    if others:
        parts.append(
            f"the other {len(others)} trials {sum(others) / len(others) / 60:.1f} min on average "
            f"(planned {plan['expected_trial_s'] / 60:.1f} under ASHA)"
        )
    return "plan against measured: " + "; ".join(parts) if parts else None


def _plan_lines(search: Mapping[str, Any]) -> list[str]:
    """The header's plan line, when the search planned to its budget."""
    plan = search.get("plan")
    if not isinstance(plan, Mapping):
        return []
    budget = plan.get("budget_s")
    line = (
        f"- Plan: up to {plan['num_samples']} trials of {plan['max_epochs']} epochs"
        + (" per fold" if search.get("cv") else "")
        + ("" if budget is None else f" in the {budget / 60:.0f}-minute budget")
        + f", from throughput measured on the machine (a trial {plan['expected_trial_s'] / 60:.1f}"
        " min on average under ASHA)"
    )
    checked = plan_check(plan, search["trials"])
    return [line + (f"; {checked}" if checked else "")]


def _macro(best_metrics: Mapping[str, Any], key: str) -> float | None:
    """Unweighted mean over all labels of a per-class measure (as ``val_macro_*``)."""
    values = [as_number(m.get(key)) for m in best_metrics["per_class"].values()]
    return None if not values or None in values else sum(values) / len(values)


def _test_note(search: Mapping[str, Any], ci: Mapping[str, Any]) -> str:
    """Where the headline's test numbers come from, and the paper's for comparison."""
    split = _SPLIT_TEXT.get(str(search.get("split")), "split of unknown protocol")
    return (
        f"The project's numbers come from the test part of its {split}, evaluated once on "
        + (
            "the fold ensemble of the trial that cross-validation selected"
            if search.get("cv")
            else "the checkpoint that the validation split selected"
        )
        + "; the 95% CI is a "
        f"{ci.get('method', 'bootstrap')} over {ci.get('n_groups', DASH)} groups. The "
        "paper's 98.91 % is the test accuracy of a random image-level 80:20 split of the 322 "
        "films, whose 92 test images (Figure 7) suggest that augmented copies reached the test "
        "set."
    )


def headline_section(
    search: Mapping[str, Any], best_metrics: Mapping[str, Any] | None
) -> list[str]:
    lines = ["## Headline", ""]
    trial = best_trial_record(search)
    if trial is None:
        return [
            *lines,
            f"Best trial: {NOT_RUN} (no trial finished with a value of the metric).",
            "",
        ]
    metric = search["metric"]
    best = trial.get("best") if isinstance(trial.get("best"), Mapping) else {}
    where = (
        f"out of fold over {best.get('fold', DASH)} folds"
        if search.get("cv")
        else f"at epoch {best.get('epoch', DASH)}"
    )
    lines += [
        f"Best trial `{trial['trial_id']}`: validation `{metric}` = "
        f"{metric_text(metric, best.get(metric))} {where}.",
        "",
        *markdown_table(["Parameter", "Value"], sorted(trial_params(trial).items())),
        "",
    ]
    if best_metrics is None:
        return [*lines, f"Test evaluation of the best model: {NOT_RUN}.", ""]
    ci = best_metrics.get("ci95") if isinstance(best_metrics.get("ci95"), Mapping) else {}
    paper = PAPER_TABLE3["resnet18"]
    rows = [
        [
            "accuracy",
            percent(best_metrics["accuracy"]),
            interval_text(ci.get("accuracy")),
            paper_text(paper["accuracy"]),
        ],
        [
            "balanced accuracy",
            percent(best_metrics.get("balanced_accuracy")),
            interval_text(ci.get("balanced_accuracy")),
            "not reported",
        ],
        ["macro F1", percent(best_metrics.get("macro_f1")), DASH, paper_text(paper["f1"])],
        [
            "macro precision",
            percent(_macro(best_metrics, "precision")),
            DASH,
            paper_text(paper["precision"]),
        ],
        [
            "macro recall",
            percent(_macro(best_metrics, "recall")),
            DASH,
            paper_text(paper["recall"]),
        ],
        [
            "macro AUC (one-vs-rest)",
            percent((best_metrics.get("auc_ovr") or {}).get("macro")),
            DASH,
            "not reported",
        ],
        ["test images", best_metrics["n"], DASH, PAPER_FIGURE7["test_images"]],
    ]
    lines += [
        *markdown_table(
            [
                "Measure (%)",
                "This project: best model, TEST split",
                "95% CI",
                "Paper, ResNet-18 (Table 3)",
            ],
            rows,
        ),
        "",
        _test_note(search, ci),
        "",
    ]
    return lines


def table3_section(search: Mapping[str, Any], best_metrics: Mapping[str, Any] | None) -> list[str]:
    best = best_by_backbone(search)
    keys = ("val_macro_precision", "val_macro_recall", "val_macro_f1", "val_accuracy")
    rows = []
    for backbone in table_backbones(search):
        trials = [t for t in search["trials"] if trial_params(t).get("model.backbone") == backbone]
        paper = PAPER_TABLE3.get(backbone, {})
        paper_cells = [paper_text(paper.get(k)) for k in ("precision", "recall", "f1", "accuracy")]
        trial = best.get(backbone)
        if trial is None:
            failed = sum(trial_failed(t) for t in trials)
            status = f"{NOT_RUN} ({failed} failed)" if failed else NOT_RUN
            rows.append([backbone_name(backbone), status, *[DASH] * 4, *paper_cells])
        else:
            values = [percent(best_value(trial, k)) for k in keys]
            rows.append([backbone_name(backbone), trial["trial_id"], *values, *paper_cells])
    if best_metrics is not None:
        chosen = trial_params(best_trial_record(search) or {}).get("model.backbone", "best model")
        test = [
            percent(_macro(best_metrics, "precision")),
            percent(_macro(best_metrics, "recall")),
            percent(best_metrics.get("macro_f1")),
            percent(best_metrics["accuracy"]),
        ]
        paper = PAPER_TABLE3.get(str(chosen), {})
        paper_cells = [paper_text(paper.get(k)) for k in ("precision", "recall", "f1", "accuracy")]
        trial_id = search.get("best_trial") or DASH
        rows.append([f"{chosen}: best model, TEST split", trial_id, *test, *paper_cells])
    header = [
        "Backbone (paper row)",
        "Trial",
        "Precision",
        "Recall",
        "F1",
        "Accuracy",
        "Paper precision",
        "Paper recall",
        "Paper F1",
        "Paper accuracy",
    ]
    return [
        "## Table 3 analogue: backbones",
        "",
        "Per backbone, the trial with the best validation "
        f"`{search['metric']}`; its macro precision, recall, F1 and accuracy (%) at that epoch "
        "are VALIDATION numbers (selection never touches the test split). Only the last row, "
        "the best model, is measured on the TEST split. The paper's columns are test numbers "
        "(the paper's text and captions disagree on which of its Tables 3 and 4 is which; "
        "here Table 3 is the per-architecture table, Table 4 the ablation). "
        "NasNet: timm has no NASNet-Mobile; `mnasnet_100` stands in for it.",
        "",
        *markdown_table(header, rows),
        "",
    ]


def _ablation_cell(trial: Mapping[str, Any]) -> str | None:
    params = trial_params(trial)
    segmentation, mode = params.get("segmentation"), params.get("augment.mode")
    if not isinstance(segmentation, bool) or mode is None:
        return None
    augment = str(mode) != "none"
    return next(name for name, s, a in _ABLATION_CELLS if s == segmentation and a == augment)


def table4_section(search: Mapping[str, Any]) -> list[str]:
    placed = [(t, _ablation_cell(t)) for t in scored_trials(search) if ran_every_fold(t)]
    lines = [
        "## Table 4 analogue: segmentation x augmentation",
        "",
        "NSNA, NSWA, WSNA, WSWA = no/with segmentation x no/with augmentation (`augment.mode` "
        "other than `none`). Project cells: the best VALIDATION accuracy (%) among the "
        "finished trials of the cell, each at its epoch selected by "
        f"`{search['metric']}`; {DASH} where no trial ran (a cross-validated trial counts once it "
        "ran every fold). Paper cells: test accuracy (%).",
        "",
    ]
    if all(cell is None for _, cell in placed):
        lines += [
            f"Ablation {NOT_RUN}: no finished trial records both `segmentation` and "
            "`augment.mode` in its params. The paper's values:",
            "",
        ]
    header = ["Backbone (paper row)"]
    for name, _, _ in _ABLATION_CELLS:
        header += [name, f"Paper {name}"]
    rows = []
    for backbone in table_backbones(search):
        row = [backbone_name(backbone)]
        for name, _, _ in _ABLATION_CELLS:
            values = [
                best_value(t, "val_accuracy")
                for t, cell in placed
                if cell == name and trial_params(t).get("model.backbone") == backbone
            ]
            values = [v for v in values if v is not None]
            row += [percent(max(values)) if values else DASH]
            row += [paper_text(PAPER_TABLE4.get(backbone, {}).get(name))]
        rows.append(row)
    unplaced = sum(cell is None for _, cell in placed)
    lines += markdown_table(header, rows) + [""]
    if unplaced and unplaced < len(placed):
        lines += [f"{unplaced} finished trial(s) lack `segmentation` or `augment.mode`.", ""]
    return lines
