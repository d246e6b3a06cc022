"""How many LIME perturbations the search's best trial gets: the default per kind of model, or
what the command line gave."""

from __future__ import annotations

from torch import nn

from mammo_ray.learn.bilateral_maps import patch_film_model
from mammo_ray.learn.config import PatchConfig
from mammo_ray.search.best import LIME_SAMPLES, PATCH_LIME_SAMPLES, lime_samples_for


def test_a_patch_winner_gets_fewer_perturbations_unless_the_command_line_gave_some(capsys):
    patch = patch_film_model(nn.Conv2d(1, 3, 1), PatchConfig(), bilateral=True)
    assert lime_samples_for(patch, None) == PATCH_LIME_SAMPLES < LIME_SAMPLES
    assert "LIME on a patch model: 50 perturbations" in capsys.readouterr().out
    assert lime_samples_for(patch, 7) == 7
    whole = nn.Sequential(nn.Conv2d(1, 3, 1))
    assert lime_samples_for(whole, None) == LIME_SAMPLES and lime_samples_for(whole, 9) == 9
