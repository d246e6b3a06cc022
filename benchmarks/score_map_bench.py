"""Film-level inference benchmark: the patch model's score maps against the whole-image model.

    python benchmarks/score_map_bench.py [--films 16] [--out benchmarks/results/score_maps.json]

On synthetic films (a breast of noisy tissue over half of each film, background 0, as
``input.mode: patch`` reads them), ResNet-18 (``pretrained: none``, 1 channel, 3 classes) in
eval mode with the autocast the project picks on this machine:

(1) the whole-image model: one 224 px film per forward pass, batches of 16 (the baseline);
(2) :class:`~mammo_ray.learn.score_maps.ScoreMapModel` (``predict_maps``): every window inside
    the breast of a film at 512 px (patch 128, stride 64; the shipped ``patch.yaml``) and at
    full resolution, 1024 px (patch 128 at strides 64 and 32; patch 256 at stride 128);
(3) :class:`~mammo_ray.learn.bilateral_maps.BilateralScoreMapModel` (``input.mode:
    patch+bilateral``, the shipped ``recommended.yaml``): each film beside its mirrored partner
    at 1024 px, patch 128, stride 64, so both films are mapped for every film scored.

Films per second after one warm-up batch. Target: full-resolution score maps (ResNet-18, patch
128, stride 64) >= 3 films/s on a 2-core CPU. Each arm also gives its FLOPs per film (counted
by :func:`~mammo_ray.learn.hardware.counted_flops`) and its achieved FLOP/s as a fraction of the
dense matmul peak measured in the same run, in the dtype the autocast computes in. Prints a
table and writes JSON with the CPU model and flags, so figures from different machines can be
told apart.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from mammo_ray.learn.bilateral_maps import BilateralScoreMapModel, pair_films
from mammo_ray.learn.hardware import counted_flops, cpu_info, matmul_peak, native_bf16
from mammo_ray.learn.inference import autocast_dtype, cpu_threads, predict, select_device
from mammo_ray.learn.models import ModelConfig, build_model
from mammo_ray.learn.score_maps import ScoreMapModel, predict_maps

TARGET_FILMS_PER_S = 3.0
SETTINGS = ((512, 128, 64), (1024, 128, 64), (1024, 128, 32), (1024, 256, 128))
"""(film size, patch size, stride) of the score-map arms."""


def synthetic_films(n: int, size: int, seed: int = 0) -> np.ndarray:
    """(n, size, size) uint8: smooth noisy tissue in a half disc against the left edge."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[:size, :size]
    breast = (rows - size / 2) ** 2 + cols**2 <= (0.45 * size) ** 2
    films = []
    for _ in range(n):
        tissue = cv2.GaussianBlur(rng.normal(0, 1, (size, size)).astype(np.float32), (0, 0), 3)
        films.append(np.where(breast, np.clip(110 + 30 * tissue, 1, 255), 0).astype(np.uint8))
    return np.stack(films)


def _measure(run, films: np.ndarray, peak: float) -> dict[str, float]:
    """Films/s of ``run`` after a warm-up on two films; its FLOPs per film (counted on the
    first film) and the achieved FLOP/s as a fraction of ``peak``."""
    run(films[:2])
    start = time.perf_counter()
    run(films)
    rate = len(films) / (time.perf_counter() - start)
    flops = counted_flops(lambda: run(films[:1]))
    return {"films_per_s": rate, "flops_per_film": flops, "fraction_of_peak": rate * flops / peak}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--films", type=int, default=16, help="films timed per arm")
    parser.add_argument("--out", default="benchmarks/results/score_maps.json")
    args = parser.parse_args()

    device = select_device()
    torch.set_num_threads(cpu_threads())
    amp = autocast_dtype("auto", device)
    torch.manual_seed(0)
    network = build_model(ModelConfig(backbone="resnet18", pretrained="none")).to(device).eval()
    network = network.to(memory_format=torch.channels_last)
    cpu = cpu_info()
    peak_dtype = "bf16" if amp == torch.bfloat16 and native_bf16(cpu["flags"]) else "fp32"
    peak = matmul_peak(torch.bfloat16 if peak_dtype == "bf16" else torch.float32)
    whole = synthetic_films(args.films, 224)
    rows = [
        {"arm": "whole image, 224 px"}
        | _measure(
            lambda x: predict(network, torch.from_numpy(x), batch_size=16, amp_dtype=amp),
            whole,
            peak,
        )
    ]
    for size, patch, stride in SETTINGS:
        films = synthetic_films(args.films, size)
        model = ScoreMapModel(network, patch, stride)
        windows = int(model.maps(torch.zeros(1, 1, size, size))[0].shape[-1]) ** 2
        measured = _measure(lambda x, m=model: predict_maps(m, x, amp_dtype=amp), films, peak)
        rows.append(
            {
                "arm": f"score maps, {size} px, patch {patch}, stride {stride}",
                "windows_per_film": windows,
            }
            | measured
        )
    pairs = pair_films(synthetic_films(args.films, 1024), np.arange(args.films)[::-1].copy())
    bilateral = BilateralScoreMapModel(network, 128, 64)
    rows.append(
        {"arm": "film pairs (patch+bilateral), 1024 px, patch 128, stride 64"}
        | _measure(
            lambda x: predict(bilateral, torch.from_numpy(x), batch_size=4, amp_dtype=amp),
            pairs,
            peak,
        )
    )
    full = next(r for r in rows if r["arm"].startswith("score maps, 1024 px, patch 128, stride 64"))
    results = {
        "machine": {
            "cpu": cpu,
            "platform": platform.platform(),
            "device": str(device),
            "threads": torch.get_num_threads(),
            "autocast": str(amp),
            "torch": torch.__version__,
        },
        "films": args.films,
        "matmul_peak_flops": {peak_dtype: peak},
        "arms": rows,
        "target_films_per_s": TARGET_FILMS_PER_S,
        "target_met": full["films_per_s"] >= TARGET_FILMS_PER_S,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"CPU: {cpu['model']} ({', '.join(cpu['flags']) or 'no AVX2'})")
    print(f"dense matmul peak ({peak_dtype}): {peak / 1e9:.0f} GFLOP/s")
    print(f"{'arm':62s} {'windows':>8s} {'films/s':>8s} {'GFLOP/film':>11s} {'% of peak':>10s}")
    for row in rows:
        print(
            f"{row['arm']:62s} {row.get('windows_per_film', ''):>8} {row['films_per_s']:8.2f} "
            f"{row['flops_per_film'] / 1e9:11.2f} {row['fraction_of_peak']:10.1%}"
        )
    verdict = "met" if results["target_met"] else "MISSED"
    print(f"target: full-resolution score maps >= {TARGET_FILMS_PER_S} films/s: {verdict}")
    print(f"written: {out}")


if __name__ == "__main__":
    main()
