"""Where and how a model runs: device, precision, CPU threads and batched prediction.

:func:`select_device` picks the GPU Ray gave the trial or the CPU; :func:`autocast_dtype` picks
bf16 autocast where the hardware has it (AVX512-BF16/AMX on CPUs), AMP on CUDA; :func:`predict`
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
from mammo_ray.learn.models import GRAY_MEAN, GRAY_STD

__all__ = ["select_device", "autocast_dtype", "cpu_threads", "predict"]


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
