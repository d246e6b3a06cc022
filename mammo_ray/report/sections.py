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
    interval_text,
    markdown_table,
    percent,
    trial_failed,
    trial_params,
)
from mammo_ray.report.figures import (
    _table2_value,
    figure6_section,
    figure7_section,
    figure8_section,
)
from mammo_ray.report.modes import modes_section
from mammo_ray.report.paper import (
    PAPER_SOURCE,
    PAPER_TABLE2,
)
from mammo_ray.report.selection import selection_section
from mammo_ray.report.tables import (
    header_section,
    headline_section,
    table3_section,
    table4_section,
)

__all__ = ["build_report"]


_ERROR_LINES = 15


def _audit_section(audit: Sequence[Mapping[str, Any]] | None) -> list[str]:
    lines = ["## Leakage audit (TEST split of each arm)", ""]
    if audit is None:
        return [*lines, f"Leakage audit {NOT_RUN}.", ""]
    rows = []
    for arm in audit:
        test = arm.get("test") if isinstance(arm.get("test"), Mapping) else {}
        ci = test.get("ci95") if isinstance(test.get("ci95"), Mapping) else {}
        leakage = arm.get("leakage") if isinstance(arm.get("leakage"), Mapping) else {}
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
                leakage.get("test_images_with_partner_in_train", DASH),
                leakage.get("test_images_from_train_films", DASH),
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
        "Test films whose partner film trained",
        "Test images copied from training films",
    ]
    return [
        *lines,
        "The same configuration trained and tested under each split protocol; a leaky arm "
        "shares patients between train and test.",
        "",
        *markdown_table(header, rows),
        "",
    ]


def _audit_folds_section(folds: Mapping[str, Sequence[Mapping[str, Any]]] | None) -> list[str]:
    """The audit's cross-validation folds: patients each fold shares with its training folds."""
    if not folds:
        return []
    n_folds = max(len(rows) for rows in folds.values())
    header = ["Folds", *(f"Fold {k}" for k in range(n_folds)), "Films whose partner trained"]
    rows = [
        [
            name,
            *(f"{r['patients_in_other_folds']}/{r['patients']}" for r in fold_rows),
            sum(r["films_with_partner_in_training"] for r in fold_rows),
        ]
        for name, fold_rows in folds.items()
    ]
    return [
        f"Cross-validating every film in {n_folds} folds: per fold, the patients who also have a "
        "film in another fold (whose film then trains the model that predicts this one), of "
        "the fold's patients.",
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
    *,
    resnet18_metrics: Mapping[str, Any] | None = None,
    audit_folds: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
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
    resnet18_metrics : ``best_resnet18/metrics.json`` (when another backbone won).
    audit_folds : ``audit_folds.json`` (the audit's per-fold sharing of patients).
    figures_dir : folder of the figures, relative to the report.

    Returns
    -------
    str : the report, ending with a newline. ``None`` parts are reported as "not run".
    """
    lines = [
        *header_section(search),
        *headline_section(search, best_metrics),
        *selection_section(search, best_metrics, resnet18_metrics, figures_dir),
        *modes_section(search),
        *table3_section(search, best_metrics),
        *table4_section(search),
        *figure6_section(search, figures_dir),
        *figure7_section(best_metrics, figures_dir),
        *figure8_section(lime, figures_dir),
        *_audit_section(audit),
        *_audit_folds_section(audit_folds),
        *_quality_section(quality),
        *_failed_section(search),
        f"Paper: {PAPER_SOURCE}.",
    ]
    return "\n".join(lines) + "\n"
