"""One training run: the trial function that the CLI and Ray Tune both call.

``train_trial(config, data, report)`` is a plain function of a config dict and the prepared
(cached, in-memory) data. Each epoch it trains on the training split, evaluates on the
validation split and calls ``report(epoch_metrics, checkpoint_path)``; it never imports Ray
Tune. The paper's Table 1 gives the defaults: Adam, lr 0.001 constant, 15 epochs, batch 16.

Speed: the images stay one uint8 tensor in memory (on the GPU when there is one); a batch is
gathered by index, augmented and normalised with vectorised tensor ops (``mammo_ray.augment``)
and fed channels_last under bf16 autocast on CPUs with native bf16 (AVX512-BF16/AMX), or
under AMP on CUDA. The loss is summed on the device and read once per epoch.

References
----------
He, Zhang, Ren, Sun, "Deep Residual Learning for Image Recognition", CVPR 2016.
Kingma, Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015.
"""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from mammo_ray.augment import (
    AugmentConfig,
    build_eval_transforms,
    build_train_transforms,
    expand_offline,
)
from mammo_ray.config import from_dict, to_dict
from mammo_ray.data.mias import LABELS
from mammo_ray.errors import CacheError, ConfigError, MammoRayError
from mammo_ray.models import GRAY_MEAN, GRAY_STD, ModelConfig, build_model, save_checkpoint
from mammo_ray.preprocess.pipeline import CacheManifest, PreprocessConfig
from mammo_ray.splits import Split, SplitConfig, make_split

__all__ = [
    "OptimConfig",
    "TrainConfig",
    "PreparedData",
    "TrialArrays",
    "TrainingDiverged",
    "Report",
    "train_trial",
    "trial_arrays",
    "predict",
    "validation_metrics",
    "improves",
    "select_device",
    "autocast_dtype",
    "cpu_threads",
]

Report = Callable[[dict[str, Any], "str | None"], None]
"""``report(epoch_metrics, checkpoint_path)``, called once per epoch by :func:`train_trial`."""

SelectionMetric = Literal[
    "balanced_accuracy", "accuracy", "macro_f1", "macro_precision", "macro_recall", "loss"
]


class TrainingDiverged(MammoRayError):
    """The training loss became NaN or infinite: this trial failed, not the search."""


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
    def input_array(self) -> str:
        """Name of the cached array the model reads, e.g. ``segmented_224``."""
        kind = "segmented" if self.segmentation else "enhanced"
        return f"{kind}_{self.input_size}"


@dataclasses.dataclass(frozen=True)
class PreparedData:
    """The preprocessing cache in memory: ``{array name: (N, S, S) uint8}`` and its manifest.

    Row ``i`` of every array is ``manifest.records[i]``.
    """

    arrays: dict[str, np.ndarray]
    manifest: CacheManifest

    def __post_init__(self) -> None:
        n_records = len(self.manifest.records)
        for name, array in self.arrays.items():
            if array.dtype != np.uint8 or array.ndim != 3 or array.shape[0] != n_records:
                raise ValueError(
                    f"array {name!r} must be ({n_records}, S, S) uint8 like the manifest's "
                    f"records, got {array.shape} {array.dtype}"
                )

    @property
    def labels(self) -> np.ndarray:
        """(N,) int64 class index of each record into :data:`~mammo_ray.data.mias.LABELS`."""
        index = {name: i for i, name in enumerate(LABELS)}
        return np.array([index[r.label] for r in self.manifest.records], dtype=np.int64)

    @property
    def patient_ids(self) -> np.ndarray:
        """(N,) int64 patient of each record."""
        return np.array([r.patient_id for r in self.manifest.records], dtype=np.int64)

    @property
    def image_ids(self) -> list[str]:
        return self.manifest.image_ids


@dataclasses.dataclass(frozen=True)
class TrialArrays:
    """The images, labels and split one configuration trains and evaluates on.

    ``source_index[i]`` is the record row ``i`` was made from (``i`` itself unless the audit's
    ``augment_before_split`` made copies, whose ids read ``mdbNNN~copyK``).
    """

    images: np.ndarray
    labels: np.ndarray
    patient_ids: np.ndarray
    image_ids: list[str]
    source_index: np.ndarray
    split: Split


