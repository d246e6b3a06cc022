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

import argparse
import json
import math
import os
import shutil
import sys
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote

import pandas as pd

from mammo_ray.cli import run_cli
from mammo_ray.config import flatten_dotted
from mammo_ray.errors import ConfigError
from mammo_ray.plots import plot_confusion_matrix, plot_metric_by_epoch

__all__ = [
    "PAPER_SOURCE",
    "PAPER_BACKBONES",
    "PAPER_TABLE3",
    "PAPER_TABLE4",
    "PAPER_FIRST_EPOCH_ACCURACY",
    "PAPER_FIGURE7",
    "PAPER_TABLE2",
    "FIGURE6_NAME",
    "CONFUSION_MATRIX_NAME",
    "MAX_LIME_FIGURES",
    "ReportInputs",
    "load_inputs",
    "validation_accuracy_series",
    "build_report",
    "write_report",
    "main",
]

PAPER_SOURCE = (
    'R. Vaishya, P. K. Shukla, "Deep-CNN for Disease Classification Using Enhanced '
    'Mammographic Images", 2023 (received 18 March 2023, accepted 05 August 2023)'
)
"""Where every ``PAPER_*`` number comes from (paper/000_9925729f7fa99309.txt)."""

PAPER_BACKBONES: dict[str, str] = {
    "vgg16_bn": "VGG",
    "resnet18": "ResNet-18",
    "mnasnet_100": "NasNet",
    "mobilenetv2_100": "MobileNet-V2",
    "densenet121": "DenseNet",
}
"""Project backbone key -> the paper's row, in the paper's row order (``mammo_ray.models``).
``mnasnet_100`` stands in for NASNet-Mobile, which timm does not have."""

PAPER_TABLE3: dict[str, dict[str, float]] = {
    "vgg16_bn": {"precision": 95.6, "recall": 95.65, "f1": 95.65, "accuracy": 95.69},
    "resnet18": {"precision": 98.89, "recall": 98.89, "f1": 98.9, "accuracy": 98.91},
    "mnasnet_100": {"precision": 94.78, "recall": 94.78, "f1": 94.78, "accuracy": 94.87},
    "mobilenetv2_100": {"precision": 89.81, "recall": 89.82, "f1": 89.82, "accuracy": 89.9},
    "densenet121": {"precision": 96.28, "recall": 96.27, "f1": 96.28, "accuracy": 96.56},
}
"""The paper's table of precision / recall / F1 / accuracy (%) per architecture, on its test
split: the table printed first (the paper's text and captions disagree on which of its
Tables 3 and 4 holds it)."""

PAPER_TABLE4: dict[str, dict[str, float]] = {
    "vgg16_bn": {"NSNA": 93.13, "NSWA": 93.9, "WSNA": 94.34, "WSWA": 95.69},
    "resnet18": {"NSNA": 96.83, "NSWA": 97.78, "WSNA": 98.2, "WSWA": 98.91},
    "mnasnet_100": {"NSNA": 92.41, "NSWA": 93.0, "WSNA": 93.85, "WSWA": 94.87},
    "mobilenetv2_100": {"NSNA": 86.62, "NSWA": 87.9, "WSNA": 88.72, "WSWA": 89.9},
    "densenet121": {"NSNA": 93.89, "NSWA": 94.86, "WSNA": 95.43, "WSWA": 96.56},
}
"""The paper's ablation (test accuracy %): No/With Segmentation x No/With Augmentation."""

PAPER_FIRST_EPOCH_ACCURACY: dict[str, float] = {
    "resnet18": 46.67,
    "densenet121": 45.59,
    "vgg16_bn": 35.07,
    "mobilenetv2_100": 37.21,
    "mnasnet_100": 36.81,
}
"""Figure 6: test accuracy (%) after the first epoch; all reach their best within 15 epochs."""

