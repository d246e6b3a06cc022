"""The training configuration: one frozen :class:`TrainConfig` per run, from YAML and ``--set``.

The paper's Table 1 gives the defaults: Adam, lr 0.001 constant, 15 epochs, batch 16.
:func:`load_train_config` reads a YAML file (or the defaults), applies ``--set key=value``
edits (with the short aliases of :data:`SET_ALIASES`) and validates the result as one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from mammo_ray.config import apply_overrides, from_dict, load_yaml
from mammo_ray.learn.augment import (
    AugmentConfig,
)
from mammo_ray.learn.models import ModelConfig
from mammo_ray.learn.splits import SplitConfig
from mammo_ray.preprocess.pipeline import (
    PreprocessConfig,
)

__all__ = ["SelectionMetric", "OptimConfig", "TrainConfig", "SET_ALIASES", "load_train_config"]


SelectionMetric = Literal[
    "balanced_accuracy", "accuracy", "macro_f1", "macro_precision", "macro_recall", "loss"
]


@dataclasses.dataclass(frozen=True)
class OptimConfig:
    """Optimiser and learning-rate schedule (the paper: Adam, lr 0.001, constant).

    Attributes
    ----------
    name : ``adam``, ``adamw`` (decoupled weight decay) or ``sgd`` (with ``momentum``).
    lr : learning rate, in (0, 1).
    weight_decay : L2 penalty (``adam``, ``sgd``) or decoupled decay (``adamw``), >= 0.
    momentum : SGD momentum, in [0, 1); unused by the Adam variants.
    schedule : ``constant`` or ``cosine`` (annealed per step to 0 over all epochs).
    """

    name: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = 0.001
    weight_decay: float = 0.0
    momentum: float = 0.9
    schedule: Literal["constant", "cosine"] = "constant"

    def __post_init__(self) -> None:
        if not 0 < self.lr < 1:
            raise ValueError(f"lr must lie in (0, 1), got {self.lr}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must lie in [0, 1), got {self.momentum}")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything one training run needs; ``to_dict``/``from_dict`` round-trip through YAML.

    ``segmentation`` picks the classifier input from the cache: ``segmented_<S>`` (breast
    cropped, background zeroed) or ``enhanced_<S>`` (the whole enhanced film).
    ``class_weighting`` weights the cross-entropy by inverse class frequency of the training
    split. ``selection_metric`` (on validation) picks the best epoch. ``precision``: ``auto``
    uses bf16 autocast where the hardware has it (see :func:`autocast_dtype`), ``fp32`` never,
    ``bf16`` always (emulated, and slow, on a CPU without native bf16).
    ``augment_before_split`` exists only for the leakage audit: it makes the x5 copies of
    every image first and splits the copies at image level, so copies of one film land on both
    sides (what the paper's 92-image test set suggests happened). It is leaky by design.
    """

    model: ModelConfig = ModelConfig()
    optim: OptimConfig = OptimConfig()
    augment: AugmentConfig = AugmentConfig()
    split: SplitConfig = SplitConfig()
    preprocess: PreprocessConfig = PreprocessConfig()
    segmentation: bool = True
    input_size: int = 224
    epochs: int = 15
    batch_size: int = 16
    class_weighting: bool = False
    selection_metric: SelectionMetric = "balanced_accuracy"
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    augment_before_split: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        if self.input_size not in self.preprocess.sizes:
            raise ValueError(
                f"input_size {self.input_size} is not among preprocess.sizes "
                f"{list(self.preprocess.sizes)}"
            )
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 2:
            raise ValueError(f"batch_size must be >= 2 (batch norm), got {self.batch_size}")
        if self.augment_before_split and (
            self.split.method != "paper" or self.augment.mode != "x5"
        ):
            raise ValueError("augment_before_split needs split.method=paper and augment.mode=x5")

    @property
    def leaky(self) -> bool:
        """True when films of one patient can reach both training and test: the paper's
        image-level split, or the audit's copies made before splitting."""
        return self.split.method == "paper" or self.augment_before_split

    @property
    def tags(self) -> dict[str, str]:
        """MLflow tags of a run of this config: ``split``, ``leaky`` and ``backbone``."""
        return {
            "split": self.split.method,
            "leaky": str(self.leaky).lower(),
            "backbone": self.model.backbone,
        }

    @property
    def input_array(self) -> str:
        """Name of the cached array the model reads, e.g. ``segmented_224``."""
        kind = "segmented" if self.segmentation else "enhanced"
        return f"{kind}_{self.input_size}"


SET_ALIASES = {
    "pretrained": "model.pretrained",
    "backbone": "model.backbone",
    "lr": "optim.lr",
    "optimizer": "optim.name",
}


def load_train_config(
    path: str | Path | None, overrides: Sequence[str] = (), epochs: int | None = None
) -> TrainConfig:
    """TrainConfig from YAML (or the defaults) and ``--set`` edits, validated as one.

    ``--set`` keys may use the aliases of :data:`SET_ALIASES`; ``epochs`` overrides last.
    """

    expanded = []
    for item in overrides:
        key, sep, value = item.partition("=")
        expanded.append(f"{SET_ALIASES.get(key.strip(), key.strip())}{sep}{value}")
    if epochs is not None:
        expanded.append(f"epochs={epochs}")
    data = apply_overrides(load_yaml(path) if path else {}, expanded)
    where = (str(path) if path else "default config") + (" with --set" if expanded else "")
    return from_dict(TrainConfig, data, where=where)
