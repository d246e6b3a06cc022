"""The epoch callback of a training run that keeps its best epoch's checkpoint."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from tqdm import tqdm

from mammo_ray.learn.config import TrainConfig
from mammo_ray.learn.trial import EpochCallback, improves
from mammo_ray.tracking import TrainingRun

__all__ = ["keep_best_epoch"]


def keep_best_epoch(
    cfg: TrainConfig, path: Path, run: TrainingRun | None = None, bar: tqdm | None = None
) -> EpochCallback:
    """The epoch callback of a training run: copy the checkpoint to ``path`` when the selection
    metric improves; log the epoch's metrics to ``run`` and advance ``bar`` when given."""
    key = f"val_{cfg.selection_metric}"
    kept: list[float] = []

    def on_epoch(metrics: dict[str, Any], checkpoint: str | None) -> None:
        if run is not None:
            run.log_metrics(metrics, step=metrics["epoch"])
        if checkpoint and improves(cfg.selection_metric, metrics[key], kept[-1] if kept else None):
            kept.append(metrics[key])
            shutil.copyfile(checkpoint, path)
        if bar is not None:
            bar.set_postfix(
                loss=f"{metrics['train_loss']:.3f}",
                val_acc=f"{metrics['val_accuracy']:.3f}",
                val_bacc=f"{metrics['val_balanced_accuracy']:.3f}",
                img_s=f"{metrics['images_per_s']:.0f}",
            )
            bar.update(1)

    return on_epoch
