"""``python -m mammo_ray.preprocess {run,quality}``: cached Ray Data pipeline, quality table."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from tqdm import tqdm

from mammo_ray.cli import add_data_argument, check_outputs, resolve_data, run_cli
from mammo_ray.config import apply_overrides, from_dict, load_yaml
from mammo_ray.preprocess.pipeline import PreprocessConfig, run_preprocessing
from mammo_ray.preprocess.quality_table import format_quality_table, quality_table


def load_preprocess_config(
    path: str | None, sizes: Sequence[int] | None, overrides: Sequence[str]
) -> PreprocessConfig:
    """PreprocessConfig from a YAML file (its ``preprocess:`` section when it has one)."""

    data = load_yaml(path) if path else {}
    where = str(path) if path else "preprocess"
    if "preprocess" in data:
        data, where = data["preprocess"] or {}, f"{where}: preprocess"
    data = apply_overrides(data, overrides)
    if sizes:
        data["sizes"] = list(sizes)
    return from_dict(PreprocessConfig, data, where=where)


def _run(args: argparse.Namespace) -> int:
    check_outputs(args, dirs=("out",))
    cfg = load_preprocess_config(args.config, args.size, args.set)
    bar: tqdm | None = None

    def progress(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, unit="img", desc="preprocess", file=sys.stderr)
        bar.update(done - bar.n)

    try:
        result = run_preprocessing(
            resolve_data(args.data),
            cfg,
            args.out,
            workers=args.workers,
            address=args.address,
            progress=progress,
        )
    finally:
        if bar is not None:
            bar.close()
    state = "reused" if result.reused else f"written in {result.seconds:.1f} s"
    print(f"cache {state}: {result.cache_dir} ({result.n_images} images, key {result.key})")
    return 0


def _quality(args: argparse.Namespace) -> int:
    check_outputs(args, dirs=(), files=("out",))
    cfg = load_preprocess_config(args.config, None, args.set)
    table = quality_table(
        resolve_data(args.data), cfg, limit=args.limit, workers=args.workers, address=args.address
    )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    table.write_csv(out)
    print(format_quality_table(table))
    print(f"written: {out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m mammo_ray.preprocess",
        description=(
            "Enhance (median -> LCM -> adaptive CLAHE -> Wiener) and segment (Otsu + morphology) "
            "MIAS films on Ray Data, caching the results for training; or measure enhancement "
            "quality (PSNR, SSIM, EME) and segmentation Dice."
        ),
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        add_data_argument(p)
        p.add_argument(
            "--config",
            help="YAML of preprocessing settings (or a training config with a preprocess: section)",
        )
        p.add_argument(
            "--set",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="override a preprocessing setting, e.g. enhance.method=clahe (repeatable)",
        )
        p.add_argument(
            "--workers",
            type=int,
            default=os.cpu_count() or 1,
            help="Ray Data workers, one CPU each (default: all CPUs)",
        )
        p.add_argument("--address", help="Ray cluster address (default: start a local Ray)")

    run = sub.add_parser("run", help="preprocess every image into a cache directory")
    common(run)
    run.add_argument("--out", default="runs/cache", help="cache root (default: runs/cache)")
    run.add_argument(
        "--size", type=int, action="append", help="output size in pixels (repeatable; default 224)"
    )
    run.set_defaults(func=_run)

    quality = sub.add_parser("quality", help="per-method PSNR/SSIM/EME table and Dice per class")
    common(quality)
    quality.add_argument(
        "--out", default="runs/quality.csv", help="CSV path (default: runs/quality.csv)"
    )
    quality.add_argument("--limit", type=int, help="use only the first N images")
    quality.set_defaults(func=_quality)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(run_cli(main))
