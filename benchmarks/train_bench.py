"""Training benchmark: the project's inner loop against plain PyTorch loops, same model and batch.

    python benchmarks/train_bench.py [--steps 30] [--size 224] [--batch-size 16]

Measures, in one run, on ResNet-18 (``pretrained: none``, 1 input channel, 3 classes):

(1) a plain fp32 PyTorch loop on random float tensors: NCHW, no autocast, Adam;
(2) a bare bf16 + channels_last loop on the same uint8 images the project loop trains on,
    normalised up front (autocast dtype from :func:`mammo_ray.learn.inference.autocast_dtype`);
(3) the project's ``train_trial`` on a
    :class:`~mammo_ray.preprocess.prepared.PreparedData` of random uint8 arrays (a real
    CacheManifest with synthetic records), image-level split, with
    ``augment.mode`` ``none`` (same tensors as (2): the data path's cost), ``x5`` (the
    published configuration) and ``online`` (a random affine warp per batch).

Images/s of the loops (1) and (2) are timed over ``--steps`` steps after ``--warmup`` steps;
(3) trains two epochs of about ``--steps`` steps each and takes the second epoch's reported
``images_per_s`` (the first is the warm-up; validation is outside the timed loop). Peak RSS is
the process's high-water mark after each part. Prints a table and writes JSON (default
``benchmarks/results/train.json``). Targets: (3, x5) >= 2.5x (1); the data path, (2) over
(3, none), adds < 10%.

Against the machine's own limit (:mod:`mammo_ray.learn.hardware`): the dense matmul peak is
measured in the same run (fp32, and bf16 where the CPU has it natively), ResNet-18's training
FLOPs per image are counted (forward and backward), and each loop's achieved FLOP/s is given
as a fraction of the peak of the dtype it computes in. Target: the project's loop (3, none) at
>= 50% of that peak. The JSON records the CPU model and its speed flags.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import resource
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mammo_ray.config import to_dict
from mammo_ray.data.mias_info import LABELS, MiasRecord
from mammo_ray.learn.config import TrainConfig
from mammo_ray.learn.hardware import (
    cpu_info,
    matmul_peak,
    native_bf16,
    training_flops_per_image,
)
from mammo_ray.learn.inference import autocast_dtype, cpu_threads, select_device
from mammo_ray.learn.models import GRAY_MEAN, GRAY_STD, ModelConfig, build_model
from mammo_ray.learn.trial import train_trial
from mammo_ray.preprocess.pipeline import CacheManifest, PreprocessConfig
from mammo_ray.preprocess.prepared import PreparedData

TARGET_SPEEDUP = 2.5
TARGET_OVERHEAD = 0.10
TARGET_PEAK_FRACTION = 0.5
_TRAIN_FRACTION = 0.64


def synthetic_data(n_records: int, size: int, seed: int = 0) -> PreparedData:
    """Random uint8 ``segmented_<size>`` images of ``n_records`` films, labels in turn."""
    if not 0 < n_records <= 999:
        raise ValueError(f"n_records must be in 1..999 (mdbNNN ids), got {n_records}")
    records = tuple(
        MiasRecord(
            image_id=f"mdb{i + 1:03d}",
            patient_id=(i + 2) // 2,
            label=LABELS[i % len(LABELS)],
            tissue="G",
            severity=None if i % len(LABELS) == 0 else "B",
            classes=("NORM",) if i % len(LABELS) == 0 else ("CIRC",),
        )
        for i in range(n_records)
    )
    images = np.random.default_rng(seed).integers(0, 256, (n_records, size, size), dtype=np.uint8)
    name = f"segmented_{size}"
    manifest = CacheManifest(
        key="benchmark",
        version="benchmark",
        fingerprint="random",
        data_path="random",
        config=to_dict(PreprocessConfig(sizes=(size,))),
        records=records,
        arrays={name: list(images.shape)},
        stats={"breast_fraction": [None] * n_records, "candidate_dice": [None] * n_records},
        seconds=0.0,
        crop_boxes=((0, size, 0, size),) * n_records,
        film_shapes=((size, size),) * n_records,
    )
    return PreparedData({name: images}, manifest)


def _model(channels_last: bool) -> nn.Module:
    model = build_model(ModelConfig(backbone="resnet18", pretrained="none"), num_classes=3)
    model = model.to(select_device())
    return model.to(memory_format=torch.channels_last) if channels_last else model


def _timed_loop(
    model: nn.Module,
    batches: list[tuple[torch.Tensor, torch.Tensor]],
    warmup: int,
    amp_dtype: torch.dtype | None,
) -> float:
    """Images/s of Adam steps over ``batches[warmup:]`` after ``warmup`` untimed steps."""
    device = next(model.parameters()).device
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    start, seen = 0.0, 0
    for step, (x, y) in enumerate(batches):
        if step == warmup:
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
        with torch.autocast(
            device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None
        ):
            logits = model(x).float()
        loss = loss_fn(logits, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step >= warmup:
            seen += len(y)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return seen / (time.perf_counter() - start)


def plain_fp32(steps: int, warmup: int, batch: int, size: int) -> float:
    """(1): NCHW float32 random tensors, no autocast."""
    device = select_device()
    generator = torch.Generator().manual_seed(0)
    batches = [
        (
            torch.randn(batch, 1, size, size, generator=generator).to(device),
            torch.randint(0, 3, (batch,), generator=generator).to(device),
        )
        for _ in range(warmup + steps)
    ]
    torch.manual_seed(0)
    return _timed_loop(_model(channels_last=False), batches, warmup, None)


def bare_fast(data: PreparedData, steps: int, warmup: int, batch: int, size: int) -> float:
    """(2): the project's images, normalised up front, channels_last, autocast."""
    device = select_device()
    images = torch.from_numpy(data.arrays[f"segmented_{size}"])
    labels = torch.from_numpy(data.labels)
    batches = []
    for step in range(warmup + steps):
        rows = torch.arange(step * batch, (step + 1) * batch) % len(images)
        x = ((images[rows].unsqueeze(1).float() / 255.0 - GRAY_MEAN) / GRAY_STD).to(device)
        batches.append((x.contiguous(memory_format=torch.channels_last), labels[rows].to(device)))
    torch.manual_seed(0)
    return _timed_loop(_model(channels_last=True), batches, warmup, autocast_dtype("auto", device))


