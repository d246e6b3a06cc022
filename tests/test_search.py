"""Tests of ``python -m mammo_ray.search`` on the shared MIAS subset with a real local Ray.

One smoke search (``search_spaces/smoke.yaml``, 64 px, 3 trials of at most 2 epochs) runs once
per module and is read back by several tests: the published trial first, MLflow parent/child
runs and metric histories (through the client and through ``mlflow server``'s REST API), the
best model's test evaluation, LIME PNGs and the report. Other tests run a failing trial, and
kill a driver mid-search and resume it.
"""

from __future__ import annotations

import contextlib
import csv
import html
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
import timm
import torch
from mlflow.tracking import MlflowClient

from mammo_ray.cli import run_cli
from mammo_ray.learn.inference import compute_choice
from mammo_ray.search.command import main
from mammo_ray.search.space import load_search_space
from mammo_ray.tracking import ui_url

REPO = Path(__file__).resolve().parents[1]
SMOKE = REPO / "search_spaces" / "smoke.yaml"
PUBLISHED_PATIENT = REPO / "search_spaces" / "published_patient.yaml"

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cache_root(tmp_path_factory) -> Path:
    """One preprocessing cache (64 px) shared by every search of this module."""
    return tmp_path_factory.mktemp("cache")


def search_argv(space: Path, data: Path, out: Path, cache: Path, *extra: str) -> list[str]:
    return [
        "--space", str(space), "--data", str(data), "--out", str(out), "--cache", str(cache),
        "--name", out.name, *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def smoke(ray_local, mias_dev_path, cache_root, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("searches") / "smoke"
    argv = search_argv(SMOKE, mias_dev_path, out, cache_root, "--explain", "2")
    uri_before = os.environ.get("MLFLOW_TRACKING_URI")
    assert run_cli(main, [*argv, "--lime-samples", "60"]) == 0
    summary = json.loads((out / "search.json").read_text())
    return {
        "out": out,
        "summary": summary,
        "client": MlflowClient(summary["mlflow"]["uri"]),
        "uri_before": uri_before,
        "uri_after": os.environ.get("MLFLOW_TRACKING_URI"),
    }


def children_of(client: MlflowClient, parent_id: str) -> list:
    parent = client.get_run(parent_id)
    return client.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent_id}'"
    )


def test_smoke_search_runs_every_trial_published_first(smoke):
    trials = smoke["summary"]["trials"]
    space = load_search_space(SMOKE)
    assert len(trials) == space.settings.num_samples == 3
    assert trials[0]["params"] == space.published_point()
    assert trials[0]["params"]["model.backbone"] == "resnet18"
    assert all(t["status"] == "TERMINATED" and t["failures"] == 0 for t in trials)
    expected = compute_choice("auto", torch.device("cpu"))
    for t in trials:
        assert 1 <= len(t["history"]) <= 2
        assert [h["epoch"] for h in t["history"]] == list(range(1, len(t["history"]) + 1))
        assert t["compute"]["autocast"] == expected.autocast
        assert t["compute"]["memory_format"] == "channels_last" and t["seconds"] > 0
    with open(smoke["out"] / "trials.csv") as handle:
        assert len(list(csv.DictReader(handle))) == 3
    assert smoke["summary"]["split"] == "patient" and smoke["summary"]["leaky"] is False


