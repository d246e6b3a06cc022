"""One training run: the trial function that the CLI and Ray Tune both call.

``train_trial(config, data, on_epoch)`` is a plain function of a config dict and the prepared
(cached, in-memory) data. Each epoch it trains on the training split, evaluates on the
validation split and calls ``on_epoch(epoch_metrics, checkpoint_path)``; it never imports Ray
Tune. The paper's Table 1 gives the defaults: Adam, lr 0.001 constant, 15 epochs, batch 16.

Speed: the images stay one uint8 tensor in memory (on the GPU when there is one); a batch is
gathered by index, augmented and normalised with vectorised tensor ops
(:mod:`mammo_ray.learn.augment`) and fed channels_last under bf16 autocast on CPUs with native
bf16 (AVX512-BF16/AMX), or under AMP on CUDA. The loss is summed on the device and read once
per epoch.

References
----------
He, Zhang, Ren, Sun, "Deep Residual Learning for Image Recognition", CVPR 2016.
Kingma, Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015.
"""

from __future__ import annotations

import dataclasses
import math
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.metrics import balanced_accuracy_score, f1_score, precision_score, recall_score
from torch import nn

from mammo_ray.config import from_dict, to_dict
from mammo_ray.data.mias_info import LABELS
from mammo_ray.errors import CheckpointError, ConfigError, MammoRayError
from mammo_ray.files import atomic_path
from mammo_ray.learn.augment import (
    build_train_transforms,
    expand_offline,
)
from mammo_ray.learn.bilateral import partner_rows
from mammo_ray.learn.bilateral_maps import pair_films
from mammo_ray.learn.checkpoint import load_checkpoint, save_checkpoint
from mammo_ray.learn.config import OptimConfig, TrainConfig
from mammo_ray.learn.inference import autocast_dtype, cpu_threads, predict, select_device
from mammo_ray.learn.models import GRAY_MEAN, GRAY_STD, build_model
from mammo_ray.learn.splits import Split, cross_validation, make_split
from mammo_ray.learn.weights import READ_ERRORS
from mammo_ray.preprocess.prepared import PreparedData

__all__ = [
    "EpochCallback",
    "TrainingDiverged",
    "TrialArrays",
    "trial_arrays",
    "held_out_arrays",
    "film_images",
    "input_images",
    "Fitter",
    "run_epoch",
    "steps_per_epoch",
    "TrainingState",
    "STATE_FILE",
    "load_training_state",
    "validation_metrics",
    "improves",
    "train_trial",
    "trial_result",
]


EpochCallback = Callable[[dict[str, Any], "str | None"], None]
"""``on_epoch(epoch_metrics, checkpoint_path)``, called once per epoch by :func:`train_trial`."""


class TrainingDiverged(MammoRayError):
    """The training loss became NaN or infinite: this trial failed, not the search."""


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


def trial_arrays(cfg: TrainConfig, data: PreparedData, fold: int | None = None) -> TrialArrays:
    """Pick the configured input array and split it; for the audit's leaky arm, copy first.

    With ``split.method: cv``, ``fold`` picks the fold (``repeat * folds + k``) whose split
    this is: its ``test`` part is the fold predicted out of fold.

    Raises
    ------
    CacheError
        When the cache lacks ``cfg.input_array`` (it was built for other sizes).
    ConfigError
        When the split is impossible (a class too small for the fractions), or ``fold`` is
        missing (cv) or given (another method) or out of range.
    """
    images, labels = film_images(cfg, data), data.labels
    patients, image_ids = data.patient_ids, list(data.image_ids)
    source = np.arange(len(labels), dtype=np.int64)
    if cfg.augment_before_split:
        images, labels, source = expand_offline(images, labels, cfg.augment, cfg.seed)
        patients = patients[source]
        n = len(image_ids)
        image_ids = [
            image_ids[s] if i < n else f"{image_ids[s]}~copy{i // n}" for i, s in enumerate(source)
        ]
    return TrialArrays(
        images, labels, patients, image_ids, source, _split(cfg, labels, patients, fold)
    )


