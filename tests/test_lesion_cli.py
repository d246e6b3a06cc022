"""The lesion-aware configuration end to end on the shared MIAS subset, as a user runs it:
``train --config search_spaces/recommended.yaml`` (shrunk to 128 px, 2 folds, 1 epoch), then
``evaluate`` and ``explain`` on its ``model.pt``."""

from __future__ import annotations

import json

import pytest

from mammo_ray.cli import run_cli
from mammo_ray.evaluate import main as evaluate_main
from mammo_ray.explain.command import main as explain_main
from mammo_ray.learn.run import main as train_main

SMALL = [
    "--set", "input_size=128", "--set", "preprocess.sizes=[128]", "--set", "patch.size=32",
    "--set", "patch.stride=32", "--set", "split.folds=2", "--set", "batch_size=64",
    "--epochs", "1", "--quiet",
]  # fmt: skip


@pytest.mark.parametrize("mode", ["patch", "patch+bilateral", "radiomics"])
def test_train_refuses_a_lesion_mode_without_cross_validation(mode, tmp_path, capsys):
    argv = ["--config", "search_spaces/recommended.yaml", "--out", str(tmp_path / "run")]
    argv += ["--data", str(tmp_path / "absent.tar.gz"), "--set", f"input.mode={mode}"]
    assert run_cli(train_main, [*argv, "--set", "split.method=patient"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err
    assert f"input.mode {mode} is cross-validated" in err and "split.method: cv" in err
    assert not (tmp_path / "run" / "model.pt").exists()


@pytest.mark.integration
def test_recommended_config_trains_evaluates_and_explains_on_the_subset(
    ray_local, mias_dev_path, tmp_path, capsys
):
    out, cache = tmp_path / "run", str(tmp_path / "cache")
    data = ["--data", str(mias_dev_path), "--cache", cache]
    argv = ["--config", "search_spaces/recommended.yaml", *data, "--out", str(out), *SMALL]
    assert train_main(argv) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["mode"] == "patch+bilateral"
    assert summary["out_of_fold"]["n"] + summary["test"]["n"] == 258
    assert summary["single_film"]["n"] == summary["out_of_fold"]["n"]
    printed = capsys.readouterr().out
    assert "out of fold, film alone: n=" in printed

    scored = tmp_path / "evaluate"
    argv = ["--checkpoint", str(out / "model.pt"), *data, "--out", str(scored), "--quiet"]
    assert evaluate_main(argv) == 0
    metrics = json.loads((scored / "metrics.json").read_text())
    assert metrics["n"] == 258

    explained = tmp_path / "explain"
    argv = ["--checkpoint", str(out / "model.pt"), *data, "--out", str(explained)]
    assert explain_main([*argv, "--images", "mdb001", "--num-samples", "10"]) == 0
    assert (explained / "mdb001_lime.png").is_file()
    assert (explained / "mdb001_scoremap.png").is_file()
    assert "score maps beside them: mdb001_scoremap.png" in capsys.readouterr().out
