"""The enhancement-quality and segmentation-Dice table (the analogue of the paper's Figure 4 and
the DSC row of its Table 2), computed over a dataset on Ray Data.

For every image and every enhancement method (``none``, ``he``, ``clahe``, ``paper``) it
measures PSNR and SSIM against the original film and the EME contrast measure; for every image
with ground-truth circles it measures the Dice of the candidate region of the configured
segmentation against the circles (capped well below 1: a circle encloses its lesion).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd
from ray.data import ActorPoolStrategy

from mammo_ray.cli import text_table
from mammo_ray.data.mias import load_mias
from mammo_ray.data.pgm import decode_pgm
from mammo_ray.preprocess.enhance import ENHANCE_METHODS, enhance
from mammo_ray.preprocess.pipeline import (
    PreprocessConfig,
    ensure_ray,
    pgm_dataset,
    pgm_items,
    raise_user_error,
)
from mammo_ray.preprocess.quality import eme, psnr, ssim
from mammo_ray.preprocess.segment import candidate_dice, segment

__all__ = ["QualityTable", "quality_table", "format_quality_table"]


@dataclasses.dataclass(frozen=True)
class QualityTable:
    """Per-image measurements and their per-method / per-class summaries."""

    per_image: pd.DataFrame
    enhancement: pd.DataFrame
    dice: pd.DataFrame

    def write_csv(self, path: str | Path) -> None:
        """Write the summary (a row per method or class) to ``path``, per-image rows beside it."""
        path = Path(path)
        summary = pd.concat(
            [self.enhancement.assign(table="enhancement"), self.dice.assign(table="dice")],
            ignore_index=True,
        )
        summary.to_csv(path, index=False, float_format="%.4f")
        self.per_image.to_csv(path.with_name(path.stem + "_per_image.csv"), index=False)


class _QualityBatch:
    def __init__(self, cfg: PreprocessConfig):
        self.cfg = cfg

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:

        cv2.setNumThreads(1)
        rows: list[dict[str, float | str]] = []
        for image_id, pgm, circles_json in zip(
            batch["image_id"], batch["pgm"], batch["circles"], strict=True
        ):
            original = decode_pgm(bytes(pgm), source=str(image_id))
            row: dict[str, float | str] = {"image_id": str(image_id)}
            for method in ENHANCE_METHODS:
                enhanced = enhance(original, dataclasses.replace(self.cfg.enhance, method=method))
                row[f"{method}_psnr"] = psnr(original, enhanced)
                row[f"{method}_ssim"] = ssim(original, enhanced)
                row[f"{method}_eme"] = eme(enhanced)
            circles = json.loads(circles_json)
            seg = segment(original, enhance(original, self.cfg.enhance), self.cfg.segment)
            value = candidate_dice(seg, circles) if circles else None
            row["dice"] = np.nan if value is None else value
            rows.append(row)
        return {key: np.asarray([r[key] for r in rows]) for key in rows[0]}


def _mean_sd(values: pd.Series) -> tuple[float, float, int]:
    finite = values[np.isfinite(values.astype(float))]
    sd = float(finite.std(ddof=1)) if len(finite) > 1 else float("nan")
    return float(finite.mean()) if len(finite) else float("nan"), sd, int(len(finite))


def quality_table(
    data_path: str | Path,
    cfg: PreprocessConfig,
    *,
    limit: int | None = None,
    workers: int = 2,
    address: str | None = None,
    batch_size: int = 4,
) -> QualityTable:
    """Measure every enhancement method and the configured segmentation over the dataset."""

    dataset = load_mias(data_path, scheme=cfg.label_scheme)
    records = dataset.records[:limit] if limit else dataset.records
    items = pgm_items(dataset, [r.image_id for r in records])
    ensure_ray(address, workers)
    pipeline = pgm_dataset(items, batch_size).map_batches(
        _QualityBatch,
        fn_constructor_args=(cfg,),
        batch_size=batch_size,
        batch_format="numpy",
        compute=ActorPoolStrategy(size=workers),
        num_cpus=1,
    )
    try:
        per_image = pipeline.to_pandas()
    except Exception as exc:
        raise_user_error(exc)
        raise
    labels = {r.image_id: r.label for r in records}
    per_image.insert(1, "label", per_image["image_id"].map(labels))
    per_image = per_image.sort_values("image_id", ignore_index=True)

    enhancement_rows = []
    for method in ENHANCE_METHODS:
        row: dict[str, float | str | int] = {"name": method}
        for metric in ("psnr", "ssim", "eme"):
            mean, sd, n = _mean_sd(per_image[f"{method}_{metric}"])
            row.update({f"{metric}_mean": mean, f"{metric}_sd": sd})
        row["n"] = len(per_image)
        enhancement_rows.append(row)
    dice_rows = []
    for label, group in per_image.groupby("label"):
        mean, sd, n = _mean_sd(group["dice"])
        if n:
            dice_rows.append({"name": label, "dice_mean": mean, "dice_sd": sd, "n": n})
    return QualityTable(per_image, pd.DataFrame(enhancement_rows), pd.DataFrame(dice_rows))


def format_quality_table(table: QualityTable) -> str:
    """Plain-text tables: enhancement (mean ± sd per method) and Dice per class."""

    def mean_sd(row: dict[str, Any], measure: str) -> str:
        mean, sd = row[f"{measure}_mean"], row[f"{measure}_sd"]
        return f"{mean:.3f} ± {sd:.3f}" if np.isfinite(mean) else "inf (identity)"

    enhancement = [
        (row["name"], *(mean_sd(row, m) for m in ("psnr", "ssim", "eme")), row["n"])
        for row in table.enhancement.to_dict("records")
    ]
    dice = [(row["name"], mean_sd(row, "dice"), row["n"]) for row in table.dice.to_dict("records")]
    return "\n".join(
        [
            "Enhancement quality against the original film (mean ± sd over images)",
            "",
            *text_table(("method", "PSNR dB", "SSIM", "EME", "n"), enhancement),
            "",
            "Candidate-region Dice against the MIAS circles (a circle encloses its lesion,",
            "so Dice is capped well below 1)",
            "",
            *text_table(("class", "Dice", "n"), dice),
        ]
    )