def test_every_trial_is_a_child_run_with_its_epochs_and_checkpoint(smoke):
    client, summary = smoke["client"], smoke["summary"]
    parent_id = summary["mlflow"]["parent_run_id"]
    parent = client.get_run(parent_id)
    assert parent.info.status == "FINISHED" and "mlflow.parentRunId" not in parent.data.tags
    assert parent.data.tags["mlflow.runName"] == smoke["out"].name
    assert "test_balanced_accuracy" in parent.data.metrics
    children = children_of(client, parent_id)
    assert len(children) == 3
    epochs = {t["trial_id"].removeprefix("trial_"): len(t["history"]) for t in summary["trials"]}
    for child in children:
        trial_id = child.data.tags["trial_name"].removeprefix("trainable_")
        history = client.get_metric_history(child.info.run_id, "val_balanced_accuracy")
        assert sorted(m.step for m in history) == list(range(1, epochs[trial_id] + 1))
        assert child.data.params["model.backbone"] in {"resnet18", "mobilenetv2_100"}
        assert child.data.params["compute.autocast"] in {"bf16", "fp32"}
        assert child.data.params["compute.threads"].isdigit()
        assert child.data.tags["preprocess_key"] == parent.data.tags["preprocess_key"]
        artifacts = [a.path for a in client.list_artifacts(child.info.run_id, "checkpoint")]
        assert artifacts == ["checkpoint/model.pt"]
    parent_artifacts = {a.path for a in client.list_artifacts(parent_id)}
    assert {"search.json", "trials.csv", "report.md", "best", "explain"} <= parent_artifacts


def test_best_model_is_logged_as_an_mlflow_model_that_predicts(smoke, monkeypatch):
    import mlflow
    import numpy as np

    assert smoke["uri_after"] == smoke["uri_before"], "a later search would log to this store"
    client, summary = smoke["client"], smoke["summary"]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", summary["mlflow"]["uri"])
    parent_id = summary["mlflow"]["parent_run_id"]
    models = mlflow.search_logged_models(
        experiment_ids=[client.get_run(parent_id).info.experiment_id], output_format="list"
    )
    model = next(m for m in models if m.source_run_id == parent_id and m.name == "best_model")
    logits = mlflow.pyfunc.load_model(model.model_uri).predict(np.zeros((5, 1, 64, 64), np.float32))
    assert np.asarray(logits).shape == (5, 3)