def trial_arrays(cfg: TrainConfig, data: PreparedData) -> TrialArrays:
    """Pick the configured input array and split it; for the audit's leaky arm, copy first.

    Raises
    ------
    CacheError
        When the cache lacks ``cfg.input_array`` (it was built for other sizes).
    ConfigError
        When the split is impossible (a class too small for the fractions).
    """
    if cfg.input_array not in data.arrays:
        raise CacheError(
            f"the preprocessing cache {data.manifest.key} has no array {cfg.input_array!r} "
            f"(it has {', '.join(sorted(data.arrays))}); add {cfg.input_size} to preprocess.sizes"
        )
    images, labels = data.arrays[cfg.input_array], data.labels
    patients, image_ids = data.patient_ids, list(data.image_ids)
    source = np.arange(len(labels), dtype=np.int64)
    if cfg.augment_before_split:
        images, labels, source = expand_offline(images, labels, cfg.augment, cfg.seed)
        patients = patients[source]
        n = len(image_ids)
        image_ids = [
            image_ids[s] if i < n else f"{image_ids[s]}~copy{i // n}" for i, s in enumerate(source)
        ]
    try:
        split = make_split([LABELS[i] for i in labels], patients.tolist(), cfg.split)
    except ValueError as exc:
        raise ConfigError(f"split ({cfg.split.method}): {exc}") from None
    return TrialArrays(images, labels, patients, image_ids, source, split)


def select_device() -> torch.device:
    """``cuda`` (the first visible GPU; Ray sets ``CUDA_VISIBLE_DEVICES`` per trial) or ``cpu``."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``precision`` on ``device``, or None for plain fp32.

    ``fp32``: None. CUDA: bf16 where supported (or asked for), else fp16 with a gradient
    scaler. CPU: bf16 when oneDNN reports native bf16 (AVX512-BF16 or AMX) or ``bf16`` is
    asked for; else None, since emulated bf16 is slower than fp32.
    """
    if precision == "fp32":
        return None
    if device.type == "cuda":
        supported = precision == "bf16" or torch.cuda.is_bf16_supported()
        return torch.bfloat16 if supported else torch.float16
    native = torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    return torch.bfloat16 if (native or precision == "bf16") else None


def cpu_threads() -> int:
    """Intra-op threads for CPU training: the CPUs this process was given.

    ``OMP_NUM_THREADS`` when set (Ray sets it to the ``num_cpus`` of a task or actor, so a
    Tune trial with ``{"cpu": 4}`` gets 4), else the CPUs of this process's affinity mask.
    """
    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    if env.isdigit() and int(env) > 0:
        return int(env)
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _optimizer(cfg: OptimConfig, params) -> torch.optim.Optimizer:
    """The configured optimiser, fused (one kernel over all parameters: several times
    faster than the per-tensor loop PyTorch uses by default on a CPU)."""
    if cfg.name == "sgd":
        return torch.optim.SGD(
            params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, fused=True
        )
    cls = torch.optim.AdamW if cfg.name == "adamw" else torch.optim.Adam
    return cls(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)


def _class_weights(labels: np.ndarray) -> torch.Tensor:
    """Inverse-frequency weights ``w_c = N / (C * n_c)`` (sklearn's "balanced"); 0 if absent."""
    counts = np.bincount(labels, minlength=len(LABELS)).astype(np.float64)
    weights = np.divide(
        len(labels), len(LABELS) * counts, out=np.zeros_like(counts), where=counts > 0
    )
    return torch.tensor(weights, dtype=torch.float32)


