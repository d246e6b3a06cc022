"""The other breast as reference: pair each film with its partner and set features against it.

MIAS films ``2k - 1`` and ``2k`` are the right and left breast of patient ``k`` (same view).
A lesion is usually in one breast only (81 of the 87 patients with a finding in the shared
subset), so the difference of a film's features from its partner's cancels what the two breasts
share (density, exposure, digitiser) and keeps the asymmetry a radiologist looks for.

References: J. M. Celaya-Padilla et al., "Bilateral image subtraction and multivariate models
for the automated triaging of screening mammograms", BioMed Res Int 2015:231656;
P. Casti et al., "Analysis of structural similarity in mammograms for detection of bilateral
asymmetry", IEEE Trans Med Imaging 34(2):662-671, 2015.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["partner_rows", "bilateral_features", "bilateral_names"]


def partner_rows(patient_ids: Sequence[int] | np.ndarray) -> np.ndarray:
    """(N,) int64: the row of the other film of the same patient, or -1 when the patient has
    no other film (or more than two, where the partner is ambiguous)."""
    patients = np.asarray(patient_ids)
    partners = np.full(patients.size, -1, np.int64)
    for patient in np.unique(patients):
        rows = np.flatnonzero(patients == patient)
        if rows.size == 2:
            partners[rows] = rows[::-1]
    return partners


def bilateral_features(features: np.ndarray, partners: np.ndarray) -> np.ndarray:
    """``[own, own - partner, has_partner]`` per row of ``features`` (N, F): (N, 2F + 1).

    A film without a partner gets zero differences and ``has_partner = 0``: the classifier falls
    back on the film's own features.
    """
    has = partners >= 0
    difference = np.zeros_like(features)
    difference[has] = features[has] - features[partners[has]]
    return np.hstack([features, difference, has[:, None].astype(features.dtype)])


def bilateral_names(names: Sequence[str]) -> list[str]:
    """Column names of :func:`bilateral_features` for features called ``names``."""
    return [*names, *(f"{name}_minus_other" for name in names), "has_partner"]