def film_images(cfg: TrainConfig, data: PreparedData, rows: np.ndarray | None = None) -> np.ndarray:
    """(N, S, S) uint8, the films ``cfg`` trains on (those of ``rows``, default all): the
    cached ``cfg.input_array``; for a patch classifier with the background outside the breast
    mask (``cfg.breast_array``) 0."""
    films = data.array(cfg.input_array)
    films = films if rows is None else films[rows]
    if cfg.input.patches:
        breasts = data.array(cfg.breast_array)
        inside = (breasts if rows is None else breasts[rows]) > 0
        return np.where(inside, films, 0).astype(np.uint8)
    return films


def input_images(
    cfg: TrainConfig, data: PreparedData, rows: np.ndarray | None = None
) -> np.ndarray:
    """What the trained model of ``cfg`` reads per film (of ``rows``, default all):
    :func:`film_images`; with ``input.mode: patch+bilateral`` each film beside its mirrored
    partner, (N, S, 2S) (:func:`~mammo_ray.learn.bilateral_maps.pair_films`)."""
    if not cfg.input.bilateral:
        return film_images(cfg, data, rows)
    partners = partner_rows(data.patient_ids)
    if rows is None:
        return pair_films(film_images(cfg, data), partners)
    rows = np.asarray(rows, np.int64)
    needed = np.union1d(rows, partners[rows][partners[rows] >= 0])
    local = np.full(partners.size, -1, np.int64)
    local[needed] = np.arange(needed.size)
    needed_partners = np.where(partners[needed] >= 0, local[partners[needed]], -1)
    return pair_films(film_images(cfg, data, needed), needed_partners, local[rows])


def held_out_arrays(cfg: TrainConfig, data: PreparedData) -> TrialArrays:
    """The arrays of ``cfg`` with a split whose ``test`` part is what ``cfg`` holds out for
    one final evaluation: the configured split's test part, or with ``cv`` the outer test part
    (then ``train`` holds every cross-validated film and ``val`` is empty, and ``images`` are
    what the trained model reads, :func:`input_images`: film pairs for ``patch+bilateral``).

    Raises
    ------
    ConfigError
        With ``cv`` and ``split.test: 0`` (nothing held out), or an impossible split.
    """
    if cfg.split.method != "cv":
        return trial_arrays(cfg, data)
    arrays = trial_arrays(cfg, data, 0)
    cv = cross_validation(
        [LABELS[i] for i in arrays.labels], arrays.patient_ids.tolist(), cfg.split
    )
    if not cv.test:
        raise ConfigError("split (cv): split.test is 0, so no outer test part is held out")
    split = Split("cv", False, cv.out_of_fold(0), (), cv.test, cfg.split.seed)
    images = arrays.images
    if cfg.input.bilateral:
        images = pair_films(images, partner_rows(arrays.patient_ids))
    return dataclasses.replace(arrays, images=images, split=split)


def _split(cfg: TrainConfig, labels: np.ndarray, patients: np.ndarray, fold: int | None) -> Split:
    """The split of one training: the configured one, or fold ``fold`` of a ``cv`` split."""
    names = [LABELS[i] for i in labels]
    cv = cfg.split.method == "cv"
    if cv != (fold is not None):
        need = "a fold number (train it with 'train cv')" if cv else "no fold number"
        raise ConfigError(f"split ({cfg.split.method}): needs {need}")
    try:
        if not cv:
            return make_split(names, patients.tolist(), cfg.split)
        folds = cross_validation(names, patients.tolist(), cfg.split).folds
    except ValueError as exc:
        raise ConfigError(f"split ({cfg.split.method}): {exc}") from None
    if not 0 <= fold < len(folds):
        raise ConfigError(f"split (cv): fold {fold} is not one of 0..{len(folds) - 1}")
    return folds[fold]


