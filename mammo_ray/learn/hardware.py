"""What the machine can do: its CPU (model and the vector flags that decide speed), its dense
matmul peak, and the work of one training step, so a benchmark states its throughput as a
fraction of the machine's own limit instead of a ratio that holds on one CPU family only.

``achieved / peak``, with ``achieved = training FLOPs per image x images/s`` and ``peak`` the
FLOP/s of a large square matmul in the same dtype (a roofline's compute ceiling for GEMM-bound
work; Williams, Waterman & Patterson, "Roofline", CACM 52(4), 2009).
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable
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
    "matmul_peak",
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


def counted_flops(work: Callable[[], object]) -> float:
    """FLOPs of ``work()`` (matmuls and convolutions, 2 per multiply-add), counted by
    :class:`torch.utils.flop_counter.FlopCounterMode` while it runs."""
    counter = FlopCounterMode(display=False)
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
