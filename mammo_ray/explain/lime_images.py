"""LIME explanations of a trained classifier, in the layout of the paper's Figure 8.

    python -m mammo_ray.explain --checkpoint runs/train/model.pt --data PATH --out DIR \
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
at a time under bf16 autocast where :func:`mammo_ray.learn.inference.autocast_dtype` allows, plus
LIME's own Python loop that builds each perturbed image. Measured for ResNet-18 at 224 px
with 500 samples on a shared 2-core CPU (bf16, about 90 images/s): 7.3 s per image, of
which 5.6 s forward passes and about 1.2 s LIME's loop; on a GPU the loop dominates. LIME
draws a tqdm progress bar per image on stderr.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lime.lime_image import LimeImageExplainer
from torch import nn

from mammo_ray.contracts import LimeFile, check
from mammo_ray.data.mias_info import LABELS, MiasRecord
from mammo_ray.errors import ConfigError
from mammo_ray.explain.circles import positive_weight_in_circles
from mammo_ray.explain.figure import explanation_figure
from mammo_ray.explain.superpixels import describe_input, slic_superpixels
from mammo_ray.files import write_json_atomic
from mammo_ray.learn.inference import autocast_dtype, predict

__all__ = ["explain_images", "select_images"]


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
        raise ValueError(f"images must be a (N, S, S) uint8 array, got {describe_input(images)}")
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

    Per image: predict it (:func:`mammo_ray.learn.inference.predict`), explain the predicted class
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
    precision : ``"auto"``, ``"bf16"`` or ``"fp32"``
        (:func:`mammo_ray.learn.inference.autocast_dtype`).

    Returns
    -------
    result : the content of ``lime.json`` (:meth:`_Explainer.write_lime_json`): ``images``, one row
        per image (``image_id``, ``true``, ``pred``, ``proba``, ``positive_weight_in_lesion``,
        ``png``), their mean overlap and the settings.

    Raises
    ------
    ValueError : on images that are not (N, S, S) uint8, lengths that differ, a record label
        not in ``labels``, or ``num_samples`` / ``batch_size`` < 1.
    """

    _check_inputs(images, records, circles_in_input_coords, labels, num_samples, batch_size)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    device = next(model.parameters()).device
    model.eval()
    explainer = _Explainer(
        model=model,
        device=device,
        amp_dtype=autocast_dtype(precision, device),
        labels=tuple(labels),
        num_samples=num_samples,
        seed=seed,
        batch_size=batch_size,
        slic={"n_segments": n_segments, "compactness": compactness, "sigma": sigma},
        num_features=num_features,
    )
    circles = circles_in_input_coords
    rows = [
        explainer.explain(image, record, [] if circles is None else list(circles[i]), out)
        for i, (image, record) in enumerate(zip(images, records, strict=True))
    ]
    return explainer.write_lime_json(rows, out / "lime.json")


@dataclasses.dataclass(frozen=True)
class _Explainer:
    """LIME for one model and one set of settings, applied image by image (:meth:`explain`)."""

    model: nn.Module
    device: torch.device
    amp_dtype: torch.dtype | None
    labels: tuple[str, ...]
    num_samples: int
    seed: int
    batch_size: int
    slic: dict[str, float]
    num_features: int

    def probabilities(self, gray: np.ndarray) -> np.ndarray:
        """Class probabilities (N, C) of uint8 images (N, S, S)."""
        return predict(
            self.model,
            torch.from_numpy(gray),
            batch_size=self.batch_size,
            device=self.device,
            amp_dtype=self.amp_dtype,
        )

    def classifier_fn(self, batch: np.ndarray) -> np.ndarray:
        """LIME's classifier: (N, H, W, 3) float64 in, probabilities out."""
        return self.probabilities(_gray_batch(batch))

    def segmentation_fn(self, rgb: np.ndarray) -> np.ndarray:
        """LIME's segmentation: :func:`slic_superpixels` of the gray image."""
        return slic_superpixels(_gray_batch(rgb[None])[0], **self.slic)

    def write_lime_json(self, rows: list[dict[str, Any]], path: Path) -> dict[str, Any]:
        """Write and return ``lime.json`` (:class:`~mammo_ray.contracts.LimeFile`): the rows,
        their mean lesion overlap, the settings."""
        scored = [row["positive_weight_in_lesion"] for row in rows]
        scored = [f for f in scored if f is not None]
        slic = self.slic
        result = {
            "images": rows,
            "mean_positive_weight_in_lesion": float(np.mean(scored)) if scored else None,
            "num_samples": self.num_samples,
            "seed": self.seed,
            "labels": list(self.labels),
            "hide_color": 0,
            "segmentation": (
                f"slic(n_segments={slic['n_segments']}, compactness={slic['compactness']}, "
                f"sigma={slic['sigma']}, channel_axis=None, mask=image>0)"
            ),
        }
        check(LimeFile, result, path)
        write_json_atomic(path, result, indent=1)
        return result

    def explain(
        self,
        image: np.ndarray,
        record: MiasRecord,
        circles: list[tuple[float, float, float]],
        out: Path,
    ) -> dict[str, Any]:
        """Explain the predicted class of one image with a fresh seeded explainer; draw
        ``<image_id>_lime.png`` into ``out``; return its row of ``lime.json``."""
        labels = self.labels
        proba = self.probabilities(image[None])[0]
        pred = int(np.argmax(proba))
        explanation = LimeImageExplainer(random_state=self.seed).explain_instance(
            image.astype(np.float64),
            self.classifier_fn,
            labels=(pred,),
            top_labels=None,
            hide_color=0,
            num_samples=self.num_samples,
            batch_size=self.batch_size,
            segmentation_fn=self.segmentation_fn,
        )
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
            image, explanation, pred, title=title, circles=circles, num_features=self.num_features
        )
        figure.savefig(out / png, format="png", dpi=figure.dpi)
        return {
            "image_id": record.image_id,
            "true": labels[true],
            "pred": labels[pred],
            "proba": [float(p) for p in proba],
            "positive_weight_in_lesion": fraction,
            "png": png,
        }


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