def project_loop(
    data: PreparedData, mode: str, batch: int, size: int
) -> tuple[float, list[dict[str, Any]]]:
    """(3): ``train_trial`` for 2 epochs; the second epoch's images/s and the history."""
    config = {
        "model": {"backbone": "resnet18", "pretrained": "none"},
        "augment": {"mode": mode},
        "split": {"method": "paper"},
        "preprocess": {"sizes": [size]},
        "input_size": size,
        "epochs": 2,
        "batch_size": batch,
        "seed": 0,
    }
    result = train_trial(config, data, lambda metrics, checkpoint: None)
    return result["history"][-1]["images_per_s"], result["history"]


def _records_for(steps: int, batch: int, copies: int) -> int:
    """Films whose image-level training part, times ``copies``, fills about ``steps`` batches."""
    return math.ceil(steps * batch / copies / _TRAIN_FRACTION)


def _peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9


def _roofline(
    images_per_s: dict[str, float], amp_dtype: torch.dtype | None, size: int
) -> dict[str, Any]:
    """Each loop's achieved training FLOP/s as a fraction of the matmul peak of the dtype it
    computes in: fp32 for ``plain_fp32``, the autocast dtype for the others."""
    flops = training_flops_per_image(_model(channels_last=False).cpu(), (1, size, size))
    peaks = {"fp32": matmul_peak(torch.float32)}
    if native_bf16(cpu_info()["flags"]):
        peaks["bf16"] = matmul_peak(torch.bfloat16)
    fast = "bf16" if amp_dtype == torch.bfloat16 and "bf16" in peaks else "fp32"
    dtypes = {name: "fp32" if name == "plain_fp32" else fast for name in images_per_s}
    return {
        "training_flops_per_image": flops,
        "matmul_peak_flops": peaks,
        "peak_dtype": dtypes,
        "achieved_flops": {k: v * flops for k, v in images_per_s.items()},
        "fraction_of_peak": {k: v * flops / peaks[dtypes[k]] for k, v in images_per_s.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=30, help="timed steps per measurement")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps of loops (1), (2)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--out", default="benchmarks/results/train.json")
    args = parser.parse_args()

    device = select_device()
    torch.set_num_threads(cpu_threads())
    batch, size = args.batch_size, args.size
    copies = 1 + TrainConfig().augment.copies
    same = synthetic_data(_records_for(args.steps, batch, 1), size)
    rss: dict[str, float] = {}

    fp32 = plain_fp32(args.steps, args.warmup, batch, size)
    rss["plain_fp32"] = _peak_rss_gb()
    bare = bare_fast(same, args.steps, args.warmup, batch, size)
    rss["bare_fast"] = _peak_rss_gb()
    project: dict[str, float] = {}
    histories: dict[str, list[dict[str, Any]]] = {}
    for mode in ("none", "x5", "online"):
        data = (
            same if mode != "x5" else synthetic_data(_records_for(args.steps, batch, copies), size)
        )
        project[mode], histories[mode] = project_loop(data, mode, batch, size)
        rss[f"project_{mode}"] = _peak_rss_gb()

    speedup = project["x5"] / fp32
    overhead = bare / project["none"] - 1.0
    roofline = _roofline(
        {"plain_fp32": fp32, "bare_autocast": bare}
        | {f"project_{m}": v for m, v in project.items()},
        autocast_dtype("auto", device),
        size,
    )
    results = {
        "machine": {
            "platform": platform.platform(),
            "cpu": cpu_info(),
            "device": str(device),
            "threads": torch.get_num_threads(),
            "autocast": str(autocast_dtype("auto", device)),
            "torch": torch.__version__,
        },
        "roofline": roofline,
        "target_peak_fraction": TARGET_PEAK_FRACTION,
        "settings": {
            "model": "resnet18, pretrained none, 1 channel, 3 classes",
            "input_size": size,
            "batch_size": batch,
            "steps": args.steps,
            "warmup_steps": args.warmup,
        },
        "images_per_s": {
            "plain_fp32": fp32,
            "bare_bf16_channels_last": bare,
            **{f"project_{mode}": value for mode, value in project.items()},
        },
        "project_speedup_over_fp32": speedup,
        "target_speedup": TARGET_SPEEDUP,
        "data_path_overhead": overhead,
        "target_overhead": TARGET_OVERHEAD,
        "peak_rss_gb": rss,
        "project_histories": histories,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))

    fractions = roofline["fraction_of_peak"]
    rows = [
        ("(1) plain fp32, NCHW", fp32, rss["plain_fp32"], fractions["plain_fp32"]),
        ("(2) bare autocast + channels_last", bare, rss["bare_fast"], fractions["bare_autocast"]),
        *(
            (
                f"(3) train_trial, augment {m}",
                project[m],
                rss[f"project_{m}"],
                fractions[f"project_{m}"],
            )
            for m in project
        ),
    ]
    cpu = results["machine"]["cpu"]
    print(f"CPU: {cpu['model']} ({', '.join(cpu['flags']) or 'no AVX2'})")
    peaks = ", ".join(
        f"{k} {v / 1e9:.0f} GFLOP/s" for k, v in roofline["matmul_peak_flops"].items()
    )
    print(
        f"dense matmul peak: {peaks}; ResNet-18 training step "
        f"{roofline['training_flops_per_image'] / 1e9:.2f} GFLOP per image"
    )
    print(f"ResNet-18 {size}x{size}, batch {batch}, {device}, {torch.get_num_threads()} threads")
    print(f"{'loop':<36} {'images/s':>9} {'% of peak':>10} {'peak RSS GB':>12}")
    for name, value, peak, fraction in rows:
        print(f"{name:<36} {value:>9.1f} {fraction:>10.1%} {peak:>12.2f}")
    print(
        f"train_trial (none) at {fractions['project_none']:.1%} of the "
        f"{roofline['peak_dtype']['project_none']} matmul peak "
        f"(target >= {TARGET_PEAK_FRACTION:.0%})"
    )
    print(f"project (x5) / plain fp32: {speedup:.2f}x (target >= {TARGET_SPEEDUP}x)")
    print(
        f"data path overhead, (2) / (3 none) - 1: {overhead:+.1%} (target < {TARGET_OVERHEAD:.0%})"
    )
    print(f"written: {out}")


if __name__ == "__main__":
    main()
