"""``input.mode: patch+bilateral``: a film's score maps read against the other breast's.

The model's input is the film with its partner (the other breast of the same patient,
:func:`~mammo_ray.learn.bilateral.partner_rows`) mirrored left-right beside it, one (S, 2S)
image (:func:`pair_films`): a radiologist's side-by-side view, and what LIME perturbs. A film
without a partner has zeros on the right half, which the features read as ``has_partner = 0``.

:class:`BilateralScoreMapModel` un-mirrors the partner, runs the patch classifier over both
films (:meth:`~mammo_ray.learn.score_maps.ScoreMapModel.maps`) and computes
:data:`BILATERAL_FEATURES` (:func:`pair_features`):

- the film's own :data:`~mammo_ray.learn.score_maps.MAP_FEATURES`;
- ``<feature>_minus_other``: own minus partner, for the same map features;
- ``local_<target>``: the largest excess of a window's score over the partner's score near the
  mirrored position, ``max_w [p_own(w) - max_{w' in 3x3(mirror(w))} p_partner(w')]``, for
  mass, calc and abnormal (1 - p_normal): an asymmetry at one place;
- ``<statistic>_minus_other``: breast intensity statistics (:data:`BREAST_STATISTICS`) minus
  the partner's: a denser or brighter breast than its twin;
- ``has_partner``.

Without a partner every difference is 0 and the classifier falls back on the film's own map
features. The head (a linear layer on standardised features) is fitted on out-of-fold
features only, by :mod:`~mammo_ray.learn.patch_cv`.

References: J. M. Celaya-Padilla et al., BioMed Res Int 2015:231656; P. Casti et al., IEEE
Trans Med Imaging 34(2):662-671, 2015.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mammo_ray.data.mias_info import LABELS
from mammo_ray.learn.augment import build_eval_transforms
from mammo_ray.learn.config import PatchConfig
from mammo_ray.learn.ensemble import members_of
from mammo_ray.learn.models import GRAY_MEAN, GRAY_STD
from mammo_ray.learn.score_maps import (
    MAP_FEATURES,
    MAP_TARGETS,
    ScoreMapModel,
    StandardisedLinear,
    breast_pixels,
    film_features_of_maps,
    predict_maps,
    target_maps,
)

__all__ = [
    "BREAST_STATISTICS",
    "BILATERAL_FEATURES",
    "FilmMaps",
    "pair_films",
    "breast_statistics",
    "pair_features",
    "BilateralScoreMapModel",
    "film_statistics",
    "features_of_film_maps",
    "patch_film_model",
    "single_film_part",
    "AbnormalMaps",
    "is_patch_film_model",
    "abnormal_maps",
]

BREAST_STATISTICS: tuple[str, ...] = ("mean", "std", "p90", "p99", "area")
"""Per film: mean, standard deviation, 90th and 99th percentile of the breast's normalised
pixels, and the breast's share of the film."""

BILATERAL_FEATURES: tuple[str, ...] = (
    *MAP_FEATURES,
    *(f"{name}_minus_other" for name in MAP_FEATURES),
    *(f"local_{target}" for target in MAP_TARGETS),
    *(f"{name}_minus_other" for name in BREAST_STATISTICS),
    "has_partner",
)
"""The features the bilateral head reads, in order."""

FilmMaps = tuple[torch.Tensor, torch.Tensor, torch.Tensor]
"""(probability maps (B, C, h, w), inside-the-breast windows (B, 1, h, w), breast statistics
(B, len(BREAST_STATISTICS))) of a batch of films."""


def pair_films(
    films: np.ndarray, partners: np.ndarray, rows: np.ndarray | None = None
) -> np.ndarray:
    """(len(rows), S, 2S) uint8: for each ``i`` of ``rows`` (default: every film), film ``i``
    on the left and film ``partners[i]`` mirrored left-right on the right (zeros where
    ``partners[i] < 0``)."""
    rows = np.arange(len(films)) if rows is None else np.asarray(rows, np.int64)
    _, height, width = films.shape
    pairs = np.zeros((rows.size, height, 2 * width), films.dtype)
    pairs[:, :, :width] = films[rows]
    partner = partners[rows]
    has = partner >= 0
    pairs[has, :, width:] = films[partner[has], :, ::-1]
    return pairs


def breast_statistics(films: torch.Tensor) -> torch.Tensor:
    """(B, len(BREAST_STATISTICS)) of normalised films (B, 1, H, W); zeros for an empty film."""
    inside = breast_pixels(films)[:, 0]
    rows = []
    for film, mask in zip(films[:, 0].float(), inside, strict=True):
        values = film[mask]
        if values.numel() == 0:
            rows.append(torch.zeros(len(BREAST_STATISTICS), device=films.device))
            continue
        quantiles = torch.quantile(values, torch.tensor([0.9, 0.99], device=films.device))
        area = mask.float().mean()
        rows.append(torch.stack([values.mean(), values.std(correction=0), *quantiles, area]))
    return torch.stack(rows)


def film_statistics(films: np.ndarray) -> np.ndarray:
    """(N, len(BREAST_STATISTICS)) float32 of uint8 films (N, S, S), normalised as in
    evaluation."""
    transform = build_eval_transforms(GRAY_MEAN, GRAY_STD)
    rows = [
        breast_statistics(transform(torch.from_numpy(np.ascontiguousarray(film))[None, None]))
        for film in films
    ]
    return torch.cat(rows).numpy() if rows else np.zeros((0, len(BREAST_STATISTICS)), np.float32)


