"""The Markdown report of a finished search (or ablation run), side by side with the paper.

``python -m mammo_ray.report --storage DIR [--out DIR/report.md]`` reads what the search left
in ``DIR`` (``search.json``; optionally ``best/metrics.json``, ``best/confusion_matrix.png``,
``explain/lime.json`` and its PNGs, ``audit.json``, ``quality.csv``) and writes ``report.md``
with its figures in ``<stem>_figures/`` beside it: the analogues of the paper's Table 3
(precision, recall, F1 and accuracy per backbone), Table 4 (the segmentation x augmentation
ablation), Figure 6 (accuracy per epoch), Figure 7 with the per-class layout of Table 2
(confusion matrix of the best model) and Figure 8 (LIME), plus the leakage audit and the
enhancement-quality table when they exist. A missing part is reported as "not run".

Which split produced each number is part of every table: selection (the per-backbone rows, the
ablation cells, the accuracy curves) uses the *validation* split only; the best model's
*test* split is evaluated once, and only its rows say "test". The paper reports test numbers
of a random image-level 80:20 split throughout.

:func:`build_report` turns loaded data into Markdown and touches no file; :func:`write_report`
does the I/O (load, draw or copy the figures, write atomically); :func:`main` is the command.

Reference: R. Vaishya and P. K. Shukla, "Deep-CNN for Disease Classification Using Enhanced
Mammographic Images", 2023 (:data:`PAPER_SOURCE`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import PurePosixPath
from typing import Any

import pandas as pd

from mammo_ray.report.cells import (
    DASH,
    NOT_RUN,
    as_number,
    backbone_name,
    best_by_backbone,
    best_trial_record,
    best_value,
    figure_link,
    interval_text,
    markdown_table,
    metric_text,
    paper_text,
    percent,
    scored_trials,
    table_backbones,
    trial_failed,
    trial_params,
    validation_accuracy_series,
)
from mammo_ray.report.paper import (
    _TABLE2_ROWS,
    PAPER_FIGURE7,
    PAPER_FIRST_EPOCH_ACCURACY,
    PAPER_SOURCE,
    PAPER_TABLE2,
    PAPER_TABLE3,
    PAPER_TABLE4,
)

__all__ = ["FIGURE6_NAME", "CONFUSION_MATRIX_NAME", "MAX_LIME_FIGURES", "build_report"]


FIGURE6_NAME = "figure6_val_accuracy.png"


CONFUSION_MATRIX_NAME = "confusion_matrix.png"


MAX_LIME_FIGURES = 4


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
}


_ERROR_LINES = 15


def _header_section(search: Mapping[str, Any]) -> list[str]:
    trials = search["trials"]
    finished = sum(t.get("status") == "TERMINATED" for t in trials)
    failed = sum(trial_failed(t) for t in trials)
    other = len(trials) - finished - failed
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
        f"- Selection metric: `{search['metric']}` ({search.get('mode', 'max')}), on the "
        "validation split",
        f"- Trials: {len(trials)} ({finished} finished, {failed} failed"
        + (f", {other} unfinished)" if other else ")"),
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


def _macro(best_metrics: Mapping[str, Any], key: str) -> float | None:
    """Unweighted mean over all labels of a per-class measure (as ``val_macro_*``)."""
    values = [as_number(m.get(key)) for m in best_metrics["per_class"].values()]
    return None if not values or None in values else sum(values) / len(values)


def _headline_section(
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
    lines += [
        f"Best trial `{trial['trial_id']}`: validation `{metric}` = "
        f"{metric_text(metric, best.get(metric))} at epoch {best.get('epoch', DASH)}.",
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
    split = _SPLIT_TEXT.get(str(search.get("split")), "split of unknown protocol")
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
        f"The project's numbers come from the test part of its {split}, evaluated once on the "
        f"checkpoint that the validation split selected; the 95% CI is a "
        f"{ci.get('method', 'bootstrap')} over {ci.get('n_groups', DASH)} groups. The "
        "paper's 98.91 % is the test accuracy of a random image-level 80:20 split of the 322 "
        "films, whose 92 test images (Figure 7) suggest that augmented copies reached the test "
        "set.",
        "",
    ]
    return lines


def _table3_section(search: Mapping[str, Any], best_metrics: Mapping[str, Any] | None) -> list[str]:
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


def _table4_section(search: Mapping[str, Any]) -> list[str]:
    placed = [(t, _ablation_cell(t)) for t in scored_trials(search)]
    lines = [
        "## Table 4 analogue: segmentation x augmentation",
        "",
        "NSNA, NSWA, WSNA, WSWA = no/with segmentation x no/with augmentation (`augment.mode` "
        "other than `none`). Project cells: the best VALIDATION accuracy (%) among the "
        "finished trials of the cell, each at its epoch selected by "
        f"`{search['metric']}`; {DASH} where no trial ran. Paper cells: test accuracy (%).",
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


def _figure6_section(search: Mapping[str, Any], figures_dir: str | PurePosixPath) -> list[str]:
    lines = ["## Figure 6 analogue: validation accuracy per epoch", ""]
    series = validation_accuracy_series(search)
    if not series:
        return [*lines, f"{NOT_RUN}: no finished trial has a per-epoch `val_accuracy`.", ""]
    rows = []
    best = best_by_backbone(search)
    for backbone in table_backbones(search):
        points = series.get(backbone_name(backbone), [])
        paper = PAPER_FIRST_EPOCH_ACCURACY.get(backbone)
        if points:
            top = max(points, key=lambda p: p[1])
            first = f"{points[0][1]:.2f}"
            rows.append(
                [
                    backbone_name(backbone),
                    best[backbone]["trial_id"],
                    first,
                    paper_text(paper),
                    len(points),
                    f"{top[1]:.2f} (epoch {top[0]})",
                ]
            )
        else:
            rows.append([backbone_name(backbone), NOT_RUN, DASH, paper_text(paper), DASH, DASH])
    return [
        *lines,
        f"![Validation accuracy per epoch, best trial of each backbone]"
        f"({figure_link(figures_dir, FIGURE6_NAME)})",
        "",
        "One line per backbone: its best trial's VALIDATION accuracy after each epoch. The "
        "paper's Figure 6 plots TEST accuracy per epoch; it gives only the first-epoch values "
        "and says that every architecture peaks within 15 epochs.",
        "",
        *markdown_table(
            [
                "Backbone (paper row)",
                "Trial",
                "Epoch 1 (%)",
                "Paper epoch 1 (%)",
                "Epochs",
                "Highest (%)",
            ],
            rows,
        ),
        "",
    ]


def _confusion_rows(best_metrics: Mapping[str, Any]) -> list[list[object]]:
    labels = best_metrics["labels"]
    return [
        [label, *counts]
        for label, counts in zip(labels, best_metrics["confusion_matrix"], strict=True)
    ]


def _table2_value(value: object) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    number = as_number(value)
    return DASH if number is None else f"{number:.3f}"


def _figure7_section(
    best_metrics: Mapping[str, Any] | None, figures_dir: str | PurePosixPath
) -> list[str]:
    lines = ["## Figure 7 analogue: confusion matrix of the best model (TEST split)", ""]
    paper = (
        f"Paper: {PAPER_FIGURE7['test_images']} test images, "
        f"{PAPER_FIGURE7['normal_misclassified']} of the {PAPER_FIGURE7['normal_shown']} normal "
        f"films misclassified; {PAPER_FIGURE7['test_percent']} % of "
        f"{PAPER_FIGURE7['films']} films is about "
        f"{PAPER_FIGURE7['films'] * PAPER_FIGURE7['test_percent'] // 100}, which suggests that "
        "augmented copies reached its test set."
    )
    if best_metrics is None:
        return [*lines, f"Test evaluation {NOT_RUN}.", "", paper, ""]
    labels = best_metrics["labels"]
    n = best_metrics["n"]
    errors = n - sum(row[k] for k, row in enumerate(best_metrics["confusion_matrix"]))
    header = ["Measure"]
    for label in labels:
        header += [label, f"Paper {label}"]
    rows = []
    for title, key in _TABLE2_ROWS:
        row = [title]
        for label in labels:
            row.append(_table2_value(best_metrics["per_class"].get(label, {}).get(key)))
            row.append(_table2_value(PAPER_TABLE2.get(label, {}).get(key)))
        rows.append(row)
    return [
        *lines,
        f"![Confusion matrix of the best model on the test split]"
        f"({figure_link(figures_dir, CONFUSION_MATRIX_NAME)})",
        "",
        f"This project: {n} test images, {errors} misclassified. {paper}",
        "",
        *markdown_table(["True \\ predicted", *labels], _confusion_rows(best_metrics)),
        "",
        "Per class, one-vs-rest, in the layout of the paper's Table 2 (DSC = 2TP / (2TP + FP "
        "+ FN), which equals F1). The paper's Table 2 describes its 'segmentation block' on all "
        "322 films, not Figure 7, and its DSC row does not follow from its own formula.",
        "",
        *markdown_table(header, rows),
        "",
    ]


def _proba_of(image: Mapping[str, Any]) -> str:
    proba, pred = image.get("proba"), image.get("pred")
    if isinstance(proba, Mapping):
        proba = proba.get(pred)
    elif isinstance(proba, Sequence) and not isinstance(proba, str):
        values = [as_number(p) for p in proba]
        proba = max((v for v in values if v is not None), default=None)
    number = as_number(proba)
    return DASH if number is None else f"{number:.3f}"


def _figure8_section(lime: Mapping[str, Any] | None, figures_dir: str | PurePosixPath) -> list[str]:
    lines = ["## Figure 8 analogue: LIME explanations", ""]
    if lime is None:
        return [*lines, f"LIME {NOT_RUN}.", ""]
    images = lime["images"]
    mean = as_number(lime.get("mean_positive_weight_in_lesion"))
    lines += [
        f"{len(images)} explained test image(s), {lime.get('num_samples', DASH)} LIME samples "
        f"each; mean positive weight in the lesion: {DASH if mean is None else f'{mean:.3f}'}. "
        "The paper shows one film and says, without a number, that only the superpixels of "
        "the mass region are seen.",
        "",
    ]
    shown = 0
    for image in images:
        png = image.get("png")
        if png and shown < MAX_LIME_FIGURES:
            name = PurePosixPath(str(png)).name
            lines += [
                f"![LIME {image.get('image_id')}: true {image.get('true')}, predicted "
                f"{image.get('pred')}]({figure_link(figures_dir, f'lime/{name}')})",
                "",
            ]
            shown += 1
    rows = [
        [
            image.get("image_id", DASH),
            image.get("true", DASH),
            image.get("pred", DASH),
            _proba_of(image),
            _table2_value(image.get("positive_weight_in_lesion")),
            "shown" if image.get("png") else "PNG missing",
        ]
        for image in images
    ]
    header = ["Image", "True", "Predicted", "p(predicted)", "Positive weight in lesion", "Figure"]
    return [*lines, *markdown_table(header, rows), ""]


def _audit_section(audit: Sequence[Mapping[str, Any]] | None) -> list[str]:
    lines = ["## Leakage audit (TEST split of each arm)", ""]
    if audit is None:
        return [*lines, f"Leakage audit {NOT_RUN}.", ""]
    rows = []
    for arm in audit:
        test = arm.get("test") if isinstance(arm.get("test"), Mapping) else {}
        ci = test.get("ci95") if isinstance(test.get("ci95"), Mapping) else {}
        leakage = arm.get("leakage") if isinstance(arm.get("leakage"), Mapping) else {}
        other = "; ".join(f"{k}={v}" for k, v in leakage.items() if k != "patients_train_test")
        rows.append(
            [
                arm.get("arm", DASH),
                arm.get("split", DASH),
                "yes" if arm.get("leaky") else "no",
                test.get("n", DASH),
                f"{percent(test.get('accuracy'))} [{interval_text(ci.get('accuracy'))}]",
                f"{percent(test.get('balanced_accuracy'))} "
                f"[{interval_text(ci.get('balanced_accuracy'))}]",
                percent(test.get("macro_f1")),
                leakage.get("patients_train_test", DASH),
                other or DASH,
            ]
        )
    header = [
        "Arm",
        "Split",
        "Leaky",
        "Test images",
        "Accuracy % [95% CI]",
        "Balanced accuracy % [95% CI]",
        "Macro F1 %",
        "Patients in train and test",
        "Other leakage",
    ]
    return [
        *lines,
        "The same configuration trained and tested under each split protocol; a leaky arm "
        "shares patients between train and test.",
        "",
        *markdown_table(header, rows),
        "",
    ]


def _mean_sd(row: Mapping[str, Any], metric: str) -> str:
    mean, sd = as_number(row.get(f"{metric}_mean")), as_number(row.get(f"{metric}_sd"))
    if mean is None:
        return "inf (identity)" if row.get(f"{metric}_mean") == math.inf else DASH
    return f"{mean:.3f}" if sd is None else f"{mean:.3f} ± {sd:.3f}"


def _quality_section(quality: pd.DataFrame | None) -> list[str]:
    lines = ["## Enhancement quality and segmentation Dice", ""]
    if quality is None:
        return [*lines, f"Quality table {NOT_RUN}.", ""]
    records = quality.to_dict("records")
    enhancement = [r for r in records if r.get("table") == "enhancement"]
    dice = [r for r in records if r.get("table") == "dice"]
    rows = [
        [r["name"], _mean_sd(r, "psnr"), _mean_sd(r, "ssim"), _mean_sd(r, "eme"), r.get("n")]
        for r in enhancement
    ]
    lines += [
        "Against the original film, mean ± sd over images (the paper's Figure 4 plots PSNR only):",
        "",
        *markdown_table(["Method", "PSNR (dB)", "SSIM", "EME", "Images"], rows),
        "",
    ]
    rows = [
        [
            r["name"],
            _mean_sd(r, "dice"),
            r.get("n"),
            _table2_value(PAPER_TABLE2.get(str(r["name"]), {}).get("dsc")),
        ]
        for r in dice
    ]
    return [
        *lines,
        "Dice of the candidate region against the MIAS ground-truth circles, next to the "
        "paper's DSC (Table 2). A circle encloses its lesion, so Dice against MIAS circles is "
        "capped well below 1 even for a perfect lesion mask.",
        "",
        *markdown_table(["Class", "Dice", "Images", "Paper DSC"], rows),
        "",
    ]


def _failed_section(search: Mapping[str, Any]) -> list[str]:
    lines = ["## Failed trials", ""]
    failed = [t for t in search["trials"] if trial_failed(t)]
    if not failed:
        return [*lines, "None.", ""]
    for trial in failed:
        error = str(trial.get("error") or "no error recorded").strip().splitlines()
        backbone = trial_params(trial).get("model.backbone", DASH)
        lines += [f"- `{trial['trial_id']}` ({backbone}), last lines of its error:", ""]
        lines += ["  ```text", *(f"  {line}" for line in error[-_ERROR_LINES:]), "  ```", ""]
    return lines


def build_report(
    search: Mapping[str, Any],
    best_metrics: Mapping[str, Any] | None,
    lime: Mapping[str, Any] | None,
    audit: Sequence[Mapping[str, Any]] | None,
    quality: pd.DataFrame | None,
    figures_dir: str | PurePosixPath,
) -> str:
    """The Markdown text of the report; reads and writes nothing.

    Figures are linked as ``figures_dir/<name>`` (URL-quoted), relative to the report:
    :data:`FIGURE6_NAME` when :func:`validation_accuracy_series` is not empty,
    :data:`CONFUSION_MATRIX_NAME` when ``best_metrics`` is given, and ``lime/<file name of
    "png">`` for the first :data:`MAX_LIME_FIGURES` LIME images whose ``png`` is set (a
    ``None`` ``png`` is reported as missing). :func:`write_report` puts the files there.

    Parameters
    ----------
    search : content of ``search.json`` (``name``, ``metric``, ``trials`` required).
    best_metrics : ``best/metrics.json`` (:func:`mammo_ray.learn.metrics.classification_metrics`).
    lime : ``explain/lime.json``. audit : ``audit.json`` rows. quality : ``quality.csv``.
    figures_dir : folder of the figures, relative to the report.

    Returns
    -------
    str : the report, ending with a newline. ``None`` parts are reported as "not run".
    """
    lines = [
        *_header_section(search),
        *_headline_section(search, best_metrics),
        *_table3_section(search, best_metrics),
        *_table4_section(search),
        *_figure6_section(search, figures_dir),
        *_figure7_section(best_metrics, figures_dir),
        *_figure8_section(lime, figures_dir),
        *_audit_section(audit),
        *_quality_section(quality),
        *_failed_section(search),
        f"Paper: {PAPER_SOURCE}.",
    ]
    return "\n".join(lines) + "\n"