PAPER_FIGURE7: dict[str, int] = {
    "test_images": 92,
    "normal_shown": 36,
    "normal_misclassified": 1,
    "films": 322,
    "test_percent": 20,
}
"""Figure 7: 92 test images, one of the 36 normal films misclassified, from an 80:20 split of
322 films (whose test part would hold about 64)."""

_TABLE2_ROWS = (
    ("TP", "tp"),
    ("TN", "tn"),
    ("FP", "fp"),
    ("FN", "fn"),
    ("Precision", "precision"),
    ("Recall", "recall"),
    ("F1", "f1"),
    ("Accuracy", "accuracy"),
    ("DSC", "dsc"),
)

PAPER_TABLE2: dict[str, dict[str, float]] = {
    label: dict(zip((key for _, key in _TABLE2_ROWS), values, strict=True))
    for label, values in (
        ("normal", (192, 117, 12, 1, 0.941, 0.995, 0.967, 0.960, 0.652)),
        ("calc", (24, 289, 1, 8, 0.960, 0.750, 0.842, 0.972, 0.457)),
        ("mass", (89, 221, 4, 8, 0.957, 0.957, 0.957, 0.963, 0.484)),
    )
}
"""Table 2 ("segmentation block", all 322 films) per class, as printed. Its DSC row does not
follow from its own formula DSC = 2TP / (2TP + FP + FN), which equals F1."""

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
_NOT_RUN = "not run"
_DASH = "—"


@dataclass(frozen=True)
class ReportInputs:
    """What :func:`load_inputs` read from a search directory; ``None`` marks a missing part."""

    search: dict[str, Any]
    best_metrics: dict[str, Any] | None
    lime: dict[str, Any] | None
    audit: list[dict[str, Any]] | None
    quality: pd.DataFrame | None


def _cell(value: object) -> str:
    return str(value).replace("\n", " ").replace("|", "\\|")


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    lines = ["| " + " | ".join(_cell(h) for h in header) + " |"]
    lines.append("|" + "|".join("---" for _ in header) + "|")
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return lines


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _pct(value: object) -> str:
    number = _number(value)
    return _DASH if number is None else f"{100.0 * number:.2f}"


def _paper(value: float | None) -> str:
    return _DASH if value is None else f"{value:g}"


def _interval(bounds: object) -> str:
    if not isinstance(bounds, Sequence) or len(bounds) != 2:
        return _DASH
    lo, hi = (_number(b) for b in bounds)
    return _DASH if lo is None or hi is None else f"{100 * lo:.2f}–{100 * hi:.2f}"


def _metric_text(metric: str, value: object) -> str:
    number = _number(value)
    if number is None or "loss" in metric:
        return _DASH if number is None else f"{number:.4f}"
    return f"{100 * number:.2f} %"


def _link(figures_dir: str | PurePosixPath, name: str) -> str:
    return quote(str(PurePosixPath(figures_dir) / name))


def _params(trial: Mapping[str, Any]) -> dict[str, Any]:
    params = trial.get("params")
    return flatten_dotted(params) if isinstance(params, Mapping) else {}


def _best_value(trial: Mapping[str, Any], key: str) -> float | None:
    best = trial.get("best")
    return _number(best.get(key)) if isinstance(best, Mapping) else None


def _failed(trial: Mapping[str, Any]) -> bool:
    return trial.get("status") == "ERROR"


