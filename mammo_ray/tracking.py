"""MLflow tracking: one run per training, nested under a parent run per search.

The store is embedded by default — a SQLite file ``<out>/mlflow.db`` — or
``$MLFLOW_TRACKING_URI`` when set; no server is needed. The URI is always absolute, because
Ray Tune trials run in their own working directories. With a SQLite store, artifacts go to
``mlartifacts/`` beside the database file (MLflow's own default is ``./mlruns`` under the
current directory, which would scatter them). Browse a store with::

    mlflow ui --backend-store-uri sqlite:////abs/path/to/mlflow.db

Uses :class:`mlflow.tracking.MlflowClient` with explicit run ids (no global active run), so
the same code works in the driver and inside Ray workers.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import mlflow
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from mammo_ray.config import flatten_dotted
from mammo_ray.errors import ConfigError

__all__ = [
    "DEFAULT_EXPERIMENT",
    "EXPERIMENT_KIND",
    "tracking_uri",
    "artifact_location",
    "flatten",
    "git_commit",
    "TrainingRun",
    "global_tracking_uri",
    "ui_url",
]

DEFAULT_EXPERIMENT = "mammo_ray"
EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")
"""MLflow 3's experiment kind tag: a model-training experiment, so the UI opens on its runs
(an experiment without it opens on the GenAI traces overview)."""
_SQLITE = "sqlite:///"
_MAX_PARAM_CHARS = 6000
_BATCH = 100


def tracking_uri(out_dir: str | Path, uri: str | None = None) -> str:
    """``uri``, else ``$MLFLOW_TRACKING_URI``, else ``sqlite:////<abs out_dir>/mlflow.db``.

    A SQLite URI with a relative path (``sqlite:///runs/mlflow.db``) is made absolute against
    the current directory, so that Ray workers in other directories open the same file.
    """
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        path = Path(out_dir).resolve() / "mlflow.db"
        path.parent.mkdir(parents=True, exist_ok=True)
        return f"{_SQLITE}{path}"
    if uri.startswith(_SQLITE):
        path = Path(uri[len(_SQLITE) :])
        if str(path) != ":memory:" and not path.is_absolute():
            return f"{_SQLITE}{path.resolve()}"
    return uri


def artifact_location(uri: str) -> str | None:
    """Artifact root for new experiments: ``<db folder>/mlartifacts`` for SQLite, else None.

    None leaves the choice to the tracking server.
    """
    if not uri.startswith(_SQLITE):
        return None
    database = Path(uri[len(_SQLITE) :])
    return (database.parent / "mlartifacts").as_uri() if database.is_absolute() else None


def ui_url(
    experiment_id: str, run_id: str | None = None, base: str = "http://127.0.0.1:5000"
) -> str:
    """The ``mlflow ui`` page of an experiment's runs (or of one run) in the model-training view.

    MLflow 3's UI opens every experiment in its GenAI view (traces) unless the page is asked for
    ``workflowType=machine_learning``; it remembers the choice afterwards.

    >>> ui_url("1", "abc")
    'http://127.0.0.1:5000/#/experiments/1/runs/abc?workflowType=machine_learning'
    """
    page = f"runs/{run_id}" if run_id else "runs"
    return f"{base}/#/experiments/{experiment_id}/{page}?workflowType=machine_learning"


def flatten(data: Mapping[str, Any]) -> dict[str, str]:
    """MLflow params: ``{"a": {"b": 1}, "c": [1, 2]}`` -> ``{"a.b": "1", "c": "[1, 2]"}``."""
    return {key: str(value) for key, value in flatten_dotted(data).items()}


def git_commit(path: str | Path = ".") -> str | None:
    """The commit of the git checkout holding ``path``, or None outside one (or without git)."""
    try:
        result = subprocess.run(
            ["git", "-C", str(path), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() or None


@contextlib.contextmanager
def global_tracking_uri(uri: str) -> Iterator[None]:
    """Point MLflow's global tracking URI at ``uri`` for the block, then restore the old one.

    ``mlflow.set_tracking_uri`` also sets ``$MLFLOW_TRACKING_URI`` (for subprocesses), and Ray
    Tune's ``MLflowLoggerCallback`` calls it; without the restore, the next search or training
    of the same process would log into this store instead of its own.
    """

    previous = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(previous)


class TrainingRun:
    """An MLflow run: params, per-epoch metrics, final metrics, artifacts and tags.

    Creating one starts a run in ``experiment`` (created if missing, with
    :func:`artifact_location`; marked :data:`EXPERIMENT_KIND`) tagged with ``tags``, the git
    commit of the package when it runs from a checkout (``git_commit`` and
    ``mlflow.source.git.commit``) and, with ``parent_run_id``, ``mlflow.parentRunId`` so the
    MLflow UI nests it. Use as a context manager: the run ends FINISHED, KILLED on Ctrl-C, or
    FAILED if the block raised.
    """

    def __init__(
        self,
        uri: str,
        *,
        experiment: str = DEFAULT_EXPERIMENT,
        run_name: str | None = None,
        tags: Mapping[str, str] | None = None,
        parent_run_id: str | None = None,
    ):

        self.client = MlflowClient(tracking_uri=uri)
        found = self.client.get_experiment_by_name(experiment)
        self.experiment_id: str = (
            found.experiment_id
            if found
            else self.client.create_experiment(experiment, artifact_location(uri))
        )
        if found is None or found.tags.get(EXPERIMENT_KIND[0]) != EXPERIMENT_KIND[1]:
            self.client.set_experiment_tag(self.experiment_id, *EXPERIMENT_KIND)
        all_tags = {k: str(v) for k, v in (tags or {}).items()}
        if parent_run_id:
            all_tags["mlflow.parentRunId"] = parent_run_id
        commit = git_commit(Path(__file__).parent)
        if commit:
            all_tags.setdefault("git_commit", commit)
            all_tags.setdefault("mlflow.source.git.commit", commit)
        run = self.client.create_run(self.experiment_id, tags=all_tags, run_name=run_name)
        self.run_id: str = run.info.run_id

    @classmethod
    def resume(cls, uri: str, run_id: str) -> TrainingRun:
        """Attach to the existing run ``run_id`` of the store at ``uri`` and mark it RUNNING.

        Raises
        ------
        ConfigError
            When the store has no such run.
        """

        client = MlflowClient(tracking_uri=uri)
        try:
            run = client.get_run(run_id)
        except MlflowException:
            raise ConfigError(f"{uri}: no MLflow run {run_id!r} to resume") from None
        client.update_run(run_id, status="RUNNING")
        resumed = cls.__new__(cls)
        resumed.client = client
        resumed.experiment_id = run.info.experiment_id
        resumed.run_id = run_id
        return resumed

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Log ``flatten(params)``, each value cut to MLflow's 6000 characters."""

        items = [Param(k, v[:_MAX_PARAM_CHARS]) for k, v in flatten(params).items()]
        for start in range(0, len(items), _BATCH):
            self.client.log_batch(self.run_id, params=items[start : start + _BATCH])

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """Log the numeric values of ``metrics`` at ``step`` (0 when None); others are skipped."""

        now = int(time.time() * 1000)
        items = [
            Metric(key, float(value), now, step or 0)
            for key, value in metrics.items()
            if isinstance(value, (int, float)) and not isinstance(value, bool)
        ]
        for start in range(0, len(items), _BATCH):
            self.client.log_batch(self.run_id, metrics=items[start : start + _BATCH])

    def set_tags(self, tags: Mapping[str, Any]) -> None:

        self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_artifacts(self, paths: Iterable[str | Path], artifact_path: str | None = None) -> None:
        """Copy files (and folders, recursively) into the run's artifacts; missing ones skipped."""
        for path in map(Path, paths):
            if path.is_dir():
                self.client.log_artifacts(self.run_id, str(path), artifact_path)
            elif path.is_file():
                self.client.log_artifact(self.run_id, str(path), artifact_path)

    def end(self, status: str = "FINISHED") -> None:
        """End the run with ``status``: FINISHED, FAILED or KILLED."""
        self.client.set_terminated(self.run_id, status)

    def __enter__(self) -> TrainingRun:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.end("FINISHED")
        else:
            self.end("KILLED" if issubclass(exc_type, KeyboardInterrupt) else "FAILED")
