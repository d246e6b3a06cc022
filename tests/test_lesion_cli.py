"""The lesion-aware configuration end to end on the shared MIAS subset, as a user runs it:
``train --config search_spaces/recommended.yaml`` (shrunk to 128 px, 2 folds, 1 epoch), then
``evaluate`` and ``explain`` on its ``model.pt``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mammo_ray.cli import run_cli
from mammo_ray.evaluate import main as evaluate_main
from mammo_ray.explain.command import main as explain_main
from mammo_ray.learn.run import main as train_main
from mammo_ray.search.command import main as search_main
from tests.test_train_cli import search_runs

RECOMMENDED = Path(__file__).resolve().parents[1] / "search_spaces" / "recommended.yaml"
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


@pytest.mark.integration
def test_a_search_races_whole_film_and_bilateral_patch_trials_on_the_same_folds(
    ray_local, mias_dev_path, tmp_path
):
    space = tmp_path / "space.yaml"
    space.write_text(
        f"base: {RECOMMENDED}\n"
        "fixed: {input_size: 128, preprocess.sizes: [128], patch.size: 32, patch.stride: 32,"
        " batch_size: 64, epochs: 1}\n"
        "grid:\n  input.mode: [patch+bilateral, whole]\n"
        "search: {max_epochs: 1, max_concurrent: 1, reduction_factor: 2, cv: {folds: 2},"
        " baselines: [radiomics]}\n"
    )
    out = tmp_path / "search"
    argv = ["--space", str(space), "--data", str(mias_dev_path), "--out", str(out)]
    argv += ["--cache", str(tmp_path / "cache"), "--explain", "1", "--lime-samples", "10"]
    assert run_cli(search_main, argv) == 0
    summary = json.loads((out / "search.json").read_text())
    trials = {t["params"]["input.mode"]: t for t in summary["trials"]}
    assert set(trials) == {"patch+bilateral", "whole"}
    for trial in trials.values():
        first = trial["history"][0]
        assert first["fold"] == 1 and 0 <= first["val_balanced_accuracy"] <= 1
        assert trial["test"]["n"] == 52, "each trial's fold ensemble scored its outer test films"
    metrics = json.loads((out / "best" / "metrics.json").read_text())
    assert metrics["n"] == 52
    best_mode = next(m for m, t in trials.items() if t["trial_id"] == summary["best_trial"])
    assert bool(list((out / "explain").glob("*_scoremap.png"))) == (best_mode != "whole")
    radiomics = summary["baselines"]["radiomics"]
    assert radiomics["out_of_fold"]["n"] == 206 and radiomics["test"]["n"] == 52
    assert (out / radiomics["dir"] / "oof" / "predictions.csv").is_file()
    report = (out / "report.md").read_text()
    assert "| radiomics (fixed baseline, `baseline_radiomics/`) | — | 2/2 |" in report
    assert "| patches, against the other breast | `" in report
    runs = search_runs(summary["mlflow"]["uri"])
    baseline = runs[runs["tags.mlflow.runName"] == "baseline: radiomics"]
    assert list(baseline["tags.mlflow.parentRunId"]) == [summary["mlflow"]["parent_run_id"]]
