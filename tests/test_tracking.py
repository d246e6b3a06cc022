"""Tests of the MLflow layer against a real SQLite store in a temporary folder."""

from __future__ import annotations

import os
import re
from pathlib import Path

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from mammo_ray.errors import ConfigError
from mammo_ray.tracking import (
    EXPERIMENT_KIND,
    TrainingRun,
    artifact_location,
    flatten,
    git_commit,
    global_tracking_uri,
    tracking_uri,
)

REPO = Path(__file__).resolve().parents[1]


def search_runs(uri: str, experiment: str = "mammo_ray"):
    """``mlflow.search_runs`` on the store at ``uri``, the global URI restored after."""
    with global_tracking_uri(uri):
        return mlflow.search_runs(experiment_names=[experiment])


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    """One SQLite store for the module (creating its tables takes a few seconds)."""
    return tracking_uri(tmp_path_factory.mktemp("store"), None)


def test_tracking_uri_default_is_an_absolute_sqlite_file(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    uri = tracking_uri("runs/a")
    assert uri == f"sqlite:///{tmp_path / 'runs' / 'a' / 'mlflow.db'}"
    assert uri.startswith("sqlite:////") and (tmp_path / "runs" / "a").is_dir()


def test_tracking_uri_prefers_argument_then_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.example:5000")
    assert tracking_uri(tmp_path) == "http://mlflow.example:5000"
    assert tracking_uri(tmp_path, "sqlite:////x/y.db") == "sqlite:////x/y.db"


def test_tracking_uri_makes_a_relative_sqlite_path_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert tracking_uri("out", "sqlite:///store/m.db") == f"sqlite:///{tmp_path}/store/m.db"


def test_artifact_location_sits_beside_a_sqlite_database():
    assert artifact_location("sqlite:////data/runs/mlflow.db") == "file:///data/runs/mlartifacts"
    assert artifact_location("http://mlflow.example:5000") is None


def test_flatten_nested_config():
    data = {"model": {"backbone": "resnet18", "drop": {"rate": 0.1}}, "sizes": [224], "seed": 0}
    assert flatten(data) == {
        "model.backbone": "resnet18",
        "model.drop.rate": "0.1",
        "sizes": "[224]",
        "seed": "0",
    }


def test_git_commit_inside_and_outside_a_checkout(tmp_path):
    if (REPO / ".git").exists():
        assert re.fullmatch(r"[0-9a-f]{40}", git_commit(REPO) or "")
    assert git_commit(tmp_path) is None


def test_training_run_logs_params_metrics_artifacts_and_tags(store, tmp_path):
    (tmp_path / "metrics.json").write_text("{}")
    (tmp_path / "model.pt").write_bytes(b"weights")
    with TrainingRun(
        store, experiment="unit", run_name="one", tags={"dataset_fingerprint": "abc"}
    ) as run:
        run.log_params({"optim": {"lr": 0.001}, "sizes": [32]})
        for epoch in (1, 2, 3):
            run.log_metrics({"val_accuracy": epoch / 10, "epoch": epoch, "note": "x"}, step=epoch)
        run.log_metrics({"test_accuracy": 0.5, "flag": True})
        run.set_tags({"preprocess_key": "k1"})
        run.log_artifacts([tmp_path / "metrics.json", tmp_path / "missing.png"])
        run.log_artifacts([tmp_path / "model.pt"], artifact_path="model")

    frame = search_runs(store, "unit")
    assert len(frame) == 1
    row = frame.iloc[0]
    assert row["status"] == "FINISHED" and row["tags.mlflow.runName"] == "one"
    assert row["params.optim.lr"] == "0.001" and row["params.sizes"] == "[32]"
    assert row["tags.dataset_fingerprint"] == "abc" and row["tags.preprocess_key"] == "k1"
    assert row["metrics.test_accuracy"] == 0.5 and "metrics.flag" not in frame.columns
    if (REPO / ".git").exists():
        assert row["tags.git_commit"] == git_commit(REPO)
    client = MlflowClient(store)
    history = client.get_metric_history(run.run_id, "val_accuracy")
    assert [(m.step, m.value) for m in history] == [(1, 0.1), (2, 0.2), (3, 0.3)]
    names = {a.path for a in client.list_artifacts(run.run_id)}
    assert names == {"metrics.json", "model"}
    assert [a.path for a in client.list_artifacts(run.run_id, "model")] == ["model/model.pt"]
    store_dir = Path(store[len("sqlite:///") :]).parent
    assert row["artifact_uri"].startswith((store_dir / "mlartifacts").as_uri())


def test_experiments_are_marked_as_model_training_for_the_mlflow_ui(store):
    """Before, MLflow 3's UI opened an untagged experiment on its GenAI traces overview."""
    client = MlflowClient(store)
    client.create_experiment("made-elsewhere")
    for name in ("made-here", "made-elsewhere"):
        with TrainingRun(store, experiment=name):
            pass
        tags = client.get_experiment_by_name(name).tags
        assert tags[EXPERIMENT_KIND[0]] == "custom_model_development"


def test_training_run_fails_or_is_killed_with_its_block(store):
    with pytest.raises(RuntimeError), TrainingRun(store, experiment="unit-fail") as failed:
        raise RuntimeError("boom")
    with pytest.raises(KeyboardInterrupt), TrainingRun(store, experiment="unit-fail") as killed:
        raise KeyboardInterrupt
    client = MlflowClient(store)
    assert client.get_run(failed.run_id).info.status == "FAILED"
    assert client.get_run(killed.run_id).info.status == "KILLED"


def test_child_run_names_its_parent_and_a_parent_can_be_resumed(store):
    parent = TrainingRun(store, experiment="unit-nest", run_name="search")
    with TrainingRun(store, experiment="unit-nest", parent_run_id=parent.run_id) as child:
        child.log_metrics({"val_loss": 1.0}, step=1)
    parent.end("KILLED")
    resumed = TrainingRun.resume(store, parent.run_id)
    assert resumed.run_id == parent.run_id
    client = MlflowClient(store)
    assert client.get_run(parent.run_id).info.status == "RUNNING"
    resumed.log_metrics({"test_accuracy": 0.9})
    resumed.end()
    assert client.get_run(parent.run_id).info.status == "FINISHED"
    assert client.get_run(child.run_id).data.tags["mlflow.parentRunId"] == parent.run_id


def test_resuming_an_unknown_run_is_a_config_error(store):
    with pytest.raises(ConfigError, match="no MLflow run 'f00d'"):
        TrainingRun.resume(store, "f00d")


def test_global_tracking_uri_restores_the_environment(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    uri = f"sqlite:///{tmp_path / 'a.db'}"
    with global_tracking_uri(uri):
        assert mlflow.get_tracking_uri() == uri == os.environ["MLFLOW_TRACKING_URI"]
    assert "MLFLOW_TRACKING_URI" not in os.environ
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:////elsewhere.db")
    with global_tracking_uri(uri):
        pass
    assert os.environ["MLFLOW_TRACKING_URI"] == "sqlite:////elsewhere.db"
