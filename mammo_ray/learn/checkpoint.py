"""Checkpoints: one file per trained model, written atomically, loaded with ``weights_only=True``.

A checkpoint is a plain dict saved with :func:`torch.save`: state dict, training config, label
names, preprocessing key, package version and metrics (see :func:`save_checkpoint`).
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn

import mammo_ray
from mammo_ray.config import from_dict
from mammo_ray.data.mias_info import LABELS
from mammo_ray.errors import CheckpointError, ConfigError
from mammo_ray.files import atomic_path
from mammo_ray.learn.bilateral_maps import patch_film_model
from mammo_ray.learn.config import PatchConfig, TrainConfig
from mammo_ray.learn.ensemble import FoldEnsemble
from mammo_ray.learn.inference import select_device
from mammo_ray.learn.models import (
    ModelConfig,
    build_model,
)
from mammo_ray.learn.weights import (
    READ_ERRORS,
    first_line,
    first_mismatch,
)

__all__ = [
    "Checkpoint",
    "save_checkpoint",
    "load_checkpoint",
    "model_from_checkpoint",
    "TrainedModel",
    "load_trained",
]


@dataclasses.dataclass(frozen=True)
class Checkpoint:
    """The contents of a checkpoint file written by :func:`save_checkpoint`.

    Attributes
    ----------
    state_dict : tensors of the model, on the CPU.
    config : the full training config as plain data; ``config["model"]`` rebuilds the model.
    labels : class names in logit order.
    preprocess_key : key of the preprocessing cache the model was trained on.
    package_version : ``mammo_ray.__version__`` of the writer.
    metrics : plain-data metrics at save time, or None.
    members : 1 for one model; ``k > 1`` for a :class:`~mammo_ray.learn.ensemble.FoldEnsemble`
        of ``k`` models of ``config["model"]``'s architecture.
    """

    state_dict: dict[str, torch.Tensor]
    config: dict[str, Any]
    labels: list[str]
    preprocess_key: str
    package_version: str
    metrics: dict[str, Any] | None
    members: int = 1


def save_checkpoint(
    path: str | Path,
    model: nn.Module,
    *,
    config: Mapping[str, Any],
    labels: Sequence[str],
    preprocess_key: str,
    metrics: Mapping[str, Any] | None = None,
) -> Path:
    """Write a checkpoint atomically (:func:`mammo_ray.files.atomic_path`).

    ``config`` and ``metrics`` are stored as plain JSON data (tuples become lists), so the
    file loads with ``torch.load(..., weights_only=True)``; a ``torch.compile`` wrapper is
    unwrapped so the keys match :func:`build_model`. Returns the path written.

    Raises
    ------
    TypeError
        When ``config`` or ``metrics`` holds something that is not plain data (numpy
        arrays and numpy integers included), or ``labels`` are not strings.
    CheckpointError
        When the file cannot be written.
    """
    path = Path(path)
    if isinstance(labels, str) or not all(isinstance(label, str) for label in labels):
        raise TypeError(f"save_checkpoint: labels must be a list of strings, got {labels!r}")
    model = getattr(model, "_orig_mod", model)
    payload = {
        "members": len(model.members) if isinstance(model, FoldEnsemble) else 1,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "config": _plain_data(config, "config"),
        "labels": list(labels),
        "preprocess_key": str(preprocess_key),
        "package_version": mammo_ray.__version__,
        "metrics": None if metrics is None else _plain_data(metrics, "metrics"),
    }
    try:
        with atomic_path(path) as tmp:
            torch.save(payload, tmp)
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot write checkpoint ({first_line(exc)})") from None
    return path


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read a checkpoint with ``torch.load(path, weights_only=True, map_location="cpu")``.

    Raises
    ------
    CheckpointError
        Naming ``path``: the file is missing, unreadable or corrupt, or lacks a field of
        :class:`Checkpoint` or has one of the wrong type.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            data = torch.load(path, weights_only=True, map_location="cpu")
    except READ_ERRORS as exc:
        raise CheckpointError(
            f"{path}: cannot read checkpoint ({type(exc).__name__}: {first_line(exc)})"
        ) from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: not a mammo_ray checkpoint (holds a {type(data).__name__})")
    checks = {
        "state_dict": lambda v: (
            isinstance(v, dict) and all(isinstance(t, torch.Tensor) for t in v.values())
        ),
        "config": lambda v: isinstance(v, dict),
        "labels": lambda v: isinstance(v, list) and all(isinstance(s, str) for s in v),
        "preprocess_key": lambda v: isinstance(v, str),
        "package_version": lambda v: isinstance(v, str),
        "metrics": lambda v: v is None or isinstance(v, dict),
    }
    for key, check in checks.items():
        if key not in data:
            raise CheckpointError(f"{path}: not a mammo_ray checkpoint (no {key!r})")
        if not check(data[key]):
            raise CheckpointError(f"{path}: checkpoint field {key!r} has the wrong type")
    members = data.get("members", 1)
    if isinstance(members, bool) or not isinstance(members, int) or members < 1:
        raise CheckpointError(f"{path}: checkpoint field 'members' has the wrong type")
    return Checkpoint(**{key: data[key] for key in checks}, members=members)


def model_from_checkpoint(ckpt: Checkpoint, source: str = "checkpoint") -> nn.Module:
    """Rebuild the model of ``ckpt`` and load its weights strictly; returned in eval mode.

    The architecture comes from ``ckpt.config["model"]`` with ``pretrained`` forced to
    ``none`` (the checkpoint holds every weight) and ``len(ckpt.labels)`` classes.

    Raises
    ------
    CheckpointError
        When the config has no valid ``model`` section or the state dict does not fit,
        naming ``source`` (the checkpoint file) and the first mismatching key.
    """
    section = ckpt.config.get("model")
    if not isinstance(section, dict):
        raise CheckpointError(f"{source}: config has no 'model' section")
    try:
        cfg = from_dict(ModelConfig, {**section, "pretrained": "none"}, where=f"{source}: model")
    except ConfigError as exc:
        raise CheckpointError(str(exc)) from None
    members = [_member(cfg, ckpt, source) for _ in range(ckpt.members)]
    model = members[0] if ckpt.members == 1 else FoldEnsemble(members)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    mismatch = first_mismatch(expected, ckpt.state_dict)
    if mismatch is not None:
        raise CheckpointError(
            f"{source}: state dict does not fit {_architecture(cfg.backbone, ckpt.members)} with "
            f"{len(ckpt.labels)} classes: {mismatch}"
        )
    model.load_state_dict(ckpt.state_dict, strict=True)
    return model.eval()


def _member(cfg: ModelConfig, ckpt: Checkpoint, source: str) -> nn.Module:
    """One model of the checkpoint's architecture: the backbone, run over the film (or the
    film pair) by :func:`~mammo_ray.learn.bilateral_maps.patch_film_model` when trained on
    patches."""
    model = build_model(cfg, num_classes=len(ckpt.labels))
    mode = (ckpt.config.get("input") or {}).get("mode")
    if mode not in ("patch", "patch+bilateral"):
        return model
    try:
        patch = from_dict(PatchConfig, ckpt.config.get("patch") or {}, where=f"{source}: patch")
    except ConfigError as exc:
        raise CheckpointError(str(exc)) from None
    return patch_film_model(model, patch, bilateral=mode == "patch+bilateral")


def _architecture(backbone: str, members: int) -> str:
    return backbone if members == 1 else f"an ensemble of {members} {backbone}"


def _plain_data(value: Mapping[str, Any], field: str) -> dict[str, Any]:
    """``value`` as JSON-round-tripped plain data; TypeError naming ``field`` if impossible."""
    if not isinstance(value, Mapping):
        raise TypeError(f"save_checkpoint: {field} must be a mapping, got {type(value).__name__}")
    try:
        return json.loads(json.dumps(value))
    except (TypeError, ValueError) as exc:
        raise TypeError(f"save_checkpoint: {field} must be plain JSON data ({exc})") from None


class TrainedModel(NamedTuple):
    """A trained model ready to predict: in eval mode, channels_last, on its device."""

    model: nn.Module
    config: TrainConfig
    device: torch.device


def load_trained(path: str | Path) -> TrainedModel:
    """The one way from a checkpoint file to a model that predicts.

    :func:`load_checkpoint` → the training config (a :class:`TrainConfig`) → the model rebuilt
    by :func:`model_from_checkpoint` → moved to :func:`~mammo_ray.learn.inference.select_device`
    in channels_last memory format, in eval mode.

    Raises
    ------
    CheckpointError
        The file is missing, not a checkpoint, does not fit its model, or its labels are not
        this version's :data:`~mammo_ray.data.mias_info.LABELS`.
    ConfigError
        The checkpoint's config is not a valid training config (naming the file).
    """
    ckpt = load_checkpoint(path)
    if tuple(ckpt.labels) != LABELS:
        raise CheckpointError(
            f"{path}: labels {ckpt.labels} differ from this version's {list(LABELS)}"
        )
    config = from_dict(TrainConfig, ckpt.config, where=f"{path}: config")
    device = select_device()
    model = model_from_checkpoint(ckpt, str(path)).to(device).to(memory_format=torch.channels_last)
    return TrainedModel(model.eval(), config, device)
