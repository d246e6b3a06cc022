"""The search's fixed baselines: a failing one is left out in one line, its folder removed."""

from __future__ import annotations

from pathlib import Path

from mammo_ray.search.baselines import run_baselines
from mammo_ray.search.space import load_search_space
from tests.lesion_films import lesion_data

SPACES = Path(__file__).resolve().parents[1] / "search_spaces"


def test_a_baseline_that_cannot_run_is_left_out_in_one_line(tmp_path, capsys):
    space_file = tmp_path / "space.yaml"
    space_file.write_text(
        f"base: {SPACES / 'published_patient.yaml'}\n"
        "search:\n  cv: {folds: 3}\n  baselines: [radiomics]\n"
    )
    space = load_search_space(space_file)
    data = lesion_data(["mass", "calc", "normal"] * 3, sizes=(256,))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    done = run_baselines(
        space, data, tmp_path, uri=uri, experiment="e", parent_run_id="0", progress=False
    )
    assert done == {}
    err = capsys.readouterr().err.strip()
    assert err.startswith("baseline radiomics left out: ") and "\n" not in err
    assert "no array 'enhanced_1024'" in err
    assert not (tmp_path / "baseline_radiomics").exists()
