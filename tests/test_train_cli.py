"""Tests of ``python -m mammo_ray.train``: config loading, a full run, the audit, bad input.

The runs use a synthetic 40-film MIAS archive at 128 x 128 px, preprocessed once into a cache
at 32 px (the command then finds the cache by its key and never preprocesses again).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
import yaml
from mlflow.tracking import MlflowClient

from mammo_ray.cli import run_cli
from mammo_ray.config import load_yaml, to_dict
from mammo_ray.errors import ConfigError
from mammo_ray.learn.checkpoint import load_checkpoint
from mammo_ray.learn.config import SET_ALIASES, load_train_config
from mammo_ray.learn.run import AUDIT_ARMS, AUDIT_FOLD_PROTOCOLS, main
from mammo_ray.preprocess.pipeline import PreprocessConfig, load_cache, run_preprocessing
from mammo_ray.tracking import git_commit, global_tracking_uri
from tests.data.mias_factory import mias_files, write_mias

REPO = Path(__file__).resolve().parents[1]
PUBLISHED = REPO / "search_spaces" / "published.yaml"
PUBLISHED_PATIENT = REPO / "search_spaces" / "published_patient.yaml"
SHAPE = (128, 128)
N_FILMS = 40
TINY = [
    "--epochs",
    "1",
    "--set",
    "pretrained=none",
    "--set",
    "input_size=32",
    "--set",
    "preprocess.sizes=[32]",
    "--set",
    "batch_size=8",
    "--quiet",
]
RUN_FILES = (
    "model.pt",
    "metrics.json",
    "predictions.csv",
    "confusion_matrix.png",
    "curves.png",
    "split.json",
    "config.yaml",
    "summary.json",
)


def synthetic_rows(n_films: int = N_FILMS) -> list[str]:
    """Info.txt rows: even films normal, odd films of odd patients masses, of even ones calcs.

    ``n_films // 2`` patients; a lesion sits in the breast (chest wall on the left for odd
    films) at x = 30, y = 64. Every class has films of at least 10 patients at 40 films, enough
    for the patient split's 5 x 5 folds.
    """
    rows = []
    for number in range(1, n_films + 1):
        if number % 2 == 0:
            rows.append(f"mdb{number:03d} F NORM ")
        elif number % 4 == 1:
            rows.append(f"mdb{number:03d} G CIRC B 30 64 8")
        else:
            rows.append(f"mdb{number:03d} D CALC M 30 64 4")
    return rows


def prepared_synthetic(folder: Path) -> tuple[Path, Path]:
    """Write the synthetic archive and preprocess it at 32 px: (archive, cache root)."""
    archive = write_mias(folder / "mias.tar.gz", mias_files(synthetic_rows(), shape=SHAPE))
    cache = folder / "cache"
    run_preprocessing(archive, PreprocessConfig(sizes=(32,)), cache, image_shape=SHAPE)
    return archive, cache


@pytest.fixture(autouse=True)
def default_tracking_store(monkeypatch):
    """Runs write to the SQLite store under --out unless a test names another."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


@pytest.fixture(scope="module")
def synthetic(ray_local, tmp_path_factory) -> tuple[Path, Path]:
    return prepared_synthetic(tmp_path_factory.mktemp("mias"))


def search_runs(uri: str, experiment: str = "mammo_ray"):
    """``mlflow.search_runs`` on the store at ``uri``, the global URI restored after."""
    with global_tracking_uri(uri):
        return mlflow.search_runs(experiment_names=[experiment])


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    return err


# --- configuration ---------------------------------------------------------------------------


@pytest.mark.parametrize("path", [PUBLISHED, PUBLISHED_PATIENT])
def test_published_configs_are_the_papers_table_1(path):
    cfg = load_train_config(path)
    assert (cfg.model.backbone, cfg.model.pretrained) == ("resnet18", "imagenet")
    assert (cfg.optim.name, cfg.optim.lr, cfg.optim.schedule) == ("adam", 0.001, "constant")
    assert (cfg.epochs, cfg.batch_size, cfg.input_size) == (15, 16, 224)
    assert (cfg.augment.mode, cfg.augment.copies, cfg.segmentation) == ("x5", 5, True)


def test_published_twins_differ_only_in_the_split():
    paper, patient = load_yaml(PUBLISHED), load_yaml(PUBLISHED_PATIENT)
    assert paper["split"].pop("method") == "paper"
    assert patient["split"].pop("method") == "patient"
    assert paper == patient


def test_set_aliases_and_epochs_override():
    cfg = load_train_config(
        PUBLISHED,
        ["pretrained=none", "backbone=densenet121", "lr=0.0001", "optimizer=sgd", "seed=3"],
        epochs=2,
    )
    assert (cfg.model.pretrained, cfg.model.backbone) == ("none", "densenet121")
    assert (cfg.optim.lr, cfg.optim.name, cfg.seed, cfg.epochs) == (0.0001, "sgd", 3, 2)
    assert set(SET_ALIASES) == {"pretrained", "backbone", "lr", "optimizer"}


