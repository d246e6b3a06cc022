"""The report's figures beside the paper's: Figure 6 (validation accuracy per epoch), Figure 7
with Table 2's per-class layout (the best model's test confusion matrix) and Figure 8 (LIME).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import PurePosixPath
from typing import Any

from mammo_ray.report.cells import (
    DASH,
    NOT_RUN,
    as_number,
    backbone_name,
    best_by_backbone,
    figure_link,
    markdown_table,
    paper_text,
    table_backbones,
    validation_accuracy_series,
)
from mammo_ray.report.paper import (
    _TABLE2_ROWS,
    PAPER_FIGURE7,
    PAPER_FIRST_EPOCH_ACCURACY,
    PAPER_TABLE2,
)

__all__ = [
    "FIGURE6_NAME",
    "CONFUSION_MATRIX_NAME",
    "MAX_LIME_FIGURES",
    "figure6_section",
    "figure7_section",
    "figure8_section",
]


FIGURE6_NAME = "figure6_val_accuracy.png"


CONFUSION_MATRIX_NAME = "confusion_matrix.png"


MAX_LIME_FIGURES = 4


def figure6_section(search: Mapping[str, Any], figures_dir: str | PurePosixPath) -> list[str]:
    lines = ["## Figure 6 analogue: validation accuracy per epoch", ""]
    series = validation_accuracy_series(search)
    if not series and search.get("cv"):
        return [
            *lines,
            f"{NOT_RUN}: cross-validated trials report once per fold. Each fold's per-epoch "
            "curves are in the trial's MLflow child run (`fold_<k>/val_accuracy`, ...).",
            "",
        ]
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


def figure7_section(
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


def figure8_section(lime: Mapping[str, Any] | None, figures_dir: str | PurePosixPath) -> list[str]:
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
