"""Where and how a model runs: device, precision, CPU threads and batched prediction.

:func:`select_device` picks the GPU Ray gave the trial or the CPU; :func:`compute_choice` picks
bf16 autocast where the hardware has it (AVX512-BF16/AMX on CPUs), AMP on CUDA, fp32 oneDNN on
other CPUs; :func:`predict`
turns uint8 films into class probabilities with the evaluation transforms.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from torch import nn

from mammo_ray.data.mias_info import LABELS
from mammo_ray.learn.augment import (
    build_eval_transforms,
)
from mammo_ray.learn.hardware import ComputeChoice, choose_compute, machine_flags
from mammo_ray.learn.models import GRAY_MEAN, GRAY_STD

__all__ = ["select_device", "compute_choice", "autocast_dtype", "cpu_threads", "predict"]


def select_device() -> torch.device:
    """``cuda`` (the first visible GPU; Ray sets ``CUDA_VISIBLE_DEVICES`` per trial) or ``cpu``."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def compute_choice(precision: str, device: torch.device) -> ComputeChoice:
    """:func:`~mammo_ray.learn.hardware.choose_compute` for this machine: its CPU flags, its
    GPU's bf16 support and the threads of :func:`cpu_threads`."""
    cuda = device.type == "cuda"
    return choose_compute(
        precision,
        device.type,
        [] if cuda else machine_flags(),
        cpu_threads(),
        cuda_bf16=cuda and torch.cuda.is_bf16_supported(),
    )


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of :func:`compute_choice`, or None for plain fp32."""
    return compute_choice(precision, device).dtype


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