def _optimizer(cfg: OptimConfig, params: Iterable[nn.Parameter]) -> torch.optim.Optimizer:
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


def validation_metrics(proba: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Loss, accuracy and macro measures of predicted probabilities against true labels.

    ``loss = -mean_i log max(p_i[y_i], 1e-12)`` (unweighted cross-entropy);
    ``accuracy = mean(argmax p_i == y_i)``; ``balanced_accuracy`` = mean recall of the classes
    present in ``labels``; ``macro_precision``, ``macro_recall``, ``macro_f1`` = unweighted
    means over the classes present in ``labels`` or the predictions, a zero denominator
    counting 0 (the definitions of :func:`mammo_ray.learn.metrics.classification_metrics`).
    """

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


def steps_per_epoch(n_images: int, batch_size: int) -> int:
    """``ceil(N / B)``, less a final batch of one image (batch norm cannot train on it)."""
    steps = math.ceil(n_images / batch_size)
    return steps - 1 if n_images % batch_size == 1 and steps > 1 else steps


@dataclasses.dataclass
class Fitter:
    """The optimisation of one run: model, optimiser, schedule, loss, augmentation, seeds.

    Built once per trial by :meth:`build`; :meth:`train_epoch` makes one pass over the training
    images in a seeded random order, ``steps`` batches of ``batch_size``.
    """

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler | None
    scaler: torch.amp.GradScaler
    loss_fn: nn.Module
    transform: Callable[[torch.Tensor, torch.Generator], torch.Tensor]
    generator: torch.Generator
    device: torch.device
    amp_dtype: torch.dtype | None
    batch_size: int
    steps: int

    @classmethod
    def build(
        cls,
        cfg: TrainConfig,
        train_labels: np.ndarray,
        device: torch.device,
        amp_dtype: torch.dtype | None,
    ) -> Fitter:
        """Seed torch with ``cfg.seed``, build the model (channels_last, on ``device``), the fused
        optimiser, the cosine schedule if asked, the (class-weighted) loss and the transforms."""
        torch.manual_seed(cfg.seed)
        model = build_model(cfg.model, num_classes=len(LABELS)).to(device)
        model = model.to(memory_format=torch.channels_last)
        optimizer = _optimizer(cfg.optim, model.parameters())
        steps = steps_per_epoch(len(train_labels), cfg.batch_size)
        scheduler = (
            torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.epochs * steps)
            if cfg.optim.schedule == "cosine"
            else None
        )
        weights = _class_weights(train_labels).to(device) if cfg.class_weighting else None
        return cls(
            model=model,
            optimizer=optimizer,
            scheduler=scheduler,
            scaler=torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16),
            loss_fn=nn.CrossEntropyLoss(weight=weights),
            transform=build_train_transforms(cfg.augment, GRAY_MEAN, GRAY_STD),
            generator=torch.Generator().manual_seed(cfg.seed),
            device=device,
            amp_dtype=amp_dtype,
            batch_size=cfg.batch_size,
            steps=steps,
        )

    def train_epoch(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[float, float, int]:
        """One pass: (mean training loss over the images seen, their accuracy, images seen).

        The loss and the count of correct predictions stay on the device and are read once.
        """
        self.model.train()
        order = torch.randperm(len(images), generator=self.generator).to(self.device)
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), dtype=torch.int64, device=self.device)
        for step in range(self.steps):
            index = order[step * self.batch_size : (step + 1) * self.batch_size]
            batch = self.transform(images[index].unsqueeze(1), self.generator)
            batch = batch.contiguous(memory_format=torch.channels_last)
            target = labels[index]
            with torch.autocast(
                self.device.type,
                dtype=self.amp_dtype or torch.float32,
                enabled=self.amp_dtype is not None,
            ):
                logits = self.model(batch).float()
            loss = self.loss_fn(logits, target)
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            if self.scheduler is not None:
                self.scheduler.step()
            loss_sum += loss.detach() * len(index)
            correct += (logits.detach().argmax(1) == target).sum()
        seen = min(self.steps * self.batch_size, len(images))
        return float(loss_sum) / seen, int(correct) / seen, seen

    def state(self) -> dict[str, Any]:
        """What continues the optimisation where it stopped, beside the model's weights:
        optimiser, schedule, gradient scaler and the generator of batch order and
        augmentation."""
        return {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": None if self.scheduler is None else self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "generator": self.generator.get_state(),
        }

    def restore(self, model_state: dict[str, torch.Tensor], state: dict[str, Any]) -> None:
        """Load weights and :meth:`state` saved by an earlier run of the same config."""
        self.model.load_state_dict(model_state)
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state["scheduler"] is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.generator.set_state(state["generator"])


@dataclasses.dataclass(frozen=True)
class TrainingState:
    """A training run after its last finished epoch: enough for :func:`train_trial` to go on
    with the next epoch as if it had never stopped (``resume``)."""

    model_state: dict[str, torch.Tensor]
    fitter_state: dict[str, Any]
    history: list[dict[str, Any]]


STATE_FILE = "state.pt"
"""Beside each epoch's ``model.pt``: the optimiser and generator state of that epoch."""


def load_training_state(directory: str | Path) -> TrainingState:
    """The :class:`TrainingState` of an epoch checkpoint folder (``model.pt`` + ``state.pt``).

    Raises
    ------
    CheckpointError
        When a file is missing or is not what :func:`train_trial` wrote.
    """
    directory = Path(directory)
    checkpoint = load_checkpoint(directory / "model.pt")
    try:
        state = torch.load(directory / STATE_FILE, weights_only=True, map_location="cpu")
        return TrainingState(checkpoint.state_dict, state["fitter"], list(state["history"]))
    except (OSError, *READ_ERRORS) as exc:
        raise CheckpointError(
            f"{directory / STATE_FILE}: not a training state ({type(exc).__name__}: {exc})"
        ) from None


def _trial_tensors(
    cfg: TrainConfig, arrays: TrialArrays, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, np.ndarray, torch.Tensor, np.ndarray]:
    """(training images, training labels, the same labels as numpy, validation images,
    validation labels) on ``device``; the x5 copies of the training images when asked for."""
    train_rows, val_rows = np.asarray(arrays.split.train), np.asarray(arrays.split.val)
    train_images, train_labels = arrays.images[train_rows], arrays.labels[train_rows]
    if cfg.augment.mode == "x5" and not cfg.augment_before_split:
        train_images, train_labels, _ = expand_offline(
            train_images, train_labels, cfg.augment, cfg.seed
        )
    return (
        torch.from_numpy(np.ascontiguousarray(train_images)).to(device),
        torch.from_numpy(train_labels).to(device),
        train_labels,
        torch.from_numpy(np.ascontiguousarray(arrays.images[val_rows])).to(device),
        arrays.labels[val_rows],
    )


def train_trial(
    config: dict[str, Any],
    data: PreparedData,
    on_epoch: EpochCallback,
    fold: int | None = None,
    resume: TrainingState | None = None,
    save_state: bool = False,
) -> dict[str, Any]:
    """Train one configuration (fold ``fold`` of a ``cv`` split: :func:`trial_arrays`); report
    each epoch's validation metrics with a checkpoint.

    ``on_epoch(metrics, checkpoint_path)``: metrics hold ``epoch``, ``train_loss``,
    ``train_accuracy``, ``val_*`` (see :func:`validation_metrics`), ``images_per_s`` (training
    images per second of the epoch's training loop, validation excluded) and
    ``epoch_seconds``. The checkpoint (:func:`mammo_ray.learn.checkpoint.save_checkpoint`) is
    rewritten every epoch and deleted when training ends, so a callback that keeps it must copy it.
    With ``save_state``, :data:`STATE_FILE` beside it holds what ``resume`` needs
    (:func:`load_training_state`; the optimiser's state can be twice the model's size): given
    one, training goes on at the epoch after it, with its history.
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
    if cfg.input.mode != "whole":
        raise ConfigError(
            f"input.mode {cfg.input.mode} is not trained by train_trial: run it with "
            "'python -m mammo_ray.train cv'"
        )
    device = select_device()
    if device.type == "cpu":
        torch.set_num_threads(cpu_threads())
    else:
        torch.backends.cudnn.benchmark = True
    amp_dtype = autocast_dtype(cfg.precision, device)
    arrays = trial_arrays(cfg, data, fold)
    x_train, y_train, train_labels, x_val, y_val = _trial_tensors(cfg, arrays, device)
    fitter = Fitter.build(cfg, train_labels, device, amp_dtype)
    history: list[dict[str, Any]] = []
    if resume is not None:
        fitter.restore(resume.model_state, resume.fitter_state)
        history = list(resume.history)
    checkpoint_dir = Path(tempfile.mkdtemp(prefix="mammo-ray-ckpt-"))
    try:
        for epoch in range(len(history) + 1, cfg.epochs + 1):
            metrics = run_epoch(fitter, cfg, epoch, (x_train, y_train), (x_val, y_val))
            history.append(metrics)
            path = save_checkpoint(
                checkpoint_dir / "model.pt",
                fitter.model,
                config=to_dict(cfg),
                labels=list(LABELS),
                preprocess_key=data.manifest.key,
                metrics=metrics,
            )
            if save_state:
                with atomic_path(checkpoint_dir / STATE_FILE) as tmp:
                    torch.save({"fitter": fitter.state(), "history": history}, tmp)
            on_epoch(metrics, str(path))
    finally:
        shutil.rmtree(checkpoint_dir, ignore_errors=True)
    return trial_result(cfg, history, arrays.split)


def trial_result(cfg: TrainConfig, history: list[dict[str, Any]], split: Split) -> dict[str, Any]:
    """What a training run returns: its best epoch by ``val_<selection_metric>`` (the first of
    equals), every epoch's metrics, and the split's method and leakiness."""
    key = f"val_{cfg.selection_metric}"
    best: dict[str, Any] | None = None
    for metrics in history:
        if improves(cfg.selection_metric, metrics[key], None if best is None else best[key]):
            best = metrics
    return {"best": best, "history": history, "split_method": split.method, "leaky": split.leaky}


def run_epoch(
    fitter: Fitter,
    cfg: TrainConfig,
    epoch: int,
    train: tuple[torch.Tensor, torch.Tensor],
    val: tuple[torch.Tensor, np.ndarray],
) -> dict[str, Any]:
    """Train one epoch, predict the validation images; the epoch's metrics.

    Raises
    ------
    TrainingDiverged
        When the epoch's training loss is NaN or infinite.
    """
    start = time.perf_counter()
    train_loss, train_accuracy, seen = fitter.train_epoch(*train)
    seconds = time.perf_counter() - start
    if not math.isfinite(train_loss):
        raise TrainingDiverged(
            f"training diverged: epoch {epoch} training loss is {train_loss} "
            f"(optim.name={cfg.optim.name}, optim.lr={cfg.optim.lr}); lower optim.lr"
        )
    x_val, y_val = val
    proba = predict(
        fitter.model, x_val, batch_size=max(cfg.batch_size, 32), amp_dtype=fitter.amp_dtype
    )
    return {
        "epoch": epoch,
        "train_loss": train_loss,
        "train_accuracy": train_accuracy,
        **{f"val_{k}": v for k, v in validation_metrics(proba, y_val).items()},
        "images_per_s": seen / seconds,
        "epoch_seconds": seconds,
    }
