"""Training of one patch classifier (``input.mode: patch`` or ``patch+bilateral``), epoch by
epoch, like ``train_trial``.

Each epoch draws a fresh set of patches from the training films (:func:`~mammo_ray.learn.
lesions.sample_patches`: positives in the MIAS circles, negatives in lesion-free breast tissue),
cuts them with random scale, rotation and flip, and trains one pass over them with the same
:class:`~mammo_ray.learn.trial.Fitter` (optimiser, schedule, class weights, bf16 autocast) as a
whole-film trial. After the epoch the model is run over every training film
(:class:`~mammo_ray.learn.score_maps.ScoreMapModel`) and the windows it scores most abnormal
outside any lesion become the next epoch's hard negatives. Validation is patch-level: one fixed
set of patches of the validation films (seeded), scored every epoch as whole-film validation
is, so ``keep_best_epoch`` and the CV machinery select epochs the same way. Each epoch's
checkpoint is the film model of the mode (:func:`~mammo_ray.learn.bilateral_maps.
patch_film_model`; its film-level ``head`` is fitted later, on out-of-fold maps, by
:mod:`~mammo_ray.learn.patch_cv`).
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mammo_ray.config import from_dict, to_dict
from mammo_ray.data.mias_info import LABELS
from mammo_ray.errors import ConfigError
from mammo_ray.learn.bilateral_maps import patch_film_model, single_film_part
from mammo_ray.learn.checkpoint import save_checkpoint
from mammo_ray.learn.config import TrainConfig
from mammo_ray.learn.inference import autocast_dtype, cpu_threads, select_device
from mammo_ray.learn.lesions import (
    Circle,
    PatchSet,
    SamplerConfig,
    extract_patches,
    film_circles,
    hard_negatives,
    sample_patches,
)
from mammo_ray.learn.score_maps import ScoreMapModel, predict_maps
from mammo_ray.learn.trial import (
    EpochCallback,
    Fitter,
    run_epoch,
    steps_per_epoch,
    trial_arrays,
    trial_result,
)
from mammo_ray.preprocess.prepared import PreparedData

__all__ = ["train_patch_trial", "mine_hard_negatives"]


def mine_hard_negatives(
    model: ScoreMapModel,
    films: np.ndarray,
    rows: list[int],
    circles: list[list[Circle]],
    count: int,
    exclusion: float,
    amp_dtype: torch.dtype | None = None,
) -> PatchSet:
    """``count`` normal-labelled patches per film of ``rows``: the windows the model scores
    most abnormal (1 - p_normal) inside the breast and outside every lesion."""
    proba, inside, _ = predict_maps(model, films[rows], amp_dtype=amp_dtype)
    normal = LABELS.index("normal")
    film_rows, centres = [], []
    for row, maps, window_inside in zip(rows, proba, inside, strict=True):
        found = hard_negatives(
            1.0 - maps[normal],
            window_inside,
            circles[row],
            model.patch_size,
            model.stride,
            count,
            exclusion,
        )
        film_rows.append(np.full(len(found), row, np.int64))
        centres.append(found)
    film = np.concatenate(film_rows) if film_rows else np.zeros(0, np.int64)
    centre = np.concatenate(centres).astype(np.float32) if centres else np.zeros((0, 2), np.float32)
    return PatchSet(film, centre, np.full(film.size, normal, np.int64))


def _join(first: PatchSet, second: PatchSet) -> PatchSet:
    return PatchSet(
        np.concatenate([first.film, second.film]),
        np.concatenate([first.centre, second.centre]),
        np.concatenate([first.label, second.label]),
    )


def _eligible(labels: np.ndarray, circles: list[list[Circle]], rows: list[int]) -> list[int]:
    """The films of ``rows`` with known lesion-free tissue: normal, or with a circle."""
    normal = LABELS.index("normal")
    return [r for r in rows if labels[r] == normal or circles[r]]


@dataclasses.dataclass
class _Draws:
    """Where each epoch's training patches come from: the sampler over the training films,
    plus the hard negatives the previous epoch's model mined (random ones the first time)."""

    cfg: TrainConfig
    films: np.ndarray
    breasts: np.ndarray
    circles: list[list[Circle]]
    labels: np.ndarray
    rows: list[int]
    rng: np.random.Generator

    def first(self) -> PatchSet:
        sampler = self.cfg.patch.sampler
        extra = sampler.negatives_per_film + self.cfg.patch.hard_negatives_per_film
        return self._sample(dataclasses.replace(sampler, negatives_per_film=extra))

    def next(self, model: ScoreMapModel, amp_dtype: torch.dtype | None) -> PatchSet:
        patches = self._sample(self.cfg.patch.sampler)
        if not self.cfg.patch.hard_negatives_per_film:
            return patches
        hard = mine_hard_negatives(
            model,
            self.films,
            self.rows,
            self.circles,
            self.cfg.patch.hard_negatives_per_film,
            self.cfg.patch.sampler.exclusion,
            amp_dtype,
        )
        return _join(patches, hard)

    def cut(self, patches: PatchSet) -> torch.Tensor:
        size, scale = self.cfg.patch.size, self.cfg.patch.sampler.scale
        return torch.from_numpy(extract_patches(self.films, patches, size, self.rng, scale))

    def _sample(self, sampler: SamplerConfig) -> PatchSet:
        return sample_patches(
            self.rng,
            self.breasts,
            self.circles,
            self.labels,
            self.rows,
            self.cfg.patch.size,
            sampler,
        )