def test_best_trial_is_evaluated_once_on_the_test_split(smoke):
    out, summary = smoke["out"], smoke["summary"]
    best = next(t for t in summary["trials"] if summary["best_trial"] == t["trial_id"])
    metric = summary["metric"]
    assert best["best"][metric] == max(t["best"][metric] for t in summary["trials"])
    metrics = json.loads((out / "best" / "metrics.json").read_text())
    with open(out / "best" / "predictions.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert metrics["n"] == len(rows) == 52  # the patient split's test part of 258 films
    labels = metrics["labels"]
    for i, true in enumerate(labels):
        for j, pred in enumerate(labels):
            count = sum(r["true"] == true and r["pred"] == pred for r in rows)
            assert metrics["confusion_matrix"][i][j] == count


def test_best_model_is_explained_and_reported(smoke):
    out = smoke["out"]
    lime = json.loads((out / "explain" / "lime.json").read_text())
    images = lime["images"] if isinstance(lime, dict) else lime
    assert len(images) == 2
    assert len(list((out / "explain").glob("*_lime.png"))) == 2
    report = (out / "report.md").read_text()
    for heading in ("## Headline", "Table 3 analogue", "Table 4 analogue", "Figure 8 analogue"):
        assert heading in report
    assert (out / "report_figures" / "figure6_val_accuracy.png").is_file()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get_json(url: str, body: dict | None = None) -> dict:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


@contextlib.contextmanager
def _mlflow_server(uri: str, cwd: Path, command: str = "server"):
    """``mlflow server`` (or ``mlflow ui``) on a free port of 127.0.0.1; yields its base URL."""
    port = _free_port()
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    argv = [
        sys.executable, "-m", "mlflow", command, "--backend-store-uri", uri,
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
    ]  # fmt: skip
    server = subprocess.Popen(
        argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=cwd
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"mlflow {command} did not start (exit code {server.poll()})")
                time.sleep(0.5)
        yield base
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_mlflow_server_serves_the_search_over_rest(smoke, tmp_path):
    summary = smoke["summary"]
    with _mlflow_server(summary["mlflow"]["uri"], tmp_path) as base:
        experiment = _get_json(
            f"{base}/api/2.0/mlflow/experiments/get-by-name?experiment_name=mammo_ray"
        )["experiment"]
        runs = _get_json(
            f"{base}/api/2.0/mlflow/runs/search",
            {"experiment_ids": [experiment["experiment_id"]], "max_results": 100},
        )["runs"]
        parent_id = summary["mlflow"]["parent_run_id"]
        parents = {
            tag["value"]
            for run in runs
            for tag in run["data"].get("tags", [])
            if tag["key"] == "mlflow.parentRunId"
        }
        assert len(runs) == 4 and parents == {parent_id}
        history = _get_json(
            f"{base}/api/2.0/mlflow/metrics/get-history?run_id={parent_id}&metric_key=test_accuracy"
        )["metrics"]
        assert len(history) == 1


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _page_text(url: str, profile: Path) -> str:
    """The text of ``url`` once headless Chromium has run its JavaScript (20 s virtual time)."""
    result = subprocess.run(
        [
            CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={profile}",
            "--virtual-time-budget=20000", "--dump-dom", url,
        ],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    text = re.sub(r"<script.*?</script>|<style.*?</style>|<[^>]+>", " ", result.stdout, flags=re.S)
    return " ".join(html.unescape(text).split())


@pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium (Debian: apt-get install chromium)")
def test_the_mlflow_ui_shows_the_search_its_trials_and_their_states(smoke, tmp_path):
    """What a user sees in ``mlflow ui`` at the URL the search prints. Before, the experiment
    opened on MLflow 3's GenAI traces overview and the parent was named 'search search'."""
    client, summary = smoke["client"], smoke["summary"]
    parent_id = summary["mlflow"]["parent_run_id"]
    experiment_id = client.get_run(parent_id).info.experiment_id
    children = children_of(client, parent_id)
    with _mlflow_server(summary["mlflow"]["uri"], tmp_path, "ui") as base:
        runs_page = _page_text(ui_url(experiment_id, base=base), tmp_path / "profile")
        assert f"{smoke['out'].name} " in runs_page and "4 matching runs" in runs_page, runs_page
        parent_page = _page_text(ui_url(experiment_id, parent_id, base), tmp_path / "profile")
        assert "Status Finished" in parent_page, parent_page
        for child in children:
            name = child.data.tags["mlflow.runName"]
            assert re.fullmatch(r"\w+: .*model\.backbone=\w+.*", name), name
            assert name in parent_page
            page = _page_text(ui_url(experiment_id, child.info.run_id, base), tmp_path / "profile")
            assert "Status Finished" in page and name in page


def test_failing_trial_is_retried_then_recorded_and_the_search_goes_on(
    ray_local, mias_dev_path, cache_root, tmp_path
):
    state = timm.create_model("resnet18", in_chans=1, num_classes=3).state_dict()
    state["conv1.weight"][0, 0, 0, 0] = float("nan")
    poisoned = tmp_path / "poisoned.pth"
    torch.save(state, poisoned)
    space = tmp_path / "failing.yaml"
    space.write_text(
        f"base: {PUBLISHED_PATIENT}\n"
        "fixed: {input_size: 64, epochs: 1, augment.mode: none}\n"
        f"grid:\n  model.pretrained: [none, 'file:{poisoned}']\n"
        "search: {max_epochs: 1, scheduler: none, max_concurrent: 1, max_failures: 1}\n"
    )
    out = tmp_path / "failing"
    assert run_cli(main, search_argv(space, mias_dev_path, out, cache_root, "--explain", "0")) == 0
    summary = json.loads((out / "search.json").read_text())
    by_weights = {t["params"]["model.pretrained"]: t for t in summary["trials"]}
    healthy, poisoned_trial = by_weights["none"], by_weights[f"file:{poisoned}"]
    assert healthy["status"] == "TERMINATED" and len(healthy["history"]) == 1
    assert poisoned_trial["status"] == "ERROR" and poisoned_trial["failures"] == 2
    assert "training diverged" in poisoned_trial["error"]
    assert summary["best_trial"] == healthy["trial_id"]
    client = MlflowClient(summary["mlflow"]["uri"])
    children = children_of(client, summary["mlflow"]["parent_run_id"])
    assert sorted(r.info.status for r in children) == ["FAILED", "FINISHED"]
    assert "Failed trials" in (out / "report.md").read_text()


def _terminated_trials(tune_dir: Path) -> set[str]:
    """Trial ids that Tune's saved experiment state marks TERMINATED."""
    done = set()
    for path in tune_dir.glob("experiment_state-*.json"):
        try:
            state = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        for trial_json, _ in state.get("trial_data", []):
            trial = json.loads(trial_json)
            if trial.get("status") == "TERMINATED":
                done.add(trial["trial_id"])
    return done


def _small_space(tmp_path: Path, num_samples: int, epochs: int) -> Path:
    """mobilenetv2 at 64 px, one learning rate per trial, one trial at a time."""
    space = tmp_path / "small.yaml"
    space.write_text(
        f"base: {PUBLISHED_PATIENT}\n"
        "fixed: {model.pretrained: none, model.backbone: mobilenetv2_100, input_size: 64,"
        f" epochs: {epochs}, augment.mode: none}}\n"
        "params:\n  optim.lr: {loguniform: [1.0e-4, 3.0e-3]}\n"
        f"search: {{num_samples: {num_samples}, max_epochs: {epochs}, max_concurrent: 1}}\n"
    )
    return space


class _Driver:
    """``python -m mammo_ray.search`` in its own process group, as a user starts it in a shell
    (Ctrl-C there signals the whole group), with a short private RAY_TMPDIR."""

    def __init__(self, argv: list[str], cwd: Path):
        self.ray_tmp = tempfile.mkdtemp(prefix="ray-")  # socket paths must stay < 108 bytes
        self.process = subprocess.Popen(
            [sys.executable, "-m", "mammo_ray.search", *argv],
            env={**os.environ, "RAY_TMPDIR": self.ray_tmp},
            cwd=cwd,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )

    def wait_until(self, condition, seconds: float, what: str) -> None:
        deadline = time.monotonic() + seconds
        while not condition():
            if self.process.poll() is not None:
                pytest.fail(f"the search ended before {what}: {self.process.stderr.read()[-2000:]}")
            if time.monotonic() > deadline:
                self.signal(signal.SIGKILL)
                pytest.fail(f"no {what} within {seconds:.0f} s")
            time.sleep(0.2)

    def signal(self, signum: int) -> None:
        os.killpg(self.process.pid, signum)

    def finish(self, seconds: float) -> tuple[int, str]:
        try:
            _, stderr = self.process.communicate(timeout=seconds)
        finally:
            with contextlib.suppress(ProcessLookupError):
                self.signal(signal.SIGKILL)
            shutil.rmtree(self.ray_tmp, ignore_errors=True)
        return self.process.returncode, stderr


def test_killed_search_resumes_without_redoing_finished_trials(
    ray_local, mias_dev_path, cache_root, tmp_path
):
    out = tmp_path / "resumable"
    space = _small_space(tmp_path, num_samples=4, epochs=1)
    argv = search_argv(space, mias_dev_path, out, cache_root, "--explain", "0")
    driver = _Driver(argv, tmp_path)
    done: set[str] = set()

    def some_trial_done() -> bool:
        done.update(_terminated_trials(out / "tune"))
        return bool(done)

    driver.wait_until(some_trial_done, 300, "finished trial")
    driver.signal(signal.SIGKILL)
    driver.finish(30)
    assert not (out / "search.json").exists() and len(done) < 4

    assert run_cli(main, [*argv, "--resume"]) == 0
    summary = json.loads((out / "search.json").read_text())
    trials = {t["trial_id"].removeprefix("trial_"): t for t in summary["trials"]}
    assert len(trials) == 4 and done <= set(trials)
    assert all(t["status"] == "TERMINATED" for t in trials.values())
    for trial_id in done:
        with open(out / "tune" / f"trial_{trial_id}" / "progress.csv") as handle:
            assert len(list(csv.DictReader(handle))) == 1, "a finished trial was trained again"
    client = MlflowClient(summary["mlflow"]["uri"])
    parent = client.get_run(summary["mlflow"]["parent_run_id"])
    assert parent.info.status == "FINISHED"
    assert "RUNNING" not in {r.info.status for r in children_of(client, parent.info.run_id)}


def _child_attempts(client: MlflowClient, parent_id: str) -> dict[str, list]:
    """Trial name -> its child runs (one per attempt: a resumed trial has several)."""
    attempts: dict[str, list] = {}
    for run in children_of(client, parent_id):
        attempts.setdefault(run.data.tags["trial_name"], []).append(run)
    return attempts


def test_ctrl_c_stops_the_search_as_killed_and_resume_finishes_it(
    ray_local, mias_dev_path, cache_root, tmp_path
):
    """Before: Tune returned normally, the search reported '1 finished' for a trial with no
    epoch, exited 0, its parent run FINISHED with a child left RUNNING; after --resume the
    trial's checkpoint went to the KILLED attempt's run."""
    out = tmp_path / "interrupted"
    space = _small_space(tmp_path, num_samples=3, epochs=3)
    argv = search_argv(space, mias_dev_path, out, cache_root, "--explain", "0")
    driver = _Driver(argv, tmp_path)

    def first_epoch_reported() -> bool:
        return any(
            len(path.read_text().splitlines()) >= 2 for path in out.glob("tune/*/progress.csv")
        )

    driver.wait_until(first_epoch_reported, 300, "first epoch")
    driver.signal(signal.SIGINT)
    code, stderr = driver.finish(240)
    assert code == 130, stderr[-3000:]
    last = stderr.strip().splitlines()[-1]
    assert last.startswith(f"interrupted: SIGINT stopped search '{out.name}' before it finished")
    assert last.endswith("--resume") and "python -m mammo_ray.search" in last
    assert not (out / "report.md").exists() and not (out / "search.json").exists()
    client = MlflowClient(f"sqlite:///{out / 'mlflow.db'}")
    parent_id = json.loads((out / "search_state.json").read_text())["parent_run_id"]
    assert client.get_run(parent_id).info.status == "KILLED"
    statuses = {run.info.status for run in children_of(client, parent_id)}
    assert "KILLED" in statuses and "RUNNING" not in statuses

    assert run_cli(main, [*argv, "--resume"]) == 0
    assert client.get_run(parent_id).info.status == "FINISHED"
    attempts = _child_attempts(client, parent_id)
    assert len(attempts) == 3 and any(len(runs) > 1 for runs in attempts.values())
    for runs in attempts.values():
        holding = [r for r in runs if client.list_artifacts(r.info.run_id, "checkpoint")]
        assert [r.info.status for r in holding] == ["FINISHED"]
    summary = json.loads((out / "search.json").read_text())
    assert [t["status"] for t in summary["trials"]] == ["TERMINATED"] * 3
    for path in out.glob("tune/trial_*/progress.csv"):
        with open(path) as handle:
            epochs = [int(row["epoch"]) for row in csv.DictReader(handle)]
        assert epochs == list(range(1, len(epochs) + 1)), f"{path.parent.name}: epoch trained twice"


def test_a_search_killed_during_set_up_continues(ray_local, mias_dev_path, cache_root, tmp_path):
    """Before: once search_state.json existed, --resume said 'nothing to resume', a plain
    re-run said 'exists; pass --resume', and the parent run stayed RUNNING for ever."""
    out = tmp_path / "early"
    argv = search_argv(
        _small_space(tmp_path, num_samples=1, epochs=1), mias_dev_path, out, cache_root,
        "--explain", "0",
    )  # fmt: skip
    driver = _Driver(argv, tmp_path)
    driver.wait_until((out / "search_state.json").exists, 300, "search_state.json")
    driver.signal(signal.SIGKILL)
    driver.finish(30)
    parent_id = json.loads((out / "search_state.json").read_text())["parent_run_id"]

    assert run_cli(main, [*argv, "--resume"]) == 0
    summary = json.loads((out / "search.json").read_text())
    assert summary["mlflow"]["parent_run_id"] == parent_id
    assert [t["status"] for t in summary["trials"]] == ["TERMINATED"]
    client = MlflowClient(summary["mlflow"]["uri"])
    assert client.get_run(parent_id).info.status == "FINISHED"


def test_an_existing_search_needs_resume_and_resume_needs_a_search(
    smoke, mias_dev_path, tmp_path, capsys
):
    argv = search_argv(SMOKE, mias_dev_path, tmp_path / "taken", tmp_path / "cache")
    assert run_cli(main, [*argv, "--resume"]) == 2
    assert "nothing to resume" in capsys.readouterr().err
    argv = search_argv(SMOKE, mias_dev_path, smoke["out"], tmp_path / "cache")
    assert run_cli(main, argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "--resume" in err and len(err.strip().splitlines()) == 1


def test_a_planned_search_states_its_plan_and_keeps_what_the_command_line_fixed(
    ray_local, mias_dev_path, cache_root, tmp_path, capsys
):
    """search.plan: --plan prints the plan (throughput measured once and cached) and stops; the
    search then prints it again from the cache, keeps --num-samples and records the plan."""
    space = tmp_path / "planned.yaml"
    text = SMOKE.read_text().replace("base: published_patient.yaml", f"base: {PUBLISHED_PATIENT}")
    text = text.replace("num_samples: 3", "num_samples: 6")
    space.write_text(text + "  time_budget_s: 600\n  plan: true\n")
    out = tmp_path / "planned"
    assert run_cli(main, [*search_argv(space, mias_dev_path, out, cache_root), "--plan"]) == 0
    printed = capsys.readouterr().out
    assert "plan: 2 epochs per trial" in printed and "budget fits about" in printed
    assert "the search samples 6" in printed and not (out / "search.json").exists()
    figures = next(iter(json.loads((cache_root / "throughput.json").read_text()).values()))
    assert set(figures) == {"resnet18@64/b16", "mobilenetv2_100@64/b16"}
    argv = search_argv(space, mias_dev_path, out, cache_root, "--num-samples", "2")
    assert run_cli(main, [*argv, "--explain", "0"]) == 0
    printed = capsys.readouterr().out
    assert "timing" not in printed and "the search samples 2 (fixed)" in printed
    state = json.loads((out / "search_state.json").read_text())
    assert (state["plan"]["max_epochs"], state["plan"]["num_samples"]) == (2, 2)
    summary = json.loads((out / "search.json").read_text())
    assert len(summary["trials"]) == 2 and summary["plan"] == state["plan"]
    assert "plan against measured: the published trial took" in printed


def test_no_data_and_bad_space_are_one_line_and_exit_2(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("MAMMO_RAY_DATA", raising=False)
    assert run_cli(main, ["--space", str(SMOKE)]) == 2
    assert "python -m mammo_ray.data fetch" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"base: {PUBLISHED_PATIENT}\nparams:\n  model.backbone: {{choice: [resnet9]}}\n")
    assert run_cli(main, ["--space", str(bad), "--data", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "resnet9" in err and len(err.strip().splitlines()) == 1


def test_trial_params_keep_a_conditional_parameter_only_where_it_was_sampled():
    from mammo_ray.search.results import trial_params

    space = load_search_space(REPO / "search_spaces" / "default.yaml")
    constants = {"optim.momentum": 0.9, "optim.lr": 0.01, "epochs": 6}
    adam = trial_params(space, {**constants, "optim.name": "adam"})
    sgd = trial_params(space, {**constants, "optim.name": "sgd"})
    assert adam == {"optim.name": "adam", "optim.lr": 0.01}
    assert sgd == {"optim.name": "sgd", "optim.lr": 0.01, "optim.momentum": 0.9}
