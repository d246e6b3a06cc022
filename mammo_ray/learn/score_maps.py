"""A patch classifier run over the whole film: score maps, and film probabilities from them.

:class:`ScoreMapModel` wraps a timm patch classifier of ``patch_size`` px and runs it on every
``patch_size`` window of the film at ``stride``, in batches: a score map per class. Windows less
than half inside the breast (the film's nonzero pixels) are not run and score normal. The
windows are cut exactly as training patches are: running the network once over the whole film
(fully convolutionally) is cheaper but gives each window the context around it, which the
patch classifier never saw in training, and on the shared subset that cost the film-level AUC
(normal vs abnormal) 0.51 against 0.59-0.63 with cut windows (one fold, 52 films).

From the maps, :data:`MAP_FEATURES` per film: for ``mass``, ``calc`` and ``abnormal`` (1 -
``p_normal``) the maximum and the mean of the ``top_k`` highest windows. The model's ``head``
(a linear layer on the standardised features; the aggregation) turns them into film logits:
it is fitted by a standardised multinomial logistic regression on out-of-fold maps only
(:func:`fit_aggregation`), so that ``forward(film)`` gives film probabilities like any
whole-film model and ``evaluate``, ``explain`` and the fold ensemble take it as one.

Reference: L. Shen et al., Sci Rep 9:12495, 2019 (patch classifier to whole image).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from torch import nn

from mammo_ray.data.mias_info import LABELS
from mammo_ray.learn.augment import build_eval_transforms
from mammo_ray.learn.models import GRAY_MEAN, GRAY_STD

__all__ = [
    "MAP_FEATURES",
    "MAP_TARGETS",
    "ScoreMapModel",
    "StandardisedLinear",
    "breast_pixels",
    "target_maps",
    "film_features_of_maps",
    "predict_maps",
    "aggregation_model",
    "fit_aggregation",
    "set_head",
]

MAP_TARGETS: tuple[str, ...] = ("mass", "calc", "abnormal")
"""The maps the film features are read from (:func:`target_maps`); ``abnormal`` is 1 - p(normal)."""

MAP_FEATURES: tuple[str, ...] = tuple(
    f"{kind}_{target}" for target in MAP_TARGETS for kind in ("max", "topk")
)
"""The film features the aggregation reads, in order."""

_BACKGROUND = -GRAY_MEAN / GRAY_STD
"""A normalised pixel of value 0: outside the breast of a masked film."""

_WINDOW_BATCH = 64
"""Windows put through the patch classifier at once."""


def breast_pixels(films: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) bool: the pixels of normalised films (B, C, H, W) inside the breast (not 0)."""
    return films[:, :1] > _BACKGROUND + 1e-3


def target_maps(proba: torch.Tensor) -> torch.Tensor:
    """(B, len(MAP_TARGETS), h, w) of probability maps (B, C, h, w): p(mass), p(calc) and
    1 - p(normal)."""
    return torch.stack(
        [
            proba[:, LABELS.index("mass")],
            proba[:, LABELS.index("calc")],
            1.0 - proba[:, LABELS.index("normal")],
        ],
        dim=1,
    )


def film_features_of_maps(proba: torch.Tensor, inside: torch.Tensor, top_k: int) -> torch.Tensor:
    """(B, len(MAP_FEATURES)) from probability maps (B, C, h, w) and window masks (B, 1, h, w).

    Windows outside count as probability 0; a film with no window inside uses all of them.
    """
    empty = inside.flatten(1).sum(1) == 0
    inside = torch.where(empty[:, None, None, None], torch.ones_like(inside), inside)
    values = (target_maps(proba) * inside).flatten(2)
    k = min(top_k, values.shape[2])
    top = values.topk(k, dim=2).values
    return torch.stack([top[:, :, 0], top.mean(2)], dim=2).flatten(1)


class StandardisedLinear(nn.Module):
    """``W (x - m) / s + b``: a linear layer on standardised features, the aggregation as a
    layer (standardising first, as scikit-learn does, keeps features that barely vary from
    magnifying float32 rounding)."""

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.linear = nn.Linear(in_features, out_features)
        self.register_buffer("mean", torch.zeros(in_features))
        self.register_buffer("scale", torch.ones(in_features))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear((features.float() - self.mean) / self.scale)