def train_patch_trial(
    config: dict[str, Any],
    data: PreparedData,
    on_epoch: EpochCallback,
    fold: int | None = None,
) -> dict[str, Any]:
    """Train the patch classifier of ``config`` (``input.mode: patch``/``patch+bilateral``;
    fold ``fold`` of a
    ``cv`` split) and report each epoch's patch-level validation metrics with a checkpoint,
    as :func:`~mammo_ray.learn.trial.train_trial` does (the same return value).

    Raises
    ------
    ConfigError
        When the config trains no patch classifier, or the training films give no patch.
    """
    cfg = from_dict(TrainConfig, config, where="trial config")
    if not cfg.input.patches:
        raise ConfigError(
            f"train_patch_trial needs input.mode patch or patch+bilateral, got {cfg.input.mode}"
        )
    device = select_device()
    if device.type == "cpu":
        torch.set_num_threads(cpu_threads())
    amp_dtype = autocast_dtype(cfg.precision, device)
    arrays = trial_arrays(cfg, data, fold)
    circles = film_circles(data.manifest.records, cfg.input_size, data.manifest.film_shapes)
    breasts = data.array(cfg.breast_array)
    rows = _eligible(arrays.labels, circles, list(arrays.split.train))
    draws = _Draws(
        cfg, arrays.images, breasts, circles, arrays.labels, rows, np.random.default_rng(cfg.seed)
    )
    patches = draws.first()
    if len(patches) < 2:
        raise ConfigError("the training films give no patches: no lesion circle, no normal film")
    val_rng = np.random.default_rng(cfg.seed + 1)
    val = sample_patches(
        val_rng,
        breasts,
        circles,
        arrays.labels,
        list(arrays.split.val),
        cfg.patch.size,
        cfg.patch.sampler,
    )
    x_val = torch.from_numpy(extract_patches(arrays.images, val, cfg.patch.size)).to(device)
    fitter = Fitter.build(cfg, patches.label, device, amp_dtype)
    model = patch_film_model(fitter.model, cfg.patch, cfg.input.bilateral)
    history: list[dict[str, Any]] = []
    checkpoint_dir = Path(tempfile.mkdtemp(prefix="mammo-ray-ckpt-"))
    try:
        for epoch in range(1, cfg.epochs + 1):
            if epoch > 1:
                patches = draws.next(single_film_part(model), amp_dtype)
            fitter.steps = steps_per_epoch(len(patches), cfg.batch_size)
            train = (draws.cut(patches).to(device), torch.from_numpy(patches.label).to(device))
            metrics = run_epoch(fitter, cfg, epoch, train, (x_val, val.label))
            history.append(metrics | {"patches": len(patches)})
            path = save_checkpoint(
                checkpoint_dir / "model.pt",
                model,
                config=to_dict(cfg),
                labels=list(LABELS),
                preprocess_key=data.manifest.key,
                metrics=history[-1],
            )
            on_epoch(history[-1], str(path))
    finally:
        shutil.rmtree(checkpoint_dir, ignore_errors=True)
    return trial_result(cfg, history, arrays.split)
