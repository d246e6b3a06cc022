"""What the machine can do: its CPU (model and the vector flags that decide speed), its dense
matmul peak, and the work of one training step, so a benchmark states its throughput as a
fraction of the machine's own limit instead of a ratio that holds on one CPU family only.

``achieved / peak``, with ``achieved = training FLOPs per image x images/s`` and ``peak`` the
FLOP/s of a large square matmul in the same dtype (a roofline's compute ceiling for GEMM-bound
work; Williams, Waterman & Patterson, "Roofline", CACM 52(4), 2009).
"""

from __future__ import annotations

import dataclasses
import json
import math
import platform
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

__all__ = [
    "SPEED_FLAGS",
    "CpuInfo",
    "parse_cpuinfo",
    "cpu_info",
    "native_bf16",
    "machine_flags",
    "ComputeChoice",
    "choose_compute",
    "matmul_peak",
    "conv_backward_flops",
    "counted_flops",
    "training_flops_per_image",
]

SPEED_FLAGS = (
    "avx2",
    "fma",
    "avx512f",
    "avx512_bf16",
    "avx512_fp16",
    "avx512_vnni",
    "amx_bf16",
    "amx_tile",
)
"""The CPU flags that decide training speed here: AVX2/FMA (the fp32 baseline of a recent x86
CPU), AVX-512, and native bf16 (AVX512-BF16, AMX)."""

CpuInfo = dict[str, object]
"""``{"model": str, "logical_cpus": int, "flags": [the SPEED_FLAGS present]}``."""


def parse_cpuinfo(text: str) -> CpuInfo:
    """The :data:`CpuInfo` of a ``/proc/cpuinfo`` text (its first processor's model and
    flags; logical CPUs counted)."""
    model, flags, processors = "", set(), 0
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "processor":
            processors += 1
        elif key == "model name" and not model:
            model = value.strip()
        elif key == "flags" and not flags:
            flags = set(value.split())
    return {
        "model": model or platform.processor() or "unknown",
        "logical_cpus": processors,
        "flags": [flag for flag in SPEED_FLAGS if flag in flags],
    }


def cpu_info(path: Path = Path("/proc/cpuinfo")) -> CpuInfo:
    """:func:`parse_cpuinfo` of this machine (model only where ``/proc/cpuinfo`` is missing)."""
    try:
        return parse_cpuinfo(path.read_text(encoding="utf-8", errors="replace"))
    except OSError:
        return parse_cpuinfo("")


def native_bf16(flags: list[str] | set[str]) -> bool:
    """Whether a CPU with ``flags`` computes bf16 natively (AVX512-BF16 or AMX-BF16); without,
    bf16 is emulated and slower than fp32."""
    return bool({"avx512_bf16", "amx_bf16"} & set(flags))


def machine_flags() -> list[str]:
    """This CPU's :data:`SPEED_FLAGS`; where ``/proc/cpuinfo`` gives none (not Linux), the
    bf16 flag stands for oneDNN's own report of native bf16."""
    flags = list(cpu_info()["flags"])  # type: ignore[call-overload]
    if not flags and torch.backends.mkldnn.is_available():
        flags += ["avx512_bf16"] * bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return flags


@dataclasses.dataclass(frozen=True)
class ComputeChoice:
    """How a run computes, chosen from what the hardware has (:func:`choose_compute`).

    ``autocast``: ``bf16``, ``fp16`` (CUDA without bf16, with a gradient scaler) or ``fp32``
    (no autocast). Models and batches are always ``channels_last``: oneDNN's and cuDNN's
    fastest convolution layout, in fp32 too (ResNet-18 at 224 px trains 14-21 % faster
    channels_last than NCHW in fp32 on an AVX-512 Xeon; ``benchmarks/train_bench.py``).
    ``threads``: intra-op CPU threads. ``reason`` says why, in words.
    """

    device: str
    autocast: str
    threads: int
    reason: str
    memory_format: str = "channels_last"

    @property
    def dtype(self) -> torch.dtype | None:
        """The autocast dtype, None for plain fp32."""
        return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.autocast)

    def as_json(self) -> str:
        """The choice as one JSON object (what each trial reports and MLflow records)."""
        return json.dumps(dataclasses.asdict(self), sort_keys=True)


