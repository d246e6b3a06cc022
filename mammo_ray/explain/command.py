"""``python -m mammo_ray.explain``: LIME explanations of a checkpoint's predictions.

    python -m mammo_ray.explain --checkpoint runs/train/model.pt --data PATH --out DIR \\
        [--images mdb001,mdb010 | --n 4] [--num-samples 500] [--seed 0] [--cache runs/cache]
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from mammo_ray.cli import check_outputs, data_options, resolve_data, text_table
from mammo_ray.data.mias import load_mias
from mammo_ray.errors import ConfigError
from mammo_ray.explain.circles import input_circles
from mammo_ray.explain.lime_images import explain_images, select_images
from mammo_ray.explain.score_map_figure import write_score_map_figures
from mammo_ray.learn.bilateral_maps import abnormal_maps
from mammo_ray.learn.checkpoint import load_trained
from mammo_ray.learn.config import TrainConfig
from mammo_ray.learn.inference import autocast_dtype
from mammo_ray.learn.trial import film_images, input_images
from mammo_ray.preprocess.prepared import PreparedData, prepare_data

__all__ = ["explain_checkpoint", "explain_films", "format_table"]


def explain_checkpoint(
    checkpoint: str | Path,
    data_path: str | Path,
    out_dir: str | Path,
    *,
    image_ids: Sequence[str] | None = None,
    n: int | None = None,
    num_samples: int = 500,
    seed: int = 0,
    cache_root: str | Path = "runs/cache",
    workers: int = 2,
    address: str | None = None,
    batch_size: int = 64,
) -> dict[str, Any]:
    """Explain a checkpoint's predictions on some images of a dataset (see :func:`explain_images`).

    The images are taken from the preprocessing cache of the checkpoint's own config (made
    if missing, :func:`mammo_ray.preprocess.prepared.prepare_data`), the films the model
    was trained on (:func:`~mammo_ray.learn.trial.input_images`); which ones,
    :func:`select_images`. The circles are mapped by :func:`input_circles`. A model of
    patches also gets ``<image_id>_scoremap.png`` per image (its score map over the film,
    :mod:`~mammo_ray.explain.score_map_figure`), listed under ``score_maps`` in the returned
    dict (``lime.json``'s content otherwise).

    Raises
    ------
    ConfigError : on a bad selection of images or ``num_samples`` < 1.
    CheckpointError : if the checkpoint is missing, unreadable or does not fit its model.
    """

    if image_ids is not None and n is not None:
        raise ConfigError("--images and --n exclude each other; pass one of them")
    if num_samples < 1:
        raise ConfigError(f"--num-samples must be >= 1, got {num_samples}")
    model, cfg, _ = load_trained(checkpoint)
    # Info.txt alone (no film decoded) checks the ids before any preprocessing is done.
    dataset = load_mias(data_path, scheme=cfg.preprocess.label_scheme)
    source = f"{data_path} under label scheme {cfg.preprocess.label_scheme}"
    ids = select_images(dataset.records, image_ids, n, source=source)
    data = prepare_data(cfg.preprocess, data_path, cache_root, workers=workers, address=address)
    row = {image_id: i for i, image_id in enumerate(data.image_ids)}
    return explain_films(
        model,
        cfg,
        data,
        [row[image_id] for image_id in ids],
        out_dir,
        num_samples=num_samples,
        seed=seed,
        batch_size=batch_size,
    )


def explain_films(
    model: nn.Module,
    cfg: TrainConfig,
    data: PreparedData,
    rows: Sequence[int],
    out_dir: str | Path,
    *,
    num_samples: int,
    seed: int,
    batch_size: int = 64,
) -> dict[str, Any]:
    """LIME on the films ``rows`` of ``data`` as the model of ``cfg`` reads them
    (:func:`~mammo_ray.learn.trial.input_images`, MIAS circles mapped by
    :func:`input_circles`), and for a model of patches each film's score map
    (``<image_id>_scoremap.png``, listed under ``score_maps``): ``lime.json``'s content."""
    rows = np.asarray(rows, np.int64)
    records = [data.manifest.records[i] for i in rows]
    circles = input_circles(records, cfg, data)
    result = explain_images(
        model,
        input_images(cfg, data, rows),
        records,
        out_dir,
        num_samples=num_samples,
        seed=seed,
        circles_in_input_coords=circles,
        batch_size=batch_size,
        precision=cfg.precision,
    )
    films = film_images(cfg, data, rows)
    device = next(model.parameters()).device
    maps = abnormal_maps(model, films, autocast_dtype(cfg.precision, device))
    if maps is None:
        return result
    ids = [r.image_id for r in records]
    return result | {"score_maps": write_score_map_figures(films, maps, ids, circles, out_dir)}


def format_table(result: Mapping[str, Any]) -> str:
    """``lime.json`` content as an aligned text table, one row per image, then the mean."""
    header = ("image", "true", "pred", "p(pred)", "positive weight in lesion")
    rows = []
    labels = list(result["labels"])
    for row in result["images"]:
        fraction = row["positive_weight_in_lesion"]
        rows.append(
            (
                row["image_id"],
                row["true"],
                row["pred"],
                f"{row['proba'][labels.index(row['pred'])]:.3f}",
                "-" if fraction is None else f"{fraction:.3f}",
            )
        )
    text = text_table(header, rows, "lllll")
    mean = result["mean_positive_weight_in_lesion"]
    scored = sum(row["positive_weight_in_lesion"] is not None for row in result["images"])
    text.append(
        "mean positive weight in lesion: "
        + ("- (no image with a circle)" if mean is None else f"{mean:.3f} over {scored} images")
    )
    return "\n".join(text)


def _image_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mammo_ray.explain",
        description="LIME explanations of a checkpoint's predictions (the paper's Figure 8): "
        "one PNG per image and lime.json with the share of positive LIME weight inside the "
        "MIAS abnormality circles; for a patch model also its score map over each film. "
        "Cost: about num-samples forward passes per image.",
        parents=[data_options()],
    )
    parser.add_argument("--checkpoint", required=True, help="model.pt written by training")
    parser.add_argument(
        "--images", type=_image_list, help="comma-separated ids, e.g. mdb001,mdb010"
    )
    parser.add_argument(
        "--n", type=int, help="explain the first N films with an abnormality circle (default 4)"
    )
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--num-samples", type=int, default=500, help="LIME samples per image")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=64, help="images per forward pass")
    args = parser.parse_args(argv)
    check_outputs(args)
    if args.batch_size < 1:
        raise ConfigError(f"--batch-size must be >= 1, got {args.batch_size}")
    result = explain_checkpoint(
        args.checkpoint,
        resolve_data(args.data),
        args.out,
        image_ids=args.images,
        n=args.n,
        num_samples=args.num_samples,
        seed=args.seed,
        cache_root=args.cache,
        workers=args.workers,
        address=args.address,
        batch_size=args.batch_size,
    )
    print(format_table(result))
    print(f"written: {Path(args.out) / 'lime.json'} and {len(result['images'])} LIME PNGs")
    if result.get("score_maps"):
        print(f"score maps beside them: {', '.join(result['score_maps'])}")
    return 0
