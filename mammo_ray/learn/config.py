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
from mammo_ray.learn.lesions import SamplerConfig
from mammo_ray.learn.models import ModelConfig
from mammo_ray.learn.splits import SplitConfig
from mammo_ray.preprocess.pipeline import (
    PreprocessConfig,
)

__all__ = [
    "SelectionMetric",
    "InputMode",
    "OptimConfig",
    "InputConfig",
    "PatchConfig",
    "RadiomicsConfig",
    "TrainConfig",
    "SET_ALIASES",
    "load_train_config",
    "FULL_RESOLUTION",
]

FULL_RESOLUTION = 1024
"""Side of a MIAS film in pixels (200 µm/px): the cached size the lesion-aware modes read."""

InputMode = Literal["whole", "patch", "patch+bilateral", "radiomics"]


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
class InputConfig:
    """What the classifier reads.

    ``mode``: ``whole`` is the paper's classifier of the whole film (``enhanced_<S>``) or the
    segmented breast (``segmented_<S>``) at ``input_size``; ``patch`` trains a classifier of
    lesion patches cut from the film at ``input_size`` (1024 = full resolution) with its
    background zeroed, runs it over the whole breast and aggregates its score maps to film
    probabilities (:class:`PatchConfig`, :mod:`~mammo_ray.learn.score_maps`);
    ``patch+bilateral`` trains the same patch classifier and reads each film's score maps
    against those of the other breast of the patient (:mod:`~mammo_ray.learn.bilateral_maps`);
    ``radiomics`` is the baseline every deep model must beat: texture and calcification
    features of the breast at full resolution (:mod:`~mammo_ray.learn.radiomics`), set against
    the other breast, into a gradient-boosted classifier (:mod:`~mammo_ray.learn.radiomics_cv`).
    """

    mode: InputMode = "whole"

    @property
    def patches(self) -> bool:
        """Whether a patch classifier is trained (``patch`` or ``patch+bilateral``)."""
        return self.mode in ("patch", "patch+bilateral")

    @property
    def bilateral(self) -> bool:
        """Whether the model reads the film beside its partner (``patch+bilateral``)."""
        return self.mode == "patch+bilateral"


@dataclasses.dataclass(frozen=True)
class PatchConfig:
    """The patch classifier of ``input.mode: patch`` and ``patch+bilateral``.

    ``size``: side of a patch in pixels of the ``input_size`` film, a multiple of 32 (the
    backbones' stride) in [32, input_size]. ``stride``: step in pixels between the windows
    the classifier scores over a film (:class:`~mammo_ray.learn.score_maps.ScoreMapModel`),
    in [1, size]. ``sampler``: how many positive and negative
    patches one epoch draws (:class:`~mammo_ray.learn.lesions.SamplerConfig`).
    ``hard_negatives_per_film``: after each epoch, the windows of each training film that the
    model scores most abnormal outside every lesion become negatives of the next epoch (the
    first epoch draws as many random ones instead). ``top_k``: windows averaged in the
    ``topk`` map features (:data:`~mammo_ray.learn.score_maps.MAP_FEATURES`).
    """

    size: int = 128
    stride: int = 64
    sampler: SamplerConfig = SamplerConfig()
    hard_negatives_per_film: int = 4
    top_k: int = 3

    def __post_init__(self) -> None:
        if self.size < 32 or self.size % 32:
            raise ValueError(f"size must be a multiple of 32 and >= 32, got {self.size}")
        if not 1 <= self.stride <= self.size:
            raise ValueError(f"stride must lie in [1, size], got {self.stride}")
        if self.hard_negatives_per_film < 0:
            raise ValueError(
                f"hard_negatives_per_film must be >= 0, got {self.hard_negatives_per_film}"
            )
        if self.top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {self.top_k}")


@dataclasses.dataclass(frozen=True)
class RadiomicsConfig:
    """The radiomics baseline's classifier (``input.mode: radiomics``).

    ``classifier``: ``hgb`` is scikit-learn's HistGradientBoostingClassifier (``max_iter``
    trees of at most ``max_leaf_nodes`` leaves of at least ``min_samples_leaf`` films,
    ``learning_rate``, ``l2_regularization``);
    ``logistic`` a standardised multinomial logistic regression with inverse regularisation
    ``C``. Both weight the classes inversely to their frequency. ``bilateral`` adds each
    feature's difference from the other breast of the same patient
    (:mod:`~mammo_ray.learn.bilateral`).
    """

    classifier: Literal["hgb", "logistic"] = "hgb"
    bilateral: bool = True
    max_iter: int = 200
    max_leaf_nodes: int = 15
    min_samples_leaf: int = 20
    learning_rate: float = 0.05
    l2_regularization: float = 1.0
    C: float = 0.1

    def __post_init__(self) -> None:
        if self.max_iter < 1:
            raise ValueError(f"max_iter must be >= 1, got {self.max_iter}")
        if self.max_leaf_nodes < 2:
            raise ValueError(f"max_leaf_nodes must be >= 2, got {self.max_leaf_nodes}")
        if self.min_samples_leaf < 1:
            raise ValueError(f"min_samples_leaf must be >= 1, got {self.min_samples_leaf}")
        if not 0 < self.learning_rate <= 1:
            raise ValueError(f"learning_rate must lie in (0, 1], got {self.learning_rate}")
        if self.l2_regularization < 0:
            raise ValueError(f"l2_regularization must be >= 0, got {self.l2_regularization}")
        if self.C <= 0:
            raise ValueError(f"C must be > 0, got {self.C}")


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
    ``input`` picks the kind of classifier (:class:`InputConfig`); ``radiomics`` configures
    the radiomics baseline.
    """

    model: ModelConfig = ModelConfig()
    optim: OptimConfig = OptimConfig()
    augment: AugmentConfig = AugmentConfig()
    split: SplitConfig = SplitConfig()
    preprocess: PreprocessConfig = PreprocessConfig()
    input: InputConfig = InputConfig()
    patch: PatchConfig = PatchConfig()
    radiomics: RadiomicsConfig = RadiomicsConfig()
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
        if self.input.mode == "radiomics" and (
            self.input_size != FULL_RESOLUTION or self.segmentation
        ):
            raise ValueError(
                "input.mode radiomics reads the whole film at full resolution: set "
                f"input_size: {FULL_RESOLUTION}, segmentation: false and {FULL_RESOLUTION} in "
                "preprocess.sizes"
            )
        if self.input.patches:
            self._check_patch()

    def _check_patch(self) -> None:
        if self.segmentation:
            raise ValueError(
                f"input.mode {self.input.mode} cuts patches from the whole film: set "
                "segmentation: false"
            )
        if self.patch.size > self.input_size:
            raise ValueError(
                f"patch.size {self.patch.size} exceeds the film's input_size {self.input_size}"
            )
        if self.augment.mode == "x5":
            raise ValueError(
                f"input.mode {self.input.mode} augments its patches itself: set augment.mode to "
                "none or online"
            )

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

    @property
    def breast_array(self) -> str:
        """Name of the cached breast masks in the frame of ``enhanced_<input_size>``."""
        return f"breast_{self.input_size}"


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