def choose_compute(
    precision: str, device: str, flags: list[str] | set[str], threads: int, cuda_bf16: bool = False
) -> ComputeChoice:
    """The :class:`ComputeChoice` for ``precision`` (``auto``, ``fp32``, ``bf16``) on
    ``device`` (``cpu`` or ``cuda``), a CPU with ``flags`` and a GPU with (``cuda_bf16``) or
    without bf16.

    CPU: bf16 autocast only where bf16 is native (:func:`native_bf16`) or asked for; otherwise
    fp32 channels_last through oneDNN, since emulated bf16 is slower than fp32 (AVX2-only
    EPYC: 1.07x over a plain fp32 loop with bf16, against 2.9x on a CPU with AMX). CUDA: bf16
    where supported or asked for, else fp16 with a gradient scaler.
    """
    if precision == "fp32":
        return ComputeChoice(device, "fp32", threads, "fp32 asked for (precision: fp32)")
    if device == "cuda":
        if precision == "bf16" or cuda_bf16:
            return ComputeChoice(device, "bf16", threads, "the GPU computes bf16")
        return ComputeChoice(device, "fp16", threads, "no bf16 on this GPU: fp16 AMP")
    if native_bf16(flags):
        return ComputeChoice(device, "bf16", threads, "native bf16 on this CPU (AVX512-BF16/AMX)")
    if precision == "bf16":
        return ComputeChoice(
            device, "bf16", threads, "bf16 asked for; this CPU emulates it (slower than fp32)"
        )
    return ComputeChoice(
        device, "fp32", threads, "no native bf16 on this CPU (no AVX512-BF16/AMX): fp32 oneDNN"
    )


def matmul_peak(
    dtype: torch.dtype = torch.float32, size: int = 2048, seconds: float = 1.0
) -> float:
    """FLOP/s of ``size`` x ``size`` matmuls in ``dtype`` on the CPU (``2 size^3`` per
    product), the best of runs over about ``seconds`` after one warm-up product."""
    a = torch.randn(size, size).to(dtype)
    b = torch.randn(size, size).to(dtype)
    torch.mm(a, b)
    best, spent = 0.0, 0.0
    while spent < seconds:
        start = time.perf_counter()
        torch.mm(a, b)
        elapsed = time.perf_counter() - start
        spent += elapsed
        best = max(best, 2.0 * size**3 / elapsed)
    return best


def conv_backward_flops(
    grad_out_shape: Sequence[int],
    x_shape: Sequence[int],
    w_shape: Sequence[int],
    *args: object,
    **kwargs: object,
) -> int:
    """FLOPs of ``aten.convolution_backward`` (not transposed): the input gradient and the
    weight gradient, where asked for (``output_mask``), each ``2 x batch x prod(w_shape) x
    output pixels``, what the forward convolution costs. torch's own formula counts the weight
    gradient as a dense convolution whatever the groups: a 3x3 depthwise layer of 64 channels
    came out 66x its true cost in torch 2.14, and MobileNet-V2's training step 7x."""
    output_mask = kwargs.get("output_mask", args[7] if len(args) > 7 else (True, True))
    forward = 2 * grad_out_shape[0] * math.prod(w_shape) * math.prod(grad_out_shape[2:])
    return forward * (bool(output_mask[0]) + bool(output_mask[1]))  # type: ignore[index]


def counted_flops(work: Callable[[], object]) -> float:
    """FLOPs of ``work()`` (matmuls and convolutions, 2 per multiply-add), counted by
    :class:`torch.utils.flop_counter.FlopCounterMode` while it runs, convolution gradients by
    :func:`conv_backward_flops`."""
    counter = FlopCounterMode(
        display=False,
        custom_mapping={torch.ops.aten.convolution_backward: conv_backward_flops},
    )
    with counter:
        work()
    return float(counter.get_total_flops())


def training_flops_per_image(
    model: nn.Module, image_shape: tuple[int, ...], batch: int = 2
) -> float:
    """FLOPs of one training step per image (forward and backward, :func:`counted_flops`) on a
    batch of ``batch`` zero images of ``image_shape`` (C, H, W). The model's gradients are
    cleared after."""
    images = torch.zeros(batch, *image_shape)
    model.train()
    flops = counted_flops(lambda: model(images).float().sum().backward())
    model.zero_grad(set_to_none=True)
    return flops / batch