def _scored(search: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Trials that did not fail and hold a finite value of the search metric."""
    metric = search["metric"]
    return [t for t in search["trials"] if not _failed(t) and _best_value(t, metric) is not None]


def _pick(search: Mapping[str, Any], trials: Sequence[Mapping[str, Any]]) -> Mapping | None:
    if not trials:
        return None
    sign = -1.0 if search.get("mode") == "min" else 1.0
    return max(trials, key=lambda t: sign * _best_value(t, search["metric"]))


def _backbones(search: Mapping[str, Any]) -> list[str]:
    """The paper's backbones in its row order, then any other backbone a trial used."""
    used = {_params(t).get("model.backbone") for t in search["trials"]} - {None}
    return list(PAPER_BACKBONES) + sorted(str(b) for b in used - set(PAPER_BACKBONES))


def _backbone_name(key: str) -> str:
    paper = PAPER_BACKBONES.get(key)
    if key == "mnasnet_100":
        return f"{key} ({paper}, stand-in)"
    return f"{key} ({paper})" if paper else key


def _best_by_backbone(search: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    scored = _scored(search)
    best: dict[str, Mapping[str, Any]] = {}
    for key in _backbones(search):
        trial = _pick(search, [t for t in scored if _params(t).get("model.backbone") == key])
        if trial is not None:
            best[key] = trial
    return best


def _find_trial(search: Mapping[str, Any]) -> Mapping[str, Any] | None:
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
    for key, trial in _best_by_backbone(search).items():
        points = []
        for index, row in enumerate(trial.get("history") or [], start=1):
            value = _number(row.get("val_accuracy")) if isinstance(row, Mapping) else None
            if value is not None:
                points.append((int(row.get("epoch", index)), 100.0 * value))
        if points:
            series[_backbone_name(key)] = points
    return series


def _header_section(search: Mapping[str, Any]) -> list[str]:
    trials = search["trials"]
    finished = sum(t.get("status") == "TERMINATED" for t in trials)
    failed = sum(_failed(t) for t in trials)
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
        f"- Search space: `{search.get('space', _DASH)}`",
        f"- Command: `{search.get('command', _DASH)}`",
    ]
    mlflow = search.get("mlflow")
    if isinstance(mlflow, Mapping) and mlflow.get("uri"):
        lines += [
            f"- MLflow: `{mlflow['uri']}`, experiment `{mlflow.get('experiment', _DASH)}`, "
            f"parent run `{mlflow.get('parent_run_id', _DASH)}`; browse it with "
            f"`mlflow ui --backend-store-uri {mlflow['uri']}`",
        ]
    else:
        lines.append(f"- MLflow: {_NOT_RUN}")
    return [*lines, ""]


def _macro(best_metrics: Mapping[str, Any], key: str) -> float | None:
    """Unweighted mean over all labels of a per-class measure (as ``val_macro_*``)."""
    values = [_number(m.get(key)) for m in best_metrics["per_class"].values()]
    return None if not values or None in values else sum(values) / len(values)


def _headline_section(
    search: Mapping[str, Any], best_metrics: Mapping[str, Any] | None
) -> list[str]:
    lines = ["## Headline", ""]
    trial = _find_trial(search)
    if trial is None:
        return [
            *lines,
            f"Best trial: {_NOT_RUN} (no trial finished with a value of the metric).",
            "",
        ]
    metric = search["metric"]
    best = trial.get("best") if isinstance(trial.get("best"), Mapping) else {}
    lines += [
        f"Best trial `{trial['trial_id']}`: validation `{metric}` = "
        f"{_metric_text(metric, best.get(metric))} at epoch {best.get('epoch', _DASH)}.",
        "",
        *_table(["Parameter", "Value"], sorted(_params(trial).items())),
        "",
    ]
    if best_metrics is None:
        return [*lines, f"Test evaluation of the best model: {_NOT_RUN}.", ""]
    ci = best_metrics.get("ci95") if isinstance(best_metrics.get("ci95"), Mapping) else {}
    paper = PAPER_TABLE3["resnet18"]
    rows = [
        [
            "accuracy",
            _pct(best_metrics["accuracy"]),
            _interval(ci.get("accuracy")),
            _paper(paper["accuracy"]),
        ],
        [
            "balanced accuracy",
            _pct(best_metrics.get("balanced_accuracy")),
            _interval(ci.get("balanced_accuracy")),
            "not reported",
        ],
        ["macro F1", _pct(best_metrics.get("macro_f1")), _DASH, _paper(paper["f1"])],
        [
            "macro precision",
            _pct(_macro(best_metrics, "precision")),
            _DASH,
            _paper(paper["precision"]),
        ],
        ["macro recall", _pct(_macro(best_metrics, "recall")), _DASH, _paper(paper["recall"])],
        [
            "macro AUC (one-vs-rest)",
            _pct((best_metrics.get("auc_ovr") or {}).get("macro")),
            _DASH,
            "not reported",
        ],
        ["test images", best_metrics["n"], _DASH, PAPER_FIGURE7["test_images"]],
    ]
    split = _SPLIT_TEXT.get(str(search.get("split")), "split of unknown protocol")
    lines += [
        *_table(
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
        f"{ci.get('method', 'bootstrap')} over {ci.get('n_groups', _DASH)} groups. The "
        "paper's 98.91 % is the test accuracy of a random image-level 80:20 split of the 322 "
        "films, whose 92 test images (Figure 7) suggest that augmented copies reached the test "
        "set.",
        "",
    ]
    return lines


def _table3_section(search: Mapping[str, Any], best_metrics: Mapping[str, Any] | None) -> list[str]:
    best = _best_by_backbone(search)
    keys = ("val_macro_precision", "val_macro_recall", "val_macro_f1", "val_accuracy")
    rows = []
    for backbone in _backbones(search):
        trials = [t for t in search["trials"] if _params(t).get("model.backbone") == backbone]
        paper = PAPER_TABLE3.get(backbone, {})
        paper_cells = [_paper(paper.get(k)) for k in ("precision", "recall", "f1", "accuracy")]
        trial = best.get(backbone)
        if trial is None:
            failed = sum(_failed(t) for t in trials)
            status = f"{_NOT_RUN} ({failed} failed)" if failed else _NOT_RUN
            rows.append([_backbone_name(backbone), status, *[_DASH] * 4, *paper_cells])
        else:
            values = [_pct(_best_value(trial, k)) for k in keys]
            rows.append([_backbone_name(backbone), trial["trial_id"], *values, *paper_cells])
    if best_metrics is not None:
        chosen = _params(_find_trial(search) or {}).get("model.backbone", "best model")
        test = [
            _pct(_macro(best_metrics, "precision")),
            _pct(_macro(best_metrics, "recall")),
            _pct(best_metrics.get("macro_f1")),
            _pct(best_metrics["accuracy"]),
        ]
        paper = PAPER_TABLE3.get(str(chosen), {})
        paper_cells = [_paper(paper.get(k)) for k in ("precision", "recall", "f1", "accuracy")]
        trial_id = search.get("best_trial") or _DASH
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
        *_table(header, rows),
        "",
    ]


def _ablation_cell(trial: Mapping[str, Any]) -> str | None:
    params = _params(trial)
    segmentation, mode = params.get("segmentation"), params.get("augment.mode")
    if not isinstance(segmentation, bool) or mode is None:
        return None
    augment = str(mode) != "none"
    return next(name for name, s, a in _ABLATION_CELLS if s == segmentation and a == augment)


def _table4_section(search: Mapping[str, Any]) -> list[str]:
    placed = [(t, _ablation_cell(t)) for t in _scored(search)]
    lines = [
        "## Table 4 analogue: segmentation x augmentation",
        "",
        "NSNA, NSWA, WSNA, WSWA = no/with segmentation x no/with augmentation (`augment.mode` "
        "other than `none`). Project cells: the best VALIDATION accuracy (%) among the "
        "finished trials of the cell, each at its epoch selected by "
        f"`{search['metric']}`; {_DASH} where no trial ran. Paper cells: test accuracy (%).",
        "",
    ]
    if all(cell is None for _, cell in placed):
        lines += [
            f"Ablation {_NOT_RUN}: no finished trial records both `segmentation` and "
            "`augment.mode` in its params. The paper's values:",
            "",
        ]
    header = ["Backbone (paper row)"]
    for name, _, _ in _ABLATION_CELLS:
        header += [name, f"Paper {name}"]
    rows = []
    for backbone in _backbones(search):
        row = [_backbone_name(backbone)]
        for name, _, _ in _ABLATION_CELLS:
            values = [
                _best_value(t, "val_accuracy")
                for t, cell in placed
                if cell == name and _params(t).get("model.backbone") == backbone
            ]
            values = [v for v in values if v is not None]
            row += [_pct(max(values)) if values else _DASH]
            row += [_paper(PAPER_TABLE4.get(backbone, {}).get(name))]
        rows.append(row)
    unplaced = sum(cell is None for _, cell in placed)
    lines += _table(header, rows) + [""]
    if unplaced and unplaced < len(placed):
        lines += [f"{unplaced} finished trial(s) lack `segmentation` or `augment.mode`.", ""]
    return lines


def _figure6_section(search: Mapping[str, Any], figures_dir: str | PurePosixPath) -> list[str]:
    lines = ["## Figure 6 analogue: validation accuracy per epoch", ""]
    series = validation_accuracy_series(search)
    if not series:
        return [*lines, f"{_NOT_RUN}: no finished trial has a per-epoch `val_accuracy`.", ""]
    rows = []
    best = _best_by_backbone(search)
    for backbone in _backbones(search):
        points = series.get(_backbone_name(backbone), [])
        paper = PAPER_FIRST_EPOCH_ACCURACY.get(backbone)
        if points:
            top = max(points, key=lambda p: p[1])
            first = f"{points[0][1]:.2f}"
            rows.append(
                [
                    _backbone_name(backbone),
                    best[backbone]["trial_id"],
                    first,
                    _paper(paper),
                    len(points),
                    f"{top[1]:.2f} (epoch {top[0]})",
                ]
            )
        else:
            rows.append([_backbone_name(backbone), _NOT_RUN, _DASH, _paper(paper), _DASH, _DASH])
    return [
        *lines,
        f"![Validation accuracy per epoch, best trial of each backbone]"
        f"({_link(figures_dir, FIGURE6_NAME)})",
        "",
        "One line per backbone: its best trial's VALIDATION accuracy after each epoch. The "
        "paper's Figure 6 plots TEST accuracy per epoch; it gives only the first-epoch values "
        "and says that every architecture peaks within 15 epochs.",
        "",
        *_table(
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
    number = _number(value)
    return _DASH if number is None else f"{number:.3f}"


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
        return [*lines, f"Test evaluation {_NOT_RUN}.", "", paper, ""]
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
        f"({_link(figures_dir, CONFUSION_MATRIX_NAME)})",
        "",
        f"This project: {n} test images, {errors} misclassified. {paper}",
        "",
        *_table(["True \\ predicted", *labels], _confusion_rows(best_metrics)),
        "",
        "Per class, one-vs-rest, in the layout of the paper's Table 2 (DSC = 2TP / (2TP + FP "
        "+ FN), which equals F1). The paper's Table 2 describes its 'segmentation block' on all "
        "322 films, not Figure 7, and its DSC row does not follow from its own formula.",
        "",
        *_table(header, rows),
        "",
    ]


def _proba_of(image: Mapping[str, Any]) -> str:
    proba, pred = image.get("proba"), image.get("pred")
    if isinstance(proba, Mapping):
        proba = proba.get(pred)
    elif isinstance(proba, Sequence) and not isinstance(proba, str):
        values = [_number(p) for p in proba]
        proba = max((v for v in values if v is not None), default=None)
    number = _number(proba)
    return _DASH if number is None else f"{number:.3f}"


def _figure8_section(lime: Mapping[str, Any] | None, figures_dir: str | PurePosixPath) -> list[str]:
    lines = ["## Figure 8 analogue: LIME explanations", ""]
    if lime is None:
        return [*lines, f"LIME {_NOT_RUN}.", ""]
    images = lime["images"]
    mean = _number(lime.get("mean_positive_weight_in_lesion"))
    lines += [
        f"{len(images)} explained test image(s), {lime.get('num_samples', _DASH)} LIME samples "
        f"each; mean positive weight in the lesion: {_DASH if mean is None else f'{mean:.3f}'}. "
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
                f"{image.get('pred')}]({_link(figures_dir, f'lime/{name}')})",
                "",
            ]
            shown += 1
    rows = [
        [
            image.get("image_id", _DASH),
            image.get("true", _DASH),
            image.get("pred", _DASH),
            _proba_of(image),
            _table2_value(image.get("positive_weight_in_lesion")),
            "shown" if image.get("png") else "PNG missing",
        ]
        for image in images
    ]
    header = ["Image", "True", "Predicted", "p(predicted)", "Positive weight in lesion", "Figure"]
    return [*lines, *_table(header, rows), ""]


def _audit_section(audit: Sequence[Mapping[str, Any]] | None) -> list[str]:
    lines = ["## Leakage audit (TEST split of each arm)", ""]
    if audit is None:
        return [*lines, f"Leakage audit {_NOT_RUN}.", ""]
    rows = []
    for arm in audit:
        test = arm.get("test") if isinstance(arm.get("test"), Mapping) else {}
        ci = test.get("ci95") if isinstance(test.get("ci95"), Mapping) else {}
        leakage = arm.get("leakage") if isinstance(arm.get("leakage"), Mapping) else {}
        other = "; ".join(f"{k}={v}" for k, v in leakage.items() if k != "patients_train_test")
        rows.append(
            [
                arm.get("arm", _DASH),
                arm.get("split", _DASH),
                "yes" if arm.get("leaky") else "no",
                test.get("n", _DASH),
                f"{_pct(test.get('accuracy'))} [{_interval(ci.get('accuracy'))}]",
                f"{_pct(test.get('balanced_accuracy'))} [{_interval(ci.get('balanced_accuracy'))}]",
                _pct(test.get("macro_f1")),
                leakage.get("patients_train_test", _DASH),
                other or _DASH,
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
        *_table(header, rows),
        "",
    ]


def _mean_sd(row: Mapping[str, Any], metric: str) -> str:
    mean, sd = _number(row.get(f"{metric}_mean")), _number(row.get(f"{metric}_sd"))
    if mean is None:
        return "inf (identity)" if row.get(f"{metric}_mean") == math.inf else _DASH
    return f"{mean:.3f}" if sd is None else f"{mean:.3f} ± {sd:.3f}"


def _quality_section(quality: pd.DataFrame | None) -> list[str]:
    lines = ["## Enhancement quality and segmentation Dice", ""]
    if quality is None:
        return [*lines, f"Quality table {_NOT_RUN}.", ""]
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
        *_table(["Method", "PSNR (dB)", "SSIM", "EME", "Images"], rows),
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
        *_table(["Class", "Dice", "Images", "Paper DSC"], rows),
        "",
    ]


def _failed_section(search: Mapping[str, Any]) -> list[str]:
    lines = ["## Failed trials", ""]
    failed = [t for t in search["trials"] if _failed(t)]
    if not failed:
        return [*lines, "None.", ""]
    for trial in failed:
        error = str(trial.get("error") or "no error recorded").strip().splitlines()
        backbone = _params(trial).get("model.backbone", _DASH)
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
    best_metrics : ``best/metrics.json`` (:func:`mammo_ray.metrics.classification_report`).
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


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: invalid JSON ({exc})") from None


def _require(data: Mapping[str, Any], keys: Sequence[str], path: Path) -> None:
    missing = [key for key in keys if key not in data]
    if missing:
        raise ConfigError(f"{path}: missing key(s) {', '.join(missing)}")


def _check_search(data: object, path: Path) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a JSON object, got {type(data).__name__}")
    _require(data, ("name", "metric", "trials"), path)
    if not isinstance(data["trials"], list):
        raise ConfigError(f"{path}: 'trials' must be a list")
    for index, trial in enumerate(data["trials"]):
        if not isinstance(trial, dict) or "trial_id" not in trial:
            raise ConfigError(f"{path}: trials[{index}] is not an object with a 'trial_id'")
    if data.get("mode", "max") not in ("min", "max"):
        raise ConfigError(f"{path}: 'mode' must be 'min' or 'max', got {data['mode']!r}")
    wanted = data.get("best_trial")
    if wanted is not None and wanted not in {t["trial_id"] for t in data["trials"]}:
        raise ConfigError(f"{path}: best_trial {wanted!r} is not one of the trials")
    return data


def _check_metrics(data: object, path: Path) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a JSON object, got {type(data).__name__}")
    _require(data, ("labels", "n", "confusion_matrix", "accuracy", "per_class"), path)
    labels = data["labels"]
    if not isinstance(labels, list) or not labels or not all(isinstance(x, str) for x in labels):
        raise ConfigError(f"{path}: 'labels' must be a non-empty list of class names")
    if isinstance(data["n"], bool) or not isinstance(data["n"], int):
        raise ConfigError(f"{path}: 'n' must be an integer, got {data['n']!r}")
    size = len(labels)
    matrix = data["confusion_matrix"]
    if (
        not isinstance(matrix, list)
        or len(matrix) != size
        or any(not isinstance(row, list) or len(row) != size for row in matrix)
    ):
        raise ConfigError(f"{path}: confusion_matrix must be {size} x {size} for {labels}")
    if any(isinstance(v, bool) or not isinstance(v, int) or v < 0 for row in matrix for v in row):
        raise ConfigError(f"{path}: confusion_matrix must hold non-negative integer counts")
    per_class = data["per_class"]
    if not isinstance(per_class, dict) or not all(isinstance(v, dict) for v in per_class.values()):
        raise ConfigError(f"{path}: 'per_class' must map each label to an object")
    return data


def _check_lime(data: object, path: Path) -> dict[str, Any]:
    images = data.get("images") if isinstance(data, dict) else None
    if not isinstance(images, list) or not all(isinstance(image, dict) for image in images):
        raise ConfigError(f"{path}: expected an object with an 'images' list of objects")
    return data


def _check_audit(data: object, path: Path) -> list[dict[str, Any]]:
    if not isinstance(data, list) or not all(isinstance(row, dict) for row in data):
        raise ConfigError(f"{path}: expected a list of objects, one per arm")
    return data


def _read_quality(path: Path) -> pd.DataFrame:
    try:
        frame = pd.read_csv(path)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise ConfigError(f"{path}: cannot read as CSV ({exc})") from None
    missing = {"name", "table"} - set(frame.columns)
    if missing:
        raise ConfigError(f"{path}: missing column(s) {', '.join(sorted(missing))}")
    return frame


def load_inputs(storage: str | Path) -> ReportInputs:
    """Read a search directory: ``search.json`` is required, every other part optional.

    Raises
    ------
    ConfigError : naming the file, if ``storage`` is not a directory, ``search.json`` is
        missing, or a file present is not valid JSON / CSV or lacks a required key.
    """
    storage = Path(storage)
    if not storage.is_dir():
        raise ConfigError(f"{storage}: not a directory (--storage takes a search directory)")
    search_path = storage / "search.json"
    if not search_path.is_file():
        raise ConfigError(f"{search_path}: not found; is {storage} a finished search directory?")
    search = _check_search(_read_json(search_path), search_path)
    parts: dict[str, Any] = {}
    for name, relative, check in (
        ("best_metrics", "best/metrics.json", _check_metrics),
        ("lime", "explain/lime.json", _check_lime),
        ("audit", "audit.json", _check_audit),
    ):
        path = storage / relative
        parts[name] = check(_read_json(path), path) if path.is_file() else None
    quality_path = storage / "quality.csv"
    quality = _read_quality(quality_path) if quality_path.is_file() else None
    return ReportInputs(search=search, quality=quality, **parts)


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


def _write_text_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


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
        inputs.search, inputs.best_metrics, lime, inputs.audit, inputs.quality, figures
    )
    _write_text_atomic(out, text)
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
    path = write_report(args.storage, args.out)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