def test_no_config_file_gives_the_defaults():
    assert to_dict(load_train_config(None)) == to_dict(load_train_config(None, [], None))
    assert load_train_config(None).split.method == "patient"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["modle.backbone=resnet18"], "with --set: unknown key 'modle'"),
        (["model.depth=18"], r"model: unknown key 'depth'"),
        (["lr=2"], r"lr must lie in \(0, 1\)"),
        (["backbone=resnet50"], "backbone 'resnet50' is not one of"),
        (["input_size=64"], "input_size 64 is not among preprocess.sizes"),
        (["epochs"], "expected key=value"),
    ],
)
def test_bad_set_is_a_config_error(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_train_config(PUBLISHED, overrides)


def test_epochs_must_be_positive():
    with pytest.raises(ConfigError, match="epochs must be >= 1"):
        load_train_config(PUBLISHED, [], epochs=0)


# --- bad input on the command line -----------------------------------------------------------


def test_no_data_is_one_line_and_exit_2(capsys, monkeypatch):
    monkeypatch.delenv("MAMMO_RAY_DATA", raising=False)
    assert run_cli(main, ["--config", str(PUBLISHED)]) == 2
    assert "no MIAS data given" in one_line_error(capsys)


def test_missing_data_path_is_one_line_and_exit_2(capsys, tmp_path):
    argv = ["--config", str(PUBLISHED), "--data", str(tmp_path / "nowhere.tar.gz"), "--quiet"]
    assert run_cli(main, argv) == 2
    assert "nowhere.tar.gz" in one_line_error(capsys)


def test_unknown_set_key_is_one_line_and_exit_2(capsys, tmp_path):
    argv = ["--data", str(tmp_path), "--config", str(PUBLISHED), "--set", "optim.beta=0.9"]
    assert run_cli(main, argv) == 2
    assert "unknown key 'beta'" in one_line_error(capsys)


def test_missing_config_file_is_one_line_and_exit_2(capsys, tmp_path):
    assert run_cli(main, ["--data", str(tmp_path), "--config", str(tmp_path / "x.yaml")]) == 2
    assert "config file not found" in one_line_error(capsys)


@pytest.mark.slow
def test_module_entry_point_exits_2_with_one_line(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "mammo_ray.train", "--data", str(tmp_path / "none"), "--quiet"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: {tmp_path / 'none'}: no such file or directory"
    ]


# --- full runs on the synthetic archive ------------------------------------------------------


def test_training_run_writes_every_file_and_an_mlflow_run(synthetic, tmp_path, capsys):
    archive, cache = synthetic
    out = tmp_path / "run"
    argv = ["--config", str(PUBLISHED), "--data", str(archive), "--cache", str(cache)]
    assert run_cli(main, [*argv, "--out", str(out), *TINY]) == 0
    stdout = capsys.readouterr().out
    assert "best epoch 1; test n=8 accuracy" in stdout and "LEAKY" in stdout
    for name in RUN_FILES:
        assert (out / name).is_file(), name

    summary = json.loads((out / "summary.json").read_text())
    metrics = json.loads((out / "metrics.json").read_text())
    assert summary["test"]["accuracy"] == metrics["accuracy"] and metrics["n"] == 8
    assert summary["leaky"] is True and summary["leakage"]["n_train"] == 25
    assert yaml.safe_load((out / "config.yaml").read_text())["model"]["pretrained"] == "none"
    ckpt = load_checkpoint(out / "model.pt")
    assert ckpt.config["input_size"] == 32 and ckpt.metrics["epoch"] == 1

    _, manifest = load_cache(next(p for p in cache.iterdir() if p.is_dir()))
    uri = summary["mlflow"]["uri"]
    assert uri == f"sqlite:///{out / 'mlflow.db'}"
    frame = search_runs(uri)
    assert len(frame) == 1
    row = frame.iloc[0]
    assert row["run_id"] == summary["mlflow"]["run_id"] and row["status"] == "FINISHED"
    assert row["params.model.pretrained"] == "none" and row["params.input_size"] == "32"
    assert row["params.optim.lr"] == "0.001" and row["params.augment.mode"] == "x5"
    assert row["tags.dataset_fingerprint"] == manifest.fingerprint
    assert row["tags.preprocess_key"] == manifest.key
    assert row["tags.split"] == "paper" and row["tags.leaky"] == "true"
    if (REPO / ".git").exists():
        assert row["tags.git_commit"] == git_commit(REPO)
    assert row["metrics.test_accuracy"] == metrics["accuracy"]
    client = MlflowClient(uri)
    history = client.get_metric_history(row["run_id"], "val_macro_recall")
    assert [m.step for m in history] == [1]
    artifacts = {a.path for a in client.list_artifacts(row["run_id"])}
    assert set(RUN_FILES) - {"model.pt"} <= artifacts and "model" in artifacts
    assert [a.path for a in client.list_artifacts(row["run_id"], "model")] == ["model/model.pt"]
    assert row["artifact_uri"].startswith((out / "mlartifacts").as_uri())


def test_patient_split_run_has_no_shared_patients(synthetic, tmp_path, capsys):
    archive, cache = synthetic
    out = tmp_path / "patient"
    argv = ["--config", str(PUBLISHED_PATIENT), "--data", str(archive), "--cache", str(cache)]
    assert run_cli(main, [*argv, "--out", str(out), *TINY, "--set", "augment.mode=none"]) == 0
    assert "LEAKY" not in capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    assert summary["leaky"] is False
    assert summary["leakage"]["patients_train_test"] == 0
    assert summary["leakage"]["test_images_from_train_films"] == 0


def test_audit_prints_the_protocols_side_by_side(synthetic, tmp_path, capsys):
    archive, cache = synthetic
    out = tmp_path / "audit"
    argv = ["audit", "--config", str(PUBLISHED), "--data", str(archive), "--cache", str(cache)]
    assert run_cli(main, [*argv, "--out", str(out), *TINY, "--set", "augment.mode=none"]) == 0
    printed = capsys.readouterr().out.strip().splitlines()
    table, folds_lines = printed[: 2 + len(AUDIT_ARMS)], printed[2 + len(AUDIT_ARMS) :]
    assert table[0].startswith("protocol") and len(folds_lines) == 1 + len(AUDIT_FOLD_PROTOCOLS)
    folds = json.loads((out / "audit_folds.json").read_text())
    image, grouped = (folds[name] for name in AUDIT_FOLD_PROTOCOLS)
    assert sum(r["films_with_partner_in_training"] for r in image) > 0
    assert sum(r["films_with_partner_in_training"] for r in grouped) == 0
    assert folds_lines[1].startswith("  paper (image-level folds): patients also in another fold")
    rows = {row["arm"]: row for row in json.loads((out / "audit.json").read_text())}
    assert list(rows) == list(AUDIT_ARMS)
    paper, patient, first = (rows[name] for name in AUDIT_ARMS)
    assert paper["leakage"]["patients_train_test"] > 0
    assert paper["leakage"]["test_images_from_train_films"] == 0
    assert patient["leakage"]["patients_train_test"] == 0 and patient["leaky"] is False
    assert first["test"]["n"] == 6 * 8 and first["leaky"] is True
    assert first["leakage"]["test_images_from_train_films"] > 0
    for line, row in zip(table[2:], rows.values(), strict=True):
        assert line.startswith(row["arm"]) and f"{row['test']['accuracy']:.3f}" in line
    frame = search_runs(f"sqlite:///{out / 'mlflow.db'}")
    assert sorted(frame["tags.mlflow.runName"]) == [
        "audit paper",
        "audit paper-augfirst",
        "audit patient",
    ]


def test_audit_can_skip_the_augment_first_arm(synthetic, tmp_path, capsys):
    archive, cache = synthetic
    argv = ["audit", "--config", str(PUBLISHED), "--data", str(archive), "--cache", str(cache)]
    argv += ["--out", str(tmp_path / "audit"), *TINY, "--set", "augment.mode=none"]
    assert run_cli(main, [*argv, "--no-augment-first"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 2 + 2 + 3


@pytest.mark.integration
def test_real_subset_end_to_end(ray_local, mias_dev_path, tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["--config", str(PUBLISHED), "--data", str(mias_dev_path), "--out", str(out)]
    argv += ["--cache", str(tmp_path / "cache"), "--set", "backbone=resnet18", *TINY]
    assert run_cli(main, argv) == 0
    for name in RUN_FILES:
        assert (out / name).is_file(), name
    summary = json.loads((out / "summary.json").read_text())
    assert summary["leakage"]["n_train"] + summary["leakage"]["n_val"] + summary["test"]["n"] == 258
    assert summary["images_per_s"][0] > 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["labels"] == ["normal", "mass", "calc"] and metrics["n"] == 52
    assert sum(map(sum, metrics["confusion_matrix"])) == 52
    frame = search_runs(summary["mlflow"]["uri"])
    assert len(frame) == 1 and frame.iloc[0]["status"] == "FINISHED"
    assert frame.iloc[0]["params.model.backbone"] == "resnet18"
    client = MlflowClient(summary["mlflow"]["uri"])
    assert len(client.get_metric_history(summary["mlflow"]["run_id"], "train_loss")) == 1
