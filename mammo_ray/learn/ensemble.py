"""The fold ensemble of a cross-validated training: one model that predicts like the mean of
the fold models.

``forward(x) = log(mean_k softmax(f_k(x)))``, so ``softmax(forward(x)) = mean_k softmax(f_k(x))``
exactly: everything that turns logits into probabilities (evaluation, LIME, the search) treats
the ensemble as one model. The mean of the fold probabilities is nnU-Net's ensemble of its
cross-validation models (Isensee et al., "nnU-Net", Nature Methods 18, 2021).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["FoldEnsemble", "members_of"]


class FoldEnsemble(nn.Module):
    """Several models of one architecture whose class probabilities are averaged."""

    def __init__(self, members: Sequence[nn.Module]):
        super().__init__()
        if len(members) < 2:
            raise ValueError(f"an ensemble needs at least 2 members, got {len(members)}")
        self.members = nn.ModuleList(members)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        proba = torch.stack([member(images).float().softmax(dim=1) for member in self.members])
        return proba.mean(dim=0).clamp_min(torch.finfo(torch.float32).tiny).log()


def members_of(model: nn.Module) -> list[nn.Module]:
    """The fold models of a :class:`FoldEnsemble`, or ``[model]`` for a single model."""
    return list(model.members) if isinstance(model, FoldEnsemble) else [model]
