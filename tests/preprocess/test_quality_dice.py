from __future__ import annotations

import numpy as np
import pytest

from mammo_ray.preprocess.quality import circles_mask, dice


def test_circles_mask_area_matches_pi_r_squared():
    mask = circles_mask((201, 201), [(100, 100, 50)])
    assert mask.sum() == pytest.approx(np.pi * 50**2, rel=0.01)
    assert mask[100, 100] and not mask[0, 0]
    assert mask[100, 150] and not mask[100, 151]


def test_dice_of_known_discs():
    a = circles_mask((100, 100), [(50, 50, 20)])
    assert dice(a, a) == 1.0
    assert dice(a, np.zeros_like(a)) == 0.0
    assert dice(np.zeros_like(a), np.zeros_like(a)) == 1.0
    inner = circles_mask((100, 100), [(50, 50, 10)])
    # inner ⊂ a: 2|inner| / (|inner| + |a|) ~ 2 * 100 / (100 + 400) = 0.4
    assert dice(inner, a) == pytest.approx(0.4, abs=0.02)


def test_dice_rejects_shape_mismatch():
    with pytest.raises(ValueError, match="mask shapes differ"):
        dice(np.zeros((3, 3), bool), np.zeros((4, 4), bool))