def features_of_film_maps(
    proba: np.ndarray,
    inside: np.ndarray,
    statistics: np.ndarray,
    partners: np.ndarray,
    top_k: int,
) -> np.ndarray:
    """(N, len(BILATERAL_FEATURES)) float32 of films whose maps (N, C, h, w), inside-the-breast
    windows (N, h, w) and :func:`film_statistics` are given, ``partners`` (N,) indexing the
    partner of each among the same films (-1: none). The same features as
    :meth:`BilateralScoreMapModel.pair_features` of their pairs, without mapping a film twice."""
    has = partners >= 0
    index = torch.from_numpy(np.where(has, partners, np.arange(partners.size)))
    maps = torch.from_numpy(proba).float()
    windows = torch.from_numpy(inside).float()[:, None]
    stats = torch.from_numpy(statistics).float()
    own = (maps, windows, stats)
    partner = (maps[index], windows[index], stats[index])
    return pair_features(own, partner, torch.from_numpy(has), top_k).numpy()


def pair_features(
    own: FilmMaps, partner: FilmMaps, has_partner: torch.Tensor, top_k: int
) -> torch.Tensor:
    """(B, len(BILATERAL_FEATURES)) from each film's maps and its partner's, both in their own
    film's orientation (the partner's are mirrored here); ``has_partner`` (B,) bool."""
    own_proba, own_inside, own_stats = own
    partner_proba, partner_inside, partner_stats = partner
    has = has_partner.float()[:, None]
    own_maps = film_features_of_maps(own_proba, own_inside, top_k)
    partner_maps = film_features_of_maps(partner_proba, partner_inside, top_k)
    mirrored = (target_maps(partner_proba) * partner_inside).flip(-1)
    near = F.max_pool2d(mirrored, 3, stride=1, padding=1)
    excess = (target_maps(own_proba) - near).masked_fill(own_inside == 0, -1.0).flatten(2)
    local = excess.max(2).values.clamp(min=0.0)
    return torch.cat(
        [
            own_maps,
            (own_maps - partner_maps) * has,
            local * has,
            (own_stats - partner_stats) * has,
            has,
        ],
        dim=1,
    )


class BilateralScoreMapModel(nn.Module):
    """Film pair (B, 1, S, 2S), normalised (film left, mirrored partner right), in; film
    logits (B, len(LABELS)) out (see module notes)."""

    def __init__(self, patch_model: nn.Module, patch_size: int, stride: int = 64, top_k: int = 3):
        super().__init__()
        self.score_maps = ScoreMapModel(patch_model, patch_size, stride, top_k)
        self.head = StandardisedLinear(len(BILATERAL_FEATURES), len(LABELS))

    def film_maps(self, films: torch.Tensor) -> FilmMaps:
        """:data:`FilmMaps` of normalised films (B, 1, S, S)."""
        proba, inside = self.score_maps.maps(films)
        return proba.float(), inside, breast_statistics(films)

    def pair_features(self, pairs: torch.Tensor) -> torch.Tensor:
        """(B, len(BILATERAL_FEATURES)) of normalised film pairs (B, 1, S, 2S)."""
        width = pairs.shape[-1] // 2
        own, partner = pairs[..., :width], pairs[..., width:].flip(-1)
        partner_maps = self.film_maps(partner)
        has_partner = breast_pixels(partner).flatten(1).any(1)
        return pair_features(self.film_maps(own), partner_maps, has_partner, self.score_maps.top_k)

    def forward(self, pairs: torch.Tensor) -> torch.Tensor:
        return self.head(self.pair_features(pairs))


def patch_film_model(
    patch_model: nn.Module, patch: PatchConfig, bilateral: bool
) -> ScoreMapModel | BilateralScoreMapModel:
    """The film model around a patch classifier: single-film score maps, or bilateral."""
    model_type = BilateralScoreMapModel if bilateral else ScoreMapModel
    return model_type(patch_model, patch.size, patch.stride, patch.top_k)


def single_film_part(model: ScoreMapModel | BilateralScoreMapModel) -> ScoreMapModel:
    """The single-film score-map model inside a film model of patches."""
    return model.score_maps if isinstance(model, BilateralScoreMapModel) else model


class AbnormalMaps(NamedTuple):
    """Where a film model of patches sees an abnormality, per window of each film."""

    abnormal: np.ndarray
    """(N, h, w): 1 - p(normal), the mean over the fold members."""
    inside: np.ndarray
    """(N, h, w) bool: windows at least half inside the breast (the others are not run)."""
    patch_size: int
    stride: int


def is_patch_film_model(model: nn.Module) -> bool:
    """Whether ``model`` is a film model of patches (or a fold ensemble of them): it scores
    only the windows inside the breast, a data-dependent choice that ``torch.export`` cannot
    trace."""
    return all(isinstance(m, ScoreMapModel | BilateralScoreMapModel) for m in members_of(model))


def abnormal_maps(
    model: nn.Module, films: np.ndarray, amp_dtype: torch.dtype | None = None
) -> AbnormalMaps | None:
    """The :class:`AbnormalMaps` of uint8 films (N, S, S) under a film model of patches (or a
    fold ensemble of them); None for any other model."""
    if not is_patch_film_model(model):
        return None
    members = members_of(model)
    normal = LABELS.index("normal")
    maps, inside = [], np.zeros(0)
    for member in members:
        proba, inside, _ = predict_maps(single_film_part(member), films, amp_dtype=amp_dtype)
        maps.append(1.0 - proba[:, normal])
    single = single_film_part(members[0])
    return AbnormalMaps(np.mean(maps, axis=0), inside, single.patch_size, single.stride)
