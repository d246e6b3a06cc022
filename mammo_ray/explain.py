"""LIME explanations of a trained classifier, in the layout of the paper's Figure 8.

    python -m mammo_ray.explain --checkpoint runs/train/model.pt --data PATH --out DIR \\
        [--images mdb001,mdb010 | --n 4] [--num-samples 500] [--seed 0] [--cache runs/cache]

For each image LIME (Ribeiro, Singh, Guestrin, "Why Should I Trust You? Explaining the
Predictions of Any Classifier", KDD 2016) splits the model input into superpixels, draws
``num_samples`` random on/off patterns over them, predicts every perturbed image and fits a
weighted ridge regression of the predicted class's probability on the patterns; a
superpixel's coefficient is its weight for (> 0) or against (< 0) that class.

Choices made here, for mammograms:

* Superpixels: SLIC (Achanta et al., "SLIC Superpixels Compared to State-of-the-Art
  Superpixel Methods", IEEE TPAMI 34(11), 2012) on the gray image scaled to [0, 1]
  (:func:`slic_superpixels`). Pixels that are exactly 0 -- the background that segmentation
  zeroed and the padding of a ``segmented_*`` input -- are masked out of SLIC and form one
  superpixel of their own, so the superpixels are spent on the breast.
* Hidden superpixels are set to 0 (black, the film background). LIME's default, each
  superpixel's own mean, barely changes a SLIC superpixel, which follows intensity edges:
  a bright mass hidden that way stays a bright mass.
* The explained class is the model's prediction on the unperturbed image.

Lesion overlap (:func:`positive_weight_in_circles`): where MIAS gives abnormality circles,
the share of the positive LIME weight that falls inside them, each superpixel's weight spread
evenly over its pixels. The circles are mapped from the 1024 x 1024 film to the model input
by :func:`map_circles`; for ``segmented_*`` inputs the breast bounding box is recomputed from
the original film (:func:`input_circles`), as the cache does not store it.

Cost: one explanation is ``num_samples`` forward passes of the model, ``batch_size`` images
at a time under bf16 autocast where :func:`mammo_ray.train.autocast_dtype` allows, plus
LIME's own Python loop that builds each perturbed image. Measured for ResNet-18 at 224 px
with 500 samples on a shared 2-core CPU (bf16, about 90 images/s): 7.3 s per image, of
which 5.6 s forward passes and about 1.2 s LIME's loop; on a GPU the loop dominates. LIME
draws a tqdm progress bar per image on stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Circle
from torch import nn

from mammo_ray.cli import add_data_argument, resolve_data, run_cli
from mammo_ray.data.mias import LABELS, MIAS_IMAGE_SHAPE, MiasDataset, MiasRecord
from mammo_ray.errors import ConfigError

if TYPE_CHECKING:
    from mammo_ray.train import TrainConfig

__all__ = [
    "slic_superpixels",
    "map_circles",
    "input_circles",
    "positive_weight_in_circles",
    "explanation_figure",
    "explain_images",
    "select_images",
    "explain_checkpoint",
    "format_table",
    "main",
]

_Circles = list[tuple[float, float, float]]

_SUPPORT_COLOUR = (1.0, 0.85, 0.0)
_AGAINST_COLOUR = (0.0, 0.75, 1.0)
_OVERLAY_ALPHA = 0.45


def slic_superpixels(
    gray: np.ndarray,
    *,
    n_segments: int = 100,
    compactness: float = 0.05,
    sigma: float = 1.0,
) -> np.ndarray:
    """SLIC superpixels of a gray uint8 image, labelled ``0 .. K-1`` without gaps.

    ``skimage.segmentation.slic(gray / 255, n_segments, compactness, sigma,
    channel_axis=None, mask=gray > 0)``: SLIC clusters pixels by ``D = sqrt(d_c^2 + (d_s /
    S)^2 m^2)``, ``d_c`` the intensity difference, ``d_s`` the spatial distance, ``S`` the
    grid step and ``m`` the compactness (Achanta et al., IEEE TPAMI 34(11), 2012). Pixels
    equal to 0 (zeroed background, padding) are left out of SLIC and become one label; an
    all-black image is segmented without a mask. LIME needs labels ``0 .. K-1``, so they are
    renumbered in order.

    Parameters
    ----------
    gray : uint8 (H, W).
    n_segments : approximate number of superpixels, >= 1.
    compactness : ``m`` for intensities in [0, 1]; larger gives squarer superpixels, > 0.
    sigma : width of the Gaussian smoothing before clustering, >= 0.

    Returns
    -------
    labels : int64 (H, W).

    Raises
    ------
    ValueError : if ``gray`` is not 2-D uint8 or a parameter is out of range.
    """
    from skimage.segmentation import slic

    if not isinstance(gray, np.ndarray) or gray.dtype != np.uint8 or gray.ndim != 2:
        raise ValueError(f"gray must be a 2-D uint8 array, got {_describe(gray)}")
    if n_segments < 1:
        raise ValueError(f"n_segments must be >= 1, got {n_segments}")
    if not compactness > 0:
        raise ValueError(f"compactness must be > 0, got {compactness}")
    if sigma < 0:
        raise ValueError(f"sigma must be >= 0, got {sigma}")
    tissue = gray > 0
    labels = slic(
        gray.astype(np.float64) / 255.0,
        n_segments=n_segments,
        compactness=compactness,
        sigma=sigma,
        channel_axis=None,
        start_label=1,
        mask=tissue if tissue.any() else None,
    )
    _, contiguous = np.unique(labels, return_inverse=True)
    return contiguous.reshape(gray.shape).astype(np.int64)


def map_circles(
    circles: Sequence[tuple[float, float, float]],
    size: int,
    *,
    bbox: tuple[int, int, int, int] | None = None,
    shape: tuple[int, int] = MIAS_IMAGE_SHAPE,
) -> _Circles:
    """Map circles ``(row, col, radius)`` from the film to an ``size x size`` model input.

    The input is ``resize_square(film[row0:row1, col0:col1], size)`` (see
    :func:`mammo_ray.preprocess.pipeline.resize_square`): the crop, zero-padded to a centred
    square of side ``L = max(h, w)`` (``top = (L - h) // 2``, ``left = (L - w) // 2``), then
    scaled by ``s = size / L``. With pixel centres mapped as cv2.resize maps them::

        row' = (row - row0 + top + 0.5) * s - 0.5
        col' = (col - col0 + left + 0.5) * s - 0.5
        radius' = radius * s

    Parameters
    ----------
    circles : (row, col, radius) in film pixels, row/col from the top-left corner.
    size : side of the model input, >= 1.
    bbox : half-open (row0, row1, col0, col1) of the crop, for ``segmented_*`` inputs
        (:attr:`mammo_ray.preprocess.segment.Segmentation.bbox`); None for ``enhanced_*``
        inputs, which are the whole film.
    shape : (height, width) of the film.

    Returns
    -------
    circles : (row, col, radius) in model-input pixels.

    Raises
    ------
    ValueError : if ``size`` < 1 or ``bbox`` is empty or leaves the film.
    """
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    height, width = shape
    row0, row1, col0, col1 = (0, height, 0, width) if bbox is None else bbox
    if not (0 <= row0 < row1 <= height and 0 <= col0 < col1 <= width):
        raise ValueError(f"bbox {bbox} is empty or outside a film of shape {tuple(shape)}")
    crop_h, crop_w = row1 - row0, col1 - col0
    side = max(crop_h, crop_w)
    top, left = (side - crop_h) // 2, (side - crop_w) // 2
    scale = size / side
    return [
        (
            (row - row0 + top + 0.5) * scale - 0.5,
            (col - col0 + left + 0.5) * scale - 0.5,
            radius * scale,
        )
        for row, col, radius in circles
    ]


def input_circles(
    dataset: MiasDataset, records: Sequence[MiasRecord], cfg: TrainConfig
) -> list[_Circles]:
    """The MIAS circles of each record, in the coordinates of the model input of ``cfg``.

    ``cfg`` is the model's training config. ``enhanced_<S>`` inputs are the whole film
    scaled; for ``segmented_<S>`` inputs each film with circles is read from ``dataset``
    and segmented again, ``segment(film, enhance(film, cfg.preprocess.enhance),
    cfg.preprocess.segment).bbox``, exactly as the preprocessing cache was made. Records
    without circles give ``[]`` and are not read.
    """
    from mammo_ray.preprocess.enhance import enhance
    from mammo_ray.preprocess.segment import segment

    shape = dataset.image_shape or MIAS_IMAGE_SHAPE
    film_circles = {r.image_id: [(c.row, c.col, c.radius) for c in r.rois] for r in records}
    bboxes: dict[str, tuple[int, int, int, int] | None] = dict.fromkeys(film_circles)
    with_circles = [image_id for image_id, circles in film_circles.items() if circles]
    if cfg.segmentation and with_circles:
        for record, film in dataset.iter_images(with_circles):
            seg = segment(film, enhance(film, cfg.preprocess.enhance), cfg.preprocess.segment)
            bboxes[record.image_id] = seg.bbox
    return [
        map_circles(film_circles[r.image_id], cfg.input_size, bbox=bboxes[r.image_id], shape=shape)
        for r in records
    ]


def positive_weight_in_circles(
    segments: np.ndarray,
    weights: Mapping[int, float],
    circles: Sequence[tuple[float, float, float]],
) -> float | None:
    """Share of the positive LIME weight that lies inside the circles.

    Each superpixel ``k`` spreads its weight ``w_k`` evenly over its ``|S_k|`` pixels; with
    ``C`` the union of the discs (:func:`mammo_ray.preprocess.quality.circles_mask`)::

        f = sum_k max(w_k, 0) |S_k ∩ C| / |S_k|  /  sum_k max(w_k, 0)

    Parameters
    ----------
    segments : int (H, W) superpixel labels.
    weights : superpixel label -> LIME weight; labels not listed weigh 0.
    circles : (row, col, radius) in the pixels of ``segments``.

    Returns
    -------
    f : float in [0, 1]; None when there is no circle or no positive weight.

    Raises
    ------
    ValueError : if ``segments`` is not a 2-D integer array or a weighted label is not in it.
    """
    from mammo_ray.preprocess.quality import circles_mask

    if (
        not isinstance(segments, np.ndarray)
        or segments.ndim != 2
        or not np.issubdtype(segments.dtype, np.integer)
    ):
        raise ValueError(f"segments must be a 2-D integer array, got {_describe(segments)}")
    if segments.size and segments.min() < 0:
        raise ValueError("segments must hold labels >= 0")
    sizes = np.bincount(segments.ravel(), minlength=1)
    absent = [k for k in weights if not 0 <= k < len(sizes) or sizes[k] == 0]
    if absent:
        raise ValueError(f"weights name superpixel {absent[0]}, which is not in segments")
    circles = list(circles)
    positive = {k: w for k, w in weights.items() if w > 0}
    if not circles or not positive:
        return None
    inside = np.bincount(segments[circles_mask(segments.shape, circles)], minlength=len(sizes))
    total = sum(positive.values())
    return float(sum(w * inside[k] / sizes[k] for k, w in positive.items()) / total)


def _describe(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return f"{value.dtype} array of shape {value.shape}"
    return type(value).__name__


def _overlay(gray: np.ndarray, mask: np.ndarray, colour: tuple[float, float, float]) -> np.ndarray:
    """RGB in [0, 1]: ``gray`` with ``mask`` tinted by ``colour`` and its outline drawn."""
    from skimage.segmentation import mark_boundaries

    rgb = np.repeat(gray[..., None].astype(np.float64) / 255.0, 3, axis=2)
    rgb[mask] = (1 - _OVERLAY_ALPHA) * rgb[mask] + _OVERLAY_ALPHA * np.asarray(colour)
    return mark_boundaries(rgb, mask.astype(np.int64), color=colour, mode="inner")


def explanation_figure(
    image: np.ndarray,
    explanation: Any,
    label: int,
    *,
    title: str,
    circles: Sequence[tuple[float, float, float]] = (),
    num_features: int = 5,
    figsize: tuple[float, float] = (12.0, 3.6),
    dpi: int = 100,
) -> Figure:
    """The paper's Figure 8 for one image: four panels in a row.

    (a) the model input; (b) its superpixels; (c) the ``num_features`` superpixels with the
    largest positive weight for class ``label``
    (``get_image_and_mask(label, positive_only=True)``); (d) the superpixels against it, those
    of weight < 0 among the ``num_features`` largest ``|w|``
    (``get_image_and_mask(label, positive_only=False)``, mask -1). MIAS circles are drawn as
    dashed red outlines on (a), (c) and (d).

    Parameters
    ----------
    image : uint8 (H, W), the model input that was explained.
    explanation : ``lime.lime_image.ImageExplanation`` of ``image`` holding ``label``.
    label : class index explained.
    title : figure title. circles : (row, col, radius) in input pixels.
    num_features : superpixels shown in (c) and considered in (d), >= 1.
    figsize : (width, height) in inches. dpi : pixels per inch.

    Raises
    ------
    ValueError : if ``image`` is not 2-D uint8 of the explanation's shape or
        ``num_features`` < 1.
    """
    from skimage.segmentation import mark_boundaries

    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 2:
        raise ValueError(f"image must be a 2-D uint8 array, got {_describe(image)}")
    if image.shape != explanation.segments.shape:
        raise ValueError(
            f"image shape {image.shape} differs from the explanation's {explanation.segments.shape}"
        )
    if num_features < 1:
        raise ValueError(f"num_features must be >= 1, got {num_features}")
    _, support = explanation.get_image_and_mask(
        label, positive_only=True, num_features=num_features, hide_rest=False
    )
    _, signed = explanation.get_image_and_mask(
        label, positive_only=False, num_features=num_features, hide_rest=False
    )
    n_superpixels = len(np.unique(explanation.segments))
    panels = [
        ("(a) input", np.repeat(image[..., None], 3, axis=2), True),
        (
            f"(b) superpixels ({n_superpixels})",
            mark_boundaries(image, explanation.segments, color=_SUPPORT_COLOUR),
            False,
        ),
        ("(c) supporting the prediction", _overlay(image, support > 0, _SUPPORT_COLOUR), True),
        ("(d) against the prediction", _overlay(image, signed < 0, _AGAINST_COLOUR), True),
    ]
    figure = Figure(figsize=figsize, dpi=dpi, layout="constrained")
    for axes, (name, rgb, with_circles) in zip(figure.subplots(1, 4), panels, strict=True):
        axes.imshow(rgb, interpolation="nearest")
        if with_circles:
            for row, col, radius in circles:
                axes.add_patch(
                    Circle((col, row), radius, fill=False, color="red", linestyle="--", lw=1)
                )
        axes.set_title(name, fontsize=9)
        axes.set_axis_off()
    figure.suptitle(title, fontsize=10)
    return figure


def _gray_batch(batch: np.ndarray) -> np.ndarray:
    """LIME's (N, H, W, 3) float64 images back to the model's (N, H, W) uint8: channel 0."""
    return np.clip(np.rint(batch[..., 0]), 0, 255).astype(np.uint8)


def _check_inputs(
    images: np.ndarray,
    records: Sequence[MiasRecord],
    circles: Sequence[Sequence[tuple[float, float, float]]] | None,
    labels: Sequence[str],
    num_samples: int,
    batch_size: int,
) -> None:
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 3:
        raise ValueError(f"images must be a (N, S, S) uint8 array, got {_describe(images)}")
    if len(records) != len(images):
        raise ValueError(f"{len(images)} images but {len(records)} records")
    if circles is not None and len(circles) != len(images):
        raise ValueError(f"{len(images)} images but {len(circles)} lists of circles")
    unknown = sorted({r.label for r in records} - set(labels))
    if unknown:
        raise ValueError(f"record label {unknown[0]!r} is not one of the labels {list(labels)}")
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")


def explain_images(
    model: nn.Module,
    images: np.ndarray,
    records: Sequence[MiasRecord],
    out_dir: str | Path,
    *,
    num_samples: int = 500,
    seed: int = 0,
    circles_in_input_coords: Sequence[Sequence[tuple[float, float, float]]] | None = None,
    labels: Sequence[str] = LABELS,
    batch_size: int = 64,
    n_segments: int = 100,
    compactness: float = 0.05,
    sigma: float = 1.0,
    num_features: int = 5,
    precision: str = "auto",
) -> dict[str, Any]:
    """Explain each image with LIME; write one PNG per image and ``lime.json`` to ``out_dir``.

    Per image: predict it (:func:`mammo_ray.train.predict`), explain the predicted class
    with ``LimeImageExplainer(random_state=seed).explain_instance(image, classifier_fn,
    labels=(pred,), top_labels=None, hide_color=0, num_samples, batch_size,
    segmentation_fn=slic_superpixels)``, draw :func:`explanation_figure` to
    ``<image_id>_lime.png`` and score :func:`positive_weight_in_circles`. Every image gets a
    fresh explainer with the same seed, so its explanation does not depend on the others.

    Parameters
    ----------
    model : classifier of (B, 1, S, S) normalised images; left in eval mode on its device.
    images : uint8 (N, S, S), the model inputs (a cached ``enhanced_<S>`` or
        ``segmented_<S>`` array).
    records : the N MIAS records, for the image id and the true label.
    out_dir : folder for the PNGs and ``lime.json``; created if missing.
    num_samples : LIME perturbations (model forward passes) per image.
    seed : seeds LIME's sampling and its ridge regression.
    circles_in_input_coords : per image, the abnormality circles (row, col, radius) in input
        pixels (:func:`input_circles`); None scores no image.
    labels : class names in logit order.
    batch_size : images per forward pass.
    n_segments, compactness, sigma : SLIC settings (:func:`slic_superpixels`).
    num_features : superpixels shown in panels (c) and (d).
    precision : ``"auto"``, ``"bf16"`` or ``"fp32"`` (:func:`mammo_ray.train.autocast_dtype`).

    Returns
    -------
    result : the content of ``lime.json``::

        {"images": [{"image_id", "true", "pred", "proba": [p per label],
                     "positive_weight_in_lesion": f | None, "png": file name}],
         "mean_positive_weight_in_lesion": mean of the non-None f | None,
         "num_samples", "seed", "labels", "hide_color": 0, "segmentation": "slic(...)"}

    Raises
    ------
    ValueError : on images that are not (N, S, S) uint8, lengths that differ, a record label
        not in ``labels``, or ``num_samples`` / ``batch_size`` < 1.
    """
    from lime.lime_image import LimeImageExplainer

    from mammo_ray.train import autocast_dtype, predict

    _check_inputs(images, records, circles_in_input_coords, labels, num_samples, batch_size)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    device = next(model.parameters()).device
    amp_dtype = autocast_dtype(precision, device)
    model.eval()

    def probabilities(gray: np.ndarray) -> np.ndarray:
        return predict(
            model,
            torch.from_numpy(gray),
            batch_size=batch_size,
            device=device,
            amp_dtype=amp_dtype,
        )

    def classifier_fn(batch: np.ndarray) -> np.ndarray:
        return probabilities(_gray_batch(batch))

    def segmentation_fn(rgb: np.ndarray) -> np.ndarray:
        gray = _gray_batch(rgb[None])[0]
        return slic_superpixels(gray, n_segments=n_segments, compactness=compactness, sigma=sigma)

    rows = []
    for index, (image, record) in enumerate(zip(images, records, strict=True)):
        proba = probabilities(image[None])[0]
        pred = int(np.argmax(proba))
        explanation = LimeImageExplainer(random_state=seed).explain_instance(
            image.astype(np.float64),
            classifier_fn,
            labels=(pred,),
            top_labels=None,
            hide_color=0,
            num_samples=num_samples,
            batch_size=batch_size,
            segmentation_fn=segmentation_fn,
        )
        circles = [] if circles_in_input_coords is None else list(circles_in_input_coords[index])
        fraction = positive_weight_in_circles(
            explanation.segments, dict(explanation.local_exp[pred]), circles
        )
        true = labels.index(record.label)
        title = (
            f"{record.image_id}: predicted {labels[pred]} (p={proba[pred]:.2f}), "
            f"true {labels[true]} (p={proba[true]:.2f})"
        )
        if fraction is not None:
            title += f"; positive weight in lesion {fraction:.2f}"
        png = f"{record.image_id}_lime.png"
        figure = explanation_figure(
            image, explanation, pred, title=title, circles=circles, num_features=num_features
        )
        figure.savefig(out / png, format="png", dpi=figure.dpi)
        rows.append(
            {
                "image_id": record.image_id,
                "true": labels[true],
                "pred": labels[pred],
                "proba": [float(p) for p in proba],
                "positive_weight_in_lesion": fraction,
                "png": png,
            }
        )
    scored = [row["positive_weight_in_lesion"] for row in rows]
    scored = [f for f in scored if f is not None]
    result = {
        "images": rows,
        "mean_positive_weight_in_lesion": float(np.mean(scored)) if scored else None,
        "num_samples": num_samples,
        "seed": seed,
        "labels": list(labels),
        "hide_color": 0,
        "segmentation": (
            f"slic(n_segments={n_segments}, compactness={compactness}, sigma={sigma}, "
            "channel_axis=None, mask=image>0)"
        ),
    }
    (out / "lime.json").write_text(json.dumps(result, indent=1))
    return result


def select_images(
    records: Sequence[MiasRecord],
    image_ids: Sequence[str] | None,
    n: int | None,
    *,
    source: str = "the data",
) -> list[str]:
    """The ids to explain: ``image_ids`` as given, or the first ``n`` films with a circle.

    With neither, ``n = 4``. ``n`` picks films in id order among those with an abnormality
    circle (the ones the lesion overlap scores), then, if fewer, the others.

    Raises
    ------
    ConfigError : if both are given, ``n`` < 1, the list is empty, or an id is not among
        ``records`` (named, with ``source``).
    """
    if image_ids is not None and n is not None:
        raise ConfigError("--images and --n exclude each other; pass one of them")
    known = {r.image_id for r in records}
    if image_ids is not None:
        if not image_ids:
            raise ConfigError("--images: no image id given")
        unknown = [image_id for image_id in image_ids if image_id not in known]
        if unknown:
            raise ConfigError(f"--images: unknown image id {unknown[0]!r} (not in {source})")
        return list(dict.fromkeys(image_ids))
    count = 4 if n is None else n
    if count < 1:
        raise ConfigError(f"--n must be >= 1, got {count}")
    ordered = sorted(records, key=lambda r: (not r.rois, r.image_id))
    return [r.image_id for r in ordered[:count]]


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
    if missing, :func:`mammo_ray.preprocess.pipeline.run_preprocessing`), the array the model
    was trained on (``cfg.input_array``); which ones, :func:`select_images`. The circles are
    mapped by :func:`input_circles`.

    Raises
    ------
    ConfigError : on a bad selection of images or ``num_samples`` < 1.
    CheckpointError : if the checkpoint is missing, unreadable or does not fit its model.
    """
    from mammo_ray.config import from_dict
    from mammo_ray.data.mias import load_mias
    from mammo_ray.models import load_checkpoint, model_from_checkpoint
    from mammo_ray.preprocess.pipeline import load_cache, run_preprocessing
    from mammo_ray.train import TrainConfig, select_device

    if image_ids is not None and n is not None:
        raise ConfigError("--images and --n exclude each other; pass one of them")
    if num_samples < 1:
        raise ConfigError(f"--num-samples must be >= 1, got {num_samples}")
    ckpt = load_checkpoint(checkpoint)
    cfg = from_dict(TrainConfig, ckpt.config, where=f"{checkpoint}: config")
    dataset = load_mias(data_path, scheme=cfg.preprocess.label_scheme)
    source = f"{data_path} under label scheme {cfg.preprocess.label_scheme}"
    ids = select_images(dataset.records, image_ids, n, source=source)
    result = run_preprocessing(
        data_path, cfg.preprocess, cache_root, workers=workers, address=address
    )
    arrays, manifest = load_cache(result.cache_dir)
    row = {image_id: i for i, image_id in enumerate(manifest.image_ids)}
    rows = [row[image_id] for image_id in ids]
    records = [manifest.records[i] for i in rows]
    model = model_from_checkpoint(ckpt).to(select_device())
    model = model.to(memory_format=torch.channels_last)
    return explain_images(
        model,
        arrays[cfg.input_array][rows],
        records,
        out_dir,
        num_samples=num_samples,
        seed=seed,
        circles_in_input_coords=input_circles(dataset, records, cfg),
        labels=ckpt.labels,
        batch_size=batch_size,
        precision=cfg.precision,
    )


def format_table(result: Mapping[str, Any]) -> str:
    """``lime.json`` content as an aligned text table, one row per image, then the mean."""
    header = ("image", "true", "pred", "p(pred)", "positive weight in lesion")
    lines = [header]
    labels = list(result["labels"])
    for row in result["images"]:
        fraction = row["positive_weight_in_lesion"]
        lines.append(
            (
                row["image_id"],
                row["true"],
                row["pred"],
                f"{row['proba'][labels.index(row['pred'])]:.3f}",
                "-" if fraction is None else f"{fraction:.3f}",
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    text = [
        "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
        for line in lines
    ]
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
        "MIAS abnormality circles. Cost: about num-samples forward passes per image.",
    )
    parser.add_argument("--checkpoint", required=True, help="model.pt written by training")
    add_data_argument(parser)
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
    parser.add_argument("--cache", default="runs/cache", help="preprocessing cache root")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--address", help="Ray cluster address (default: local Ray)")
    args = parser.parse_args(argv)
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
    print(f"written: {Path(args.out) / 'lime.json'} and {len(result['images'])} PNGs")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
