"""The machine's limits: CPU flags from /proc/cpuinfo text, native bf16, counted training FLOPs,
and a measured matmul peak."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from mammo_ray.learn.hardware import (
    choose_compute,
    counted_flops,
    matmul_peak,
    native_bf16,
    parse_cpuinfo,
    training_flops_per_image,
)

AVX2_ONLY = """processor\t: 0
model name\t: AMD EPYC 7B13
flags\t\t: fpu sse2 avx fma avx2 bmi2
processor\t: 1
model name\t: AMD EPYC 7B13
flags\t\t: fpu sse2 avx fma avx2 bmi2
"""
SAPPHIRE = """processor\t: 0
model name\t: Intel(R) Xeon(R) Processor
flags\t\t: fpu avx avx2 fma avx512f avx512_bf16 amx_bf16 amx_tile avx512_vnni
"""


def test_cpuinfo_gives_the_model_the_cpus_and_the_flags_that_decide_speed():
    info = parse_cpuinfo(AVX2_ONLY)
    assert info == {"model": "AMD EPYC 7B13", "logical_cpus": 2, "flags": ["avx2", "fma"]}
    assert not native_bf16(info["flags"])
    sapphire = parse_cpuinfo(SAPPHIRE)
    assert {"avx512_bf16", "amx_bf16"} <= set(sapphire["flags"])
    assert native_bf16(sapphire["flags"]) and native_bf16({"amx_bf16"})


def test_a_linear_layer_trains_with_six_flops_per_weight_and_image():
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 5, bias=False))
    inner = nn.Sequential(nn.Linear(12, 7, bias=False), nn.Linear(7, 5, bias=False))
    # The first layer's input needs no gradient: forward 2 + weight gradient 2 per multiply-add.
    assert training_flops_per_image(model, (1, 3, 4)) == pytest.approx(4 * 12 * 5)
    # A second layer also passes its gradient back: 6 per multiply-add.
    assert training_flops_per_image(inner, (12,)) == pytest.approx(4 * 12 * 7 + 6 * 7 * 5)
    assert all(p.grad is None for p in inner.parameters())


@pytest.mark.parametrize("groups", [1, 8])
def test_a_convolution_trains_with_three_times_its_forward_flops_whatever_its_groups(groups):
    conv = nn.Conv2d(8, 8, 3, padding=1, groups=groups)
    x = torch.zeros(2, 8, 16, 16, requires_grad=True)
    forward = counted_flops(lambda: conv(x))
    assert forward == 2 * 2 * (8 * 8 // groups * 9) * 16 * 16
    assert counted_flops(lambda: conv(x).sum().backward()) == 3 * forward
    assert counted_flops(lambda: conv(x.detach()).sum().backward()) == 2 * forward


def test_the_matmul_peak_is_a_positive_rate():
    assert matmul_peak(torch.float32, size=128, seconds=0.05) > 1e6


@pytest.mark.parametrize(
    ("cpuinfo", "precision", "autocast"),
    [
        (AVX2_ONLY, "auto", "fp32"),
        (AVX2_ONLY, "fp32", "fp32"),
        (AVX2_ONLY, "bf16", "bf16"),
        (SAPPHIRE, "auto", "bf16"),
        (SAPPHIRE, "fp32", "fp32"),
    ],
)
def test_bf16_only_where_the_cpu_computes_it_natively_or_it_is_asked_for(
    cpuinfo, precision, autocast
):
    flags = parse_cpuinfo(cpuinfo)["flags"]
    choice = choose_compute(precision, "cpu", flags, threads=2)
    assert choice.autocast == autocast
    assert choice.dtype == {"bf16": torch.bfloat16, "fp32": None}[autocast]
    assert choice.memory_format == "channels_last"
    assert choice.threads == 2


def test_the_reason_says_why_an_avx2_cpu_trains_in_fp32():
    choice = choose_compute("auto", "cpu", parse_cpuinfo(AVX2_ONLY)["flags"], threads=4)
    assert "no native bf16" in choice.reason
    emulated = choose_compute("bf16", "cpu", parse_cpuinfo(AVX2_ONLY)["flags"], threads=4)
    assert "emulates" in emulated.reason


def test_a_gpu_without_bf16_gets_fp16_amp_and_the_choice_is_one_json_object():
    assert choose_compute("auto", "cuda", [], 1, cuda_bf16=False).dtype is torch.float16
    assert choose_compute("auto", "cuda", [], 1, cuda_bf16=True).dtype is torch.bfloat16
    assert choose_compute("fp32", "cuda", [], 1, cuda_bf16=True).dtype is None
    record = json.loads(choose_compute("auto", "cpu", ["avx2"], 3).as_json())
    assert record == {
        "autocast": "fp32",
        "device": "cpu",
        "memory_format": "channels_last",
        "reason": record["reason"],
        "threads": 3,
    }
