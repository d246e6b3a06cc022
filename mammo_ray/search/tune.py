"""The Ray Tune side of a search: the trainable, the searcher and scheduler, the stopper, the
progress table.

``trainable`` wraps :func:`~mammo_ray.learn.trial.train_trial` with ``tune.report`` as its epoch
callback; :func:`tune_objects` builds Optuna's TPE (seeded, the published point first) or a grid,
and ASHA (Li et al., "A System for Massively Parallel Hyperparameter Tuning", MLSys 2020);
:class:`TrialEpochBudget` stops the search after a total number of trial-epochs.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
from pathlib import Path
from typing import Any

import optuna
from mlflow.tracking import MlflowClient
from ray import tune
from ray.air.integrations.mlflow import MLflowLoggerCallback
from ray.tune import CLIReporter
from ray.tune.experiment import Trial
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search import ConcurrencyLimiter
from ray.tune.search.optuna import OptunaSearch

from mammo_ray.config import flatten_dotted
from mammo_ray.learn.fold_race import FoldProgress, load_progress, race_folds, save_progress
from mammo_ray.learn.inference import compute_choice, select_device
from mammo_ray.learn.trial import load_training_state, train_trial
from mammo_ray.preprocess.prepared import PreparedData
from mammo_ray.process import environment
from mammo_ray.search.results import trial_params
from mammo_ray.search.space import SearchSettings, SearchSpace

__all__ = [
    "TrialEpochBudget",
    "TrialRunsCallback",
    "trial_run_name",
    "trainable",
    "PROGRESS_COLUMNS",
    "progress_reporter",
    "legacy_tune_output",
    "trial_dirname",
    "searched_keys",
    "tune_objects",
    "checkpoint_config",
]


class TrialEpochBudget(tune.Stopper):
    """Stop every trial once ``budget`` epochs have been reported over all trials together.

    Each ``tune.report`` of a trial is one epoch (``train_trial`` reports once per epoch), or
    ``fold_epochs`` epochs for a cross-validated trial (it reports once per fold). Trials
    already running when the budget is reached stop at their next report, so a search with
    ``C`` concurrent trials may train up to ``C - 1`` epochs (or folds) more than ``budget``.
    """

    def __init__(self, budget: int):
        if budget < 1:
            raise ValueError(f"the trial-epoch budget must be >= 1, got {budget}")
        self.budget = budget
        self.used = 0

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        self.used += int(result.get("fold_epochs", 1))
        return self.used >= self.budget

    def stop_all(self) -> bool:
        return self.used >= self.budget


def trainable(
    config: dict[str, Any], data: PreparedData, space: SearchSpace, max_epochs: int
) -> None:
    """The Ray Tune function trainable: ``train_trial`` with ``tune.report`` as epoch callback,
    or with ``search.cv`` :func:`~mammo_ray.learn.fold_race.race_folds` reporting once per fold.
    A restored trial (retry, ``--resume``) goes on after its last reported epoch or fold.

    ``config`` holds dotted keys (Optuna's sample and the constants, or a grid point);
    :meth:`~mammo_ray.search.space.SearchSpace.config_for` turns it into the trial's config.
    """

    full = space.config_for(config, max_epochs)
    compute = compute_choice(str(full.get("precision", "auto")), select_device()).as_json()
    if space.settings.cv is not None:
        _race(full, data, compute)
        return

    def on_epoch(metrics: dict[str, Any], checkpoint: str | None) -> None:
        ckpt = tune.Checkpoint.from_directory(str(Path(checkpoint).parent)) if checkpoint else None
        tune.report({**metrics, "compute": compute}, checkpoint=ckpt)

    restored = tune.get_checkpoint()
    resume = None
    if restored is not None:
        with restored.as_directory() as directory:
            resume = load_training_state(directory)
    train_trial(full, data, on_epoch, resume=resume, save_state=True)


def _race(config: dict[str, Any], data: PreparedData, compute: str) -> None:
    """A cross-validated trial: one ``tune.report`` per fold (with ``compute``, the trial's
    :class:`~mammo_ray.learn.hardware.ComputeChoice`) and the fold progress as its checkpoint;
    a restored trial (retry, ``--resume``) continues after its last fold."""
    restored = tune.get_checkpoint()
    progress = FoldProgress()
    if restored is not None:
        with restored.as_directory() as directory:
            progress = load_progress(directory)

    def on_fold(report: dict[str, Any], progress: FoldProgress) -> None:
        with tempfile.TemporaryDirectory(prefix="mammo-ray-folds-") as directory:
            save_progress(directory, progress, config, data.manifest.key)
            tune.report(
                {**report, "compute": compute},
                checkpoint=tune.Checkpoint.from_directory(directory),
            )

    race_folds(config, data, on_fold, progress)


PROGRESS_COLUMNS = {
    "fold": "fold",
    "epoch": "epoch",
    "train_loss": "loss",
    "val_accuracy": "val acc",
    "val_balanced_accuracy": "val bacc",
    "val_macro_f1": "val F1",
    "val_auc_normal_vs_abnormal": "val AUC",
    "images_per_s": "img/s",
}


def progress_reporter(space: SearchSpace, settings: SearchSettings) -> CLIReporter:
    """Tune's table on the terminal: the searched parameters and the metrics that matter, in
    trial order, refreshed at most every 30 s; the current best trial is named under it.

    Not ``sort_by_metric``: Ray sorts the finished trials by their last metric value, and a
    trial that the time budget ended before its first report has none, so the final table
    raised ``TypeError`` (None < float) and ended the search before its best trial was
    evaluated. The search prints its own best-first list when Tune is done.
    """
    return CLIReporter(
        metric_columns=PROGRESS_COLUMNS,
        parameter_columns=searched_keys(space),
        metric=settings.metric,
        mode=settings.mode,
        max_report_frequency=30,
    )


def legacy_tune_output() -> contextlib.AbstractContextManager[None]:
    """Use Tune's classic output engine for the block: the new one (Ray >= 2.7) ignores a
    ``progress_reporter`` and prints every trial's whole config, ~60 constants included."""
    return environment(RAY_AIR_NEW_OUTPUT="0")


class TrialRunsCallback(MLflowLoggerCallback):
    """Ray's MLflow callback (a child run per trial attempt) with readable run names.

    Ray names a child run ``trainable_<trial id>``; this renames it
    ``<trial id>: <searched values>`` (``e3ef4791: model.backbone=resnet18, optim.lr=0.00031``)
    so the MLflow UI's run list says what each trial tried. The ``trial_name`` tag keeps Ray's
    name, which :func:`~mammo_ray.search.results.log_trial_checkpoints` matches on.
    """

    def __init__(self, space: SearchSpace, **kwargs: Any):
        super().__init__(**kwargs)
        self.space = space
        self._computed: set[Trial] = set()

    def log_trial_result(self, iteration: int, trial: Trial, result: dict[str, Any]) -> None:
        """Log the result; a cross-validated trial's fold ``k`` (0-based, as ``train cv`` names
        folds) also gets its per-epoch curves, as ``fold_<k>/<metric>`` at step ``epoch``. The
        trial's compute choice (``compute``) becomes its ``compute.*`` params."""
        curves = json.loads(result.get("curves") or "[]")
        run_id = self._trial_runs[trial]
        if result.get("compute") and trial not in self._computed:
            self._computed.add(trial)
            self.mlflow_util.log_params(
                run_id=run_id,
                params_to_log={f"compute.{k}": v for k, v in json.loads(result["compute"]).items()},
            )
        for epoch in curves:
            self.mlflow_util.log_metrics(
                run_id=run_id,
                metrics_to_log={
                    f"fold_{result['fold'] - 1}/{k}": v for k, v in epoch.items() if k != "epoch"
                },
                step=int(epoch["epoch"]),
            )
        super().log_trial_result(
            iteration, trial, {k: v for k, v in result.items() if k not in ("curves", "compute")}
        )

    def log_trial_start(self, trial: Trial) -> None:
        new = trial not in self._trial_runs
        super().log_trial_start(trial)
        if new:
            MlflowClient(self.tracking_uri).set_tag(
                self._trial_runs[trial], "mlflow.runName", trial_run_name(self.space, trial)
            )


def trial_run_name(space: SearchSpace, trial: Trial) -> str:
    """``<trial id>: key=value, ...`` over the values searched for the trial (floats to 2
    significant digits)."""
    params = trial_params(space, trial.config)
    values = ", ".join(
        f"{key}={value:.2g}" if isinstance(value, float) else f"{key}={value}"
        for key, value in params.items()
    )
    return f"{trial.trial_id}: {values}" if values else str(trial.trial_id)


def trial_dirname(trial: Trial) -> str:
    """``trial_<id>``: Tune's default folder name spells out every constant of the config."""
    return f"trial_{trial.trial_id}"


def searched_keys(space: SearchSpace) -> list[str]:
    return [p.key for p in space.params] + [k for k, _ in space.grid]


def tune_objects(
    space: SearchSpace, settings: SearchSettings, seed: int
) -> tuple[dict[str, Any] | None, ConcurrencyLimiter | None, ASHAScheduler | None]:
    """(param_space, search_alg, scheduler) for a sampled space or a grid."""

    constants = flatten_dotted(space.base)
    scheduler = None
    if settings.scheduler == "asha":
        scheduler = ASHAScheduler(
            metric=settings.metric,
            mode=settings.mode,
            time_attr="training_iteration",
            max_t=settings.max_t,
            grace_period=settings.grace_period,
            reduction_factor=settings.reduction_factor,
        )
    if space.grid:
        param_space = {k: v for k, v in constants.items() if k not in dict(space.grid)}
        param_space.update({k: tune.grid_search(list(v)) for k, v in space.grid})
        return param_space, None, scheduler

    searcher = OptunaSearch(
        space=space.define_by_run,
        metric=settings.metric,
        mode=settings.mode,
        points_to_evaluate=[space.published_point()] if space.enqueue_published else None,
        sampler=(
            optuna.samplers.TPESampler(seed=seed)
            if settings.sampler == "tpe"
            else optuna.samplers.RandomSampler(seed=seed)
        ),
    )
    return None, ConcurrencyLimiter(searcher, max_concurrent=settings.max_concurrent), scheduler


def checkpoint_config(settings: SearchSettings) -> tune.CheckpointConfig:
    """One checkpoint per trial: its best epoch, or with ``cv`` its last fold (which holds
    every fold model so far; a retry continues from it)."""
    if settings.cv is not None:
        return tune.CheckpointConfig(num_to_keep=1)
    return tune.CheckpointConfig(
        num_to_keep=1,
        checkpoint_score_attribute=settings.metric,
        checkpoint_score_order=settings.mode,
    )
