"""Training benchmark: the project's inner loop against plain PyTorch loops, same model and batch.

    python benchmarks/train_bench.py [--steps 30] [--size 224] [--batch-size 16]

Measures, in one run, on ResNet-18 (``pretrained: none``, 1 input channel, 3 classes):

(1) a plain fp32 PyTorch loop on random float tensors: NCHW, no autocast, Adam; (1b) the same
    channels_last (what a CPU without native bf16 trains in:
    :func:`mammo_ray.learn.hardware.choose_compute`);
(2) a bare bf16 + channels_last loop on the same uint8 images the project loop trains on,
    normalised up front (autocast dtype from :func:`mammo_ray.learn.inference.autocast_dtype`);
    (2b) the same step ``torch.compile``d, its compilation timed apart (``--no-compile``
    skips it): the project trains eagerly unless this row beats (2);
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
>= 50% of that peak. The JSON records the CPU model and its speed flags. Then, per backbone
the search draws and per ``--backbone-sizes``, the planner's own throughput measurement
(:func:`mammo_ray.learn.throughput.measure_throughput`) and its fraction of the peak.
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
from mammo_ray.learn.inference import (
    autocast_dtype,
    compute_choice,
    cpu_threads,
    select_device,
)
from mammo_ray.learn.models import GRAY_MEAN, GRAY_STD, ModelConfig, build_model
from mammo_ray.learn.throughput import measure_throughput
from mammo_ray.learn.trial import train_trial
from mammo_ray.preprocess.pipeline import CacheManifest, PreprocessConfig
from mammo_ray.preprocess.prepared import PreparedData

TARGET_SPEEDUP = 2.5
TARGET_OVERHEAD = 0.10
TARGET_PEAK_FRACTION = 0.5
BACKBONES = ("resnet18", "densenet121", "vgg16_bn", "mobilenetv2_100", "mnasnet_100")
"""The paper's five families, as the default search space draws them."""
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


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _timed_loop(
    model: nn.Module,
    batches: list[tuple[torch.Tensor, torch.Tensor]],
    warmup: int,
    amp_dtype: torch.dtype | None,
    compiled: bool = False,
) -> tuple[float, float]:
    """(images/s of Adam steps over ``batches[warmup:]``, seconds of the ``warmup`` untimed
    steps before them); with ``compiled`` the step is ``torch.compile``d (compiled while
    warming up)."""
    device = next(model.parameters()).device
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    model.train()

    def step(x: torch.Tensor, y: torch.Tensor) -> None:
        with torch.autocast(
            device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None
        ):
            logits = model(x).float()
        loss = loss_fn(logits, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    run = torch.compile(step) if compiled else step
    begin = time.perf_counter()
    start, seen = begin, 0
    for index, (x, y) in enumerate(batches):
        if index == warmup:
            _sync(device)
            start = time.perf_counter()
        run(x, y)
        if index >= warmup:
            seen += len(y)
    _sync(device)
    return seen / (time.perf_counter() - start), start - begin


def plain_fp32(
    steps: int, warmup: int, batch: int, size: int, channels_last: bool = False
) -> float:
    """(1): float32 random tensors, no autocast; NCHW, or channels_last (what a CPU without
    native bf16 trains in)."""
    device = select_device()
    generator = torch.Generator().manual_seed(0)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    batches = [
        (
            torch.randn(batch, 1, size, size, generator=generator)
            .to(device)
            .contiguous(memory_format=memory_format),
            torch.randint(0, 3, (batch,), generator=generator).to(device),
        )
        for _ in range(warmup + steps)
    ]
    torch.manual_seed(0)
    return _timed_loop(_model(channels_last), batches, warmup, None)[0]


def bare_fast(
    data: PreparedData, steps: int, warmup: int, batch: int, size: int, compiled: bool = False
) -> tuple[float, float]:
    """(2): the project's images, normalised up front, channels_last, autocast; (images/s,
    warm-up seconds), the step ``torch.compile``d with ``compiled``."""
    device = select_device()
    images = torch.from_numpy(data.arrays[f"segmented_{size}"])
    labels = torch.from_numpy(data.labels)
    batches = []
    for step in range(warmup + steps):
        rows = torch.arange(step * batch, (step + 1) * batch) % len(images)
        x = ((images[rows].unsqueeze(1).float() / 255.0 - GRAY_MEAN) / GRAY_STD).to(device)
        batches.append((x.contiguous(memory_format=torch.channels_last), labels[rows].to(device)))
    torch.manual_seed(0)
    amp_dtype = autocast_dtype("auto", device)
    return _timed_loop(_model(channels_last=True), batches, warmup, amp_dtype, compiled)


def per_backbone(
    batch: int, sizes: tuple[int, ...], peaks: dict[str, float], fast: str
) -> list[dict[str, Any]]:
    """Training images/s of every backbone the search draws at each of ``sizes``
    (:func:`~mammo_ray.learn.throughput.measure_throughput`, the search planner's own
    measurement: 3 timed steps of the project's Fitter) and the fraction of the ``fast``
    dtype's matmul peak it reaches."""
    rows = []
    for backbone in BACKBONES:
        model = build_model(ModelConfig(backbone=backbone, pretrained="none"), num_classes=3)
        for size in sizes:
            flops = training_flops_per_image(model, (1, size, size))
            rate = measure_throughput(backbone, size, batch_size=batch, steps=3)
            rows.append(
                {
                    "backbone": backbone,
                    "input_size": size,
                    "training_flops_per_image": flops,
                    "train_images_per_s": rate.train_images_per_s,
                    "predict_images_per_s": rate.predict_images_per_s,
                    "fraction_of_peak": rate.train_images_per_s * flops / peaks[fast],
                }
            )
    return rows


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
    dtypes = {name: "fp32" if name.startswith("plain_fp32") else fast for name in images_per_s}
    return {
        "training_flops_per_image": flops,
        "matmul_peak_flops": peaks,
        "peak_dtype": dtypes,
        "achieved_flops": {k: v * flops for k, v in images_per_s.items()},
        "fraction_of_peak": {k: v * flops / peaks[dtypes[k]] for k, v in images_per_s.items()},
    }


def _loops(args: argparse.Namespace) -> dict[str, Any]:
    """Loops (1)-(3): images/s, peak RSS, the compiled step's warm-up and the histories."""
    batch, size = args.batch_size, args.size
    copies = 1 + TrainConfig().augment.copies
    same = synthetic_data(_records_for(args.steps, batch, 1), size)
    rates: dict[str, float] = {}
    rss: dict[str, float] = {}
    rates["plain_fp32"] = plain_fp32(args.steps, args.warmup, batch, size)
    rss["plain_fp32"] = _peak_rss_gb()
    rates["plain_fp32_channels_last"] = plain_fp32(args.steps, args.warmup, batch, size, True)
    rss["plain_fp32_channels_last"] = _peak_rss_gb()
    rates["bare_autocast"] = bare_fast(same, args.steps, args.warmup, batch, size)[0]
    rss["bare_autocast"] = _peak_rss_gb()
    compile_s = None
    if not args.no_compile:
        rates["bare_autocast_compiled"], compile_s = bare_fast(
            same, args.steps, args.warmup, batch, size, compiled=True
        )
        rss["bare_autocast_compiled"] = _peak_rss_gb()
    histories: dict[str, list[dict[str, Any]]] = {}
    for mode in ("none", "x5", "online"):
        data = (
            same if mode != "x5" else synthetic_data(_records_for(args.steps, batch, copies), size)
        )
        rates[f"project_{mode}"], histories[mode] = project_loop(data, mode, batch, size)
        rss[f"project_{mode}"] = _peak_rss_gb()
    return {"rates": rates, "rss": rss, "compile_warmup_s": compile_s, "histories": histories}


LOOP_NAMES = {
    "plain_fp32": "(1) plain fp32, NCHW",
    "plain_fp32_channels_last": "(1b) fp32, channels_last",
    "bare_autocast": "(2) bare autocast + channels_last",
    "bare_autocast_compiled": "(2b) the same, torch.compile",
    "project_none": "(3) train_trial, augment none",
    "project_x5": "(3) train_trial, augment x5",
    "project_online": "(3) train_trial, augment online",
}


def _print(results: dict[str, Any], out: Path) -> None:
    roofline, rates = results["roofline"], results["images_per_s"]
    fractions, rss = roofline["fraction_of_peak"], results["peak_rss_gb"]
    cpu, settings = results["machine"]["cpu"], results["settings"]
    print(f"CPU: {cpu['model']} ({', '.join(cpu['flags']) or 'no AVX2'})")
    peaks = ", ".join(
        f"{k} {v / 1e9:.0f} GFLOP/s" for k, v in roofline["matmul_peak_flops"].items()
    )
    print(
        f"dense matmul peak: {peaks}; ResNet-18 training step "
        f"{roofline['training_flops_per_image'] / 1e9:.2f} GFLOP per image"
    )
    print(
        f"ResNet-18 {settings['input_size']}x{settings['input_size']}, batch "
        f"{settings['batch_size']}, {results['machine']['device']}, "
        f"{results['machine']['threads']} threads, autocast {results['machine']['autocast']}"
    )
    print(f"{'loop':<36} {'images/s':>9} {'% of peak':>10} {'peak RSS GB':>12}")
    for key, name in LOOP_NAMES.items():
        if key in rates:
            print(f"{name:<36} {rates[key]:>9.1f} {fractions[key]:>10.1%} {rss[key]:>12.2f}")
    if results["compile_warmup_s"] is not None:
        print(f"torch.compile: {results['compile_warmup_s']:.0f} s of warm-up (compilation)")
    print(
        f"train_trial (none) at {fractions['project_none']:.1%} of the "
        f"{roofline['peak_dtype']['project_none']} matmul peak "
        f"(target >= {TARGET_PEAK_FRACTION:.0%})"
    )
    speedup, overhead = results["project_speedup_over_fp32"], results["data_path_overhead"]
    print(f"project (x5) / plain fp32: {speedup:.2f}x (target >= {TARGET_SPEEDUP}x)")
    print(
        f"data path overhead, (2) / (3 none) - 1: {overhead:+.1%} (target < {TARGET_OVERHEAD:.0%})"
    )
    if results["per_backbone"]:
        print(f"\nper backbone (the search planner's measurement), % of the {results['fast']} peak")
        print(f"{'backbone':<18} {'px':>4} {'GFLOP/img':>10} {'train img/s':>12} {'% of peak':>10}")
        for row in results["per_backbone"]:
            print(
                f"{row['backbone']:<18} {row['input_size']:>4} "
                f"{row['training_flops_per_image'] / 1e9:>10.2f} "
                f"{row['train_images_per_s']:>12.1f} {row['fraction_of_peak']:>10.1%}"
            )
    print(f"written: {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=30, help="timed steps per measurement")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps of loops (1), (2)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument(
        "--backbone-sizes",
        default="128,224",
        help="input sizes of the per-backbone table (comma-separated; empty: no table)",
    )
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile loop")
    parser.add_argument("--out", default="benchmarks/results/train.json")
    args = parser.parse_args()

    device = select_device()
    torch.set_num_threads(cpu_threads())
    loops = _loops(args)
    rates, project = (
        loops["rates"],
        {m: loops["rates"][f"project_{m}"] for m in ("none", "x5", "online")},
    )
    amp_dtype = autocast_dtype("auto", device)
    roofline = _roofline(rates, amp_dtype, args.size)
    fast = (
        "bf16"
        if amp_dtype == torch.bfloat16 and "bf16" in roofline["matmul_peak_flops"]
        else "fp32"
    )
    sizes = tuple(int(v) for v in args.backbone_sizes.split(",") if v.strip())
    results = {
        "machine": {
            "platform": platform.platform(),
            "cpu": cpu_info(),
            "device": str(device),
            "threads": torch.get_num_threads(),
            "autocast": str(amp_dtype),
            "compute_choice": compute_choice("auto", device).reason,
            "torch": torch.__version__,
        },
        "roofline": roofline,
        "target_peak_fraction": TARGET_PEAK_FRACTION,
        "settings": {
            "model": "resnet18, pretrained none, 1 channel, 3 classes",
            "input_size": args.size,
            "batch_size": args.batch_size,
            "steps": args.steps,
            "warmup_steps": args.warmup,
        },
        "images_per_s": rates,
        "compile_warmup_s": loops["compile_warmup_s"],
        "project_speedup_over_fp32": project["x5"] / rates["plain_fp32"],
        "target_speedup": TARGET_SPEEDUP,
        "data_path_overhead": rates["bare_autocast"] / project["none"] - 1.0,
        "target_overhead": TARGET_OVERHEAD,
        "peak_rss_gb": loops["rss"],
        "fast": fast,
        "per_backbone": per_backbone(args.batch_size, sizes, roofline["matmul_peak_flops"], fast),
        "project_histories": loops["histories"],
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    _print(results, out)


if __name__ == "__main__":
    main()