class ScoreMapModel(nn.Module):
    """Film (B, 1, S, S), normalised, in; film logits (B, len(LABELS)) out (see module notes)."""

    def __init__(self, patch_model: nn.Module, patch_size: int, stride: int = 64, top_k: int = 3):
        super().__init__()
        self.patch_model = patch_model
        self.patch_size = int(patch_size)
        self.stride = int(stride)
        self.top_k = int(top_k)
        self.head = StandardisedLinear(len(MAP_FEATURES), len(LABELS))

    def maps(self, films: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(probabilities (B, C, h, w) of every window, inside-the-breast mask (B, 1, h, w)).

        Window ``(i, j)`` covers rows ``[i s, i s + p)`` and columns ``[j s, j s + p)``.
        """
        size, stride = self.patch_size, self.stride
        windows = films[:, :1].unfold(2, size, stride).unfold(3, size, stride)
        batch, _, rows, cols = windows.shape[:4]
        breast = breast_pixels(films).float()
        inside = F.avg_pool2d(breast, size, stride=stride) >= 0.5
        proba = torch.zeros(batch * rows * cols, len(LABELS), device=films.device)
        proba[:, LABELS.index("normal")] = 1.0
        chosen = torch.nonzero(inside.flatten()).flatten()
        flat = windows.reshape(-1, 1, size, size)
        for start in range(0, chosen.numel(), _WINDOW_BATCH):
            index = chosen[start : start + _WINDOW_BATCH]
            crops = flat[index].contiguous(memory_format=torch.channels_last)
            proba[index] = self.patch_model(crops).float().softmax(1)
        maps = proba.reshape(batch, rows, cols, -1).permute(0, 3, 1, 2)
        return maps, inside.float()

    def map_features(self, films: torch.Tensor) -> torch.Tensor:
        """(B, len(MAP_FEATURES)) film features of the score maps."""
        return film_features_of_maps(*self.maps(films), self.top_k)

    def forward(self, films: torch.Tensor) -> torch.Tensor:
        return self.head(self.map_features(films))


AGGREGATION_C = 0.03
"""Inverse L2 regularisation of the aggregation's logistic regression on standardised
features: a few hundred films, up to a few dozen features. Chosen among 0.01-1 on the
out-of-fold maps of one full-resolution patch run on the shared subset (README, results)."""


def aggregation_model(seed: int = 0) -> Pipeline:
    """The aggregation, unfitted: standardisation, then class-balanced multinomial logistic
    regression (``C`` = :data:`AGGREGATION_C`)."""
    return make_pipeline(
        StandardScaler(),
        LogisticRegression(
            C=AGGREGATION_C, class_weight="balanced", max_iter=5000, random_state=seed
        ),
    )


def fit_aggregation(features: np.ndarray, labels: np.ndarray, seed: int = 0) -> Pipeline:
    """:func:`aggregation_model` fitted to film labels on map features."""
    return aggregation_model(seed).fit(features, labels)


def set_head(model: nn.Module, aggregation: Pipeline) -> None:
    """Copy a fitted aggregation (scaler and logistic regression) into ``model.head``, a
    :class:`StandardisedLinear`. All of :data:`LABELS` must have been seen."""
    scaler, logistic = aggregation[0], aggregation[-1]
    if list(logistic.classes_) != list(range(len(LABELS))):
        raise ValueError(
            f"the aggregation saw classes {list(logistic.classes_)}, not all of {LABELS}"
        )
    head = model.head
    with torch.no_grad():
        for target, value in (
            (head.mean, scaler.mean_),
            (head.scale, scaler.scale_),
            (head.linear.weight, logistic.coef_),
            (head.linear.bias, logistic.intercept_),
        ):
            target.copy_(torch.from_numpy(np.asarray(value)).float())


def predict_maps(
    model: ScoreMapModel,
    films: np.ndarray,
    *,
    batch_size: int = 4,
    amp_dtype: torch.dtype | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Score maps of uint8 films (N, S, S), normalised as in evaluation: (probabilities
    (N, C, h, w), inside-the-breast windows (N, h, w) bool, :data:`MAP_FEATURES` (N, F))."""
    device = next(model.parameters()).device
    transform = build_eval_transforms(GRAY_MEAN, GRAY_STD)
    model.eval()
    proba, inside, features = [], [], []
    with torch.no_grad():
        for start in range(0, len(films), batch_size):
            batch = torch.from_numpy(np.ascontiguousarray(films[start : start + batch_size]))
            batch = transform(batch.to(device).unsqueeze(1)).contiguous(
                memory_format=torch.channels_last
            )
            with torch.autocast(
                device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None
            ):
                maps, window_inside = model.maps(batch)
            proba.append(maps.float().cpu())
            inside.append(window_inside.cpu())
            features.append(film_features_of_maps(maps.float(), window_inside, model.top_k).cpu())
    return (
        torch.cat(proba).numpy(),
        torch.cat(inside)[:, 0].numpy() > 0,
        torch.cat(features).numpy(),
    )