@torch.inference_mode()
def predict(
    model: nn.Module,
    images: torch.Tensor,
    *,
    batch_size: int = 64,
    device: torch.device | None = None,
    amp_dtype: torch.dtype | None = None,
) -> np.ndarray:
    """Class probabilities (N, C) float32 for uint8 images (N, H, W), normalised as in evaluation.

    ``softmax(model((x / 255 - GRAY_MEAN) / GRAY_STD))`` in eval mode (batch norm uses its
    running statistics), ``batch_size`` images at a time on ``device`` (default: the model's).
    """
    device = device or next(model.parameters()).device
    transform = build_eval_transforms(GRAY_MEAN, GRAY_STD)
    model.eval()
    out = []
    for start in range(0, len(images), batch_size):
        batch = images[start : start + batch_size].to(device, non_blocking=True).unsqueeze(1)
        batch = transform(batch).contiguous(memory_format=torch.channels_last)
        with torch.autocast(
            device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None
        ):
            logits = model(batch)
        out.append(torch.softmax(logits.float(), dim=1).cpu())
    return torch.cat(out).numpy() if out else np.zeros((0, len(LABELS)), np.float32)


def validation_metrics(proba: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Loss, accuracy and macro measures of predicted probabilities against true labels.

    ``loss = -mean_i log max(p_i[y_i], 1e-12)`` (unweighted cross-entropy);
    ``accuracy = mean(argmax p_i == y_i)``; ``balanced_accuracy`` = mean recall of the classes
    present in ``labels``; ``macro_precision``, ``macro_recall``, ``macro_f1`` = unweighted
    means over the classes present in ``labels`` or the predictions, a zero denominator
    counting 0 (the definitions of :func:`mammo_ray.metrics.classification_report`).
    """
    from sklearn.metrics import (
        balanced_accuracy_score,
        f1_score,
        precision_score,
        recall_score,
    )

    pred = proba.argmax(1)
    picked = proba[np.arange(len(labels)), labels].astype(np.float64)
    return {
        "loss": float(-np.log(np.maximum(picked, 1e-12)).mean()),
        "accuracy": float((pred == labels).mean()),
        "balanced_accuracy": float(balanced_accuracy_score(labels, pred)),
        "macro_precision": float(precision_score(labels, pred, average="macro", zero_division=0.0)),
        "macro_recall": float(recall_score(labels, pred, average="macro", zero_division=0.0)),
        "macro_f1": float(f1_score(labels, pred, average="macro", zero_division=0.0)),
    }


def improves(metric: str, value: float, best: float | None) -> bool:
    """True when ``value`` beats ``best`` (None: nothing yet): lower for ``loss``, else higher."""
    if best is None:
        return True
    return value < best if metric == "loss" else value > best


def _steps_per_epoch(n_images: int, batch_size: int) -> int:
    """``ceil(N / B)``, less a final batch of one image (batch norm cannot train on it)."""
    steps = math.ceil(n_images / batch_size)
    return steps - 1 if n_images % batch_size == 1 and steps > 1 else steps


def train_trial(config: dict[str, Any], data: PreparedData, report: Report) -> dict[str, Any]:
    """Train one configuration; report each epoch's validation metrics with a checkpoint.

    ``report(metrics, checkpoint_path)``: metrics hold ``epoch``, ``train_loss``,
    ``train_accuracy``, ``val_*`` (see :func:`validation_metrics`), ``images_per_s`` (training
    images per second of the epoch's training loop, validation excluded) and
    ``epoch_seconds``. The checkpoint (:func:`mammo_ray.models.save_checkpoint`) is rewritten
    every epoch and deleted when training ends, so a reporter that keeps it must copy it.
    The training loss is ``CrossEntropy(logits, y)``, weighted by :func:`_class_weights` when
    ``class_weighting`` is on; the epoch's ``train_loss`` is its mean over the images seen.

    Returns
    -------
    dict : ``best`` (the metrics of the best epoch by ``selection_metric`` on validation),
        ``history`` (every epoch's metrics), ``split_method`` and ``leaky``.

    Raises
    ------
    TrainingDiverged
        When an epoch's training loss is NaN or infinite.
    ConfigError, CacheError, ModelError
        On a bad config, a cache without the input array, or weights that cannot be had.
    """
    cfg = from_dict(TrainConfig, config, where="trial config")
    device = select_device()
    if device.type == "cpu":
        torch.set_num_threads(cpu_threads())
    else:
        torch.backends.cudnn.benchmark = True
    amp_dtype = autocast_dtype(cfg.precision, device)
    arrays = trial_arrays(cfg, data)
    split = arrays.split

    train_rows, val_rows = np.asarray(split.train), np.asarray(split.val)
    train_images, train_labels = arrays.images[train_rows], arrays.labels[train_rows]
    if cfg.augment.mode == "x5" and not cfg.augment_before_split:
        train_images, train_labels, _ = expand_offline(
            train_images, train_labels, cfg.augment, cfg.seed
        )
    x_train = torch.from_numpy(np.ascontiguousarray(train_images)).to(device)
    y_train = torch.from_numpy(train_labels).to(device)
    x_val = torch.from_numpy(np.ascontiguousarray(arrays.images[val_rows])).to(device)
    y_val = arrays.labels[val_rows]

    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, num_classes=len(LABELS)).to(device)
    model = model.to(memory_format=torch.channels_last)
    optimizer = _optimizer(cfg.optim, model.parameters())
    steps = _steps_per_epoch(len(x_train), cfg.batch_size)
    seen = min(steps * cfg.batch_size, len(x_train))
    scheduler = (
        torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.epochs * steps)
        if cfg.optim.schedule == "cosine"
        else None
    )
    weights = _class_weights(train_labels).to(device) if cfg.class_weighting else None
    loss_fn = nn.CrossEntropyLoss(weight=weights)
    train_transform = build_train_transforms(cfg.augment, GRAY_MEAN, GRAY_STD)
    generator = torch.Generator().manual_seed(cfg.seed)
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)

    history: list[dict[str, Any]] = []
    best: dict[str, Any] | None = None
    checkpoint_dir = Path(tempfile.mkdtemp(prefix="mammo-ray-ckpt-"))
    try:
        for epoch in range(1, cfg.epochs + 1):
            model.train()
            start = time.perf_counter()
            order = torch.randperm(len(x_train), generator=generator).to(device)
            loss_sum = torch.zeros((), device=device)
            correct = torch.zeros((), dtype=torch.int64, device=device)
            for step in range(steps):
                index = order[step * cfg.batch_size : (step + 1) * cfg.batch_size]
                batch = train_transform(x_train[index].unsqueeze(1), generator)
                batch = batch.contiguous(memory_format=torch.channels_last)
                target = y_train[index]
                with torch.autocast(
                    device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None
                ):
                    logits = model(batch).float()
                loss = loss_fn(logits, target)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                if scheduler is not None:
                    scheduler.step()
                loss_sum += loss.detach() * len(index)
                correct += (logits.detach().argmax(1) == target).sum()
            train_loss = float(loss_sum) / seen
            seconds = time.perf_counter() - start
            if not math.isfinite(train_loss):
                raise TrainingDiverged(
                    f"training diverged: epoch {epoch} training loss is {train_loss} "
                    f"(optim.name={cfg.optim.name}, optim.lr={cfg.optim.lr}); lower optim.lr"
                )
            proba = predict(
                model, x_val, batch_size=max(cfg.batch_size, 32), device=device, amp_dtype=amp_dtype
            )
            val = validation_metrics(proba, y_val)
            metrics = {
                "epoch": epoch,
                "train_loss": train_loss,
                "train_accuracy": int(correct) / seen,
                **{f"val_{k}": v for k, v in val.items()},
                "images_per_s": seen / seconds,
                "epoch_seconds": seconds,
            }
            history.append(metrics)
            path = save_checkpoint(
                checkpoint_dir / "model.pt",
                model,
                config=to_dict(cfg),
                labels=list(LABELS),
                preprocess_key=data.manifest.key,
                metrics=metrics,
            )
            key = f"val_{cfg.selection_metric}"
            if improves(cfg.selection_metric, metrics[key], None if best is None else best[key]):
                best = metrics
            report(metrics, str(path))
    finally:
        shutil.rmtree(checkpoint_dir, ignore_errors=True)
    return {"best": best, "history": history, "split_method": split.method, "leaky": split.leaky}


if __name__ == "__main__":
    import sys

    from mammo_ray.cli import run_cli
    from mammo_ray.train_command import main

    sys.exit(run_cli(main))
