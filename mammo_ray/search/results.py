"""What a finished (or interrupted) search leaves: one record per trial, ``trials.csv``, the
top-trials table, and each trial's best checkpoint in its MLflow child run.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
from mlflow.entities import Run
from ray.tune import Checkpoint, Result, ResultGrid

from mammo_ray.cli import text_table
from mammo_ray.search.space import SearchSpace
from mammo_ray.tracking import TrainingRun

__all__ = [
    "TRIAL_COLUMNS",
    "trial_params",
    "trial_history",
    "trial_record",
    "failures",
    "child_runs",
    "end_interrupted_children",
    "trial_rank",
    "best_trial",
    "best_checkpoint",
    "log_trial_checkpoints",
    "print_top_trials",
    "write_trials_csv",
]


TRIAL_COLUMNS = (
    "val_balanced_accuracy",
    "val_accuracy",
    "val_macro_f1",
    "val_loss",
    "train_loss",
    "images_per_s",
)


def trial_params(space: SearchSpace, config: dict[str, Any]) -> dict[str, Any]:
    """The searched values of one trial; a conditional parameter only where it was sampled
    (``optim.momentum`` for SGD), since Tune's config also holds the base's constant value."""
    params = {k: config[k] for k, _ in space.grid if k in config}
    for spec in space.params:
        if spec.key in config and spec.active(config):
            params[spec.key] = config[spec.key]
    return params


def trial_history(result: Result) -> list[dict[str, Any]]:
    frame = result.metrics_dataframe
    if frame is None or frame.empty:
        return []
    keep = [
        c
        for c in frame.columns
        if c in ("epoch", "fold", "folds") or c.startswith(("val_", "train_", "fold_", "cv_"))
    ]
    keep += [c for c in ("images_per_s", "epoch_seconds") if c in frame.columns]
    rows = frame[keep].to_dict("records")
    return [{k: (None if v != v else v) for k, v in row.items()} for row in rows]


def trial_record(result: Result, space: SearchSpace, metric: str, mode: str) -> dict[str, Any]:
    """One trial of ``search.json``; its ``best`` is the epoch best by ``metric``, or for a
    cross-validated trial its last report (out of fold over every fold it ran)."""
    history = trial_history(result)
    frame = result.metrics_dataframe
    reported = frame is not None and not frame.empty
    compute = frame["compute"].dropna() if reported and "compute" in frame else []
    scored = [h for h in history if h.get(metric) is not None]
    if scored and "fold" in scored[-1]:
        best = scored[-1]
    else:
        best = (max if mode == "max" else min)(scored, key=lambda h: h[metric]) if scored else None
    return {
        "trial_id": Path(result.path).name,
        "status": "ERROR" if result.error else ("TERMINATED" if history else "CUT"),
        "failures": failures(result),
        "params": trial_params(space, result.config),
        "compute": json.loads(compute.iloc[0]) if len(compute) else None,
        "seconds": float(frame["time_total_s"].max()) if reported else None,
        "best": best,
        "history": history,
        "error": None if result.error is None else str(result.error).strip().splitlines()[-1][:500],
    }


def failures(result: Result) -> int:
    """How many times the trial raised: one ``Failure # k`` block each in Tune's error.txt."""
    try:
        with result.filesystem.open_input_stream(f"{result.path}/error.txt") as stream:
            text = stream.read().decode(errors="replace")
    except (FileNotFoundError, OSError):
        return 0
    return sum(line.startswith("Failure # ") for line in text.splitlines())


def child_runs(parent: TrainingRun) -> list[Run]:
    """The MLflow child runs of the search's parent run (one per trial)."""
    return parent.client.search_runs(
        [parent.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{parent.run_id}'",
        max_results=10_000,
    )


def end_interrupted_children(parent: TrainingRun) -> None:
    """Mark KILLED the child runs a killed driver left RUNNING; Tune restarts those trials."""
    for run in child_runs(parent):
        if run.info.status == "RUNNING":
            parent.client.set_terminated(run.info.run_id, "KILLED")


def trial_rank(trial: dict[str, Any], metric: str, mode: str) -> tuple[int, float]:
    """Sort key of a trial record, higher is better: a cross-validated trial's folds run, then
    its ``metric`` (negated for ``mode: min``), so one stopped after a lucky first fold never
    outranks one scored out of fold over every fold."""
    best = trial["best"]
    return int(best.get("fold", 0)), (1.0 if mode == "max" else -1.0) * best[metric]


def best_trial(
    trials: list[dict[str, Any]],
    metric: str,
    mode: str,
    keep: Callable[[dict[str, Any]], bool] | None = None,
) -> dict[str, Any] | None:
    """The best of the trial records that reported (and pass ``keep``), by :func:`trial_rank`."""
    scored = [t for t in trials if t["best"] is not None and (keep is None or keep(t))]
    return max(scored, key=lambda t: trial_rank(t, metric, mode)) if scored else None


def best_checkpoint(result: Result, metric: str, mode: str) -> Checkpoint | None:
    """The trial's checkpoint with the best ``metric``, or None when it saved none."""
    return result.get_best_checkpoint(metric, mode) if result.best_checkpoints else None


def log_trial_checkpoints(parent: TrainingRun, results: ResultGrid, metric: str, mode: str) -> None:
    """Log each trial's best checkpoint (``model.pt``) into its MLflow child run.

    ``MLflowLoggerCallback`` names a child run's ``trial_name`` tag after the trial
    (``trainable_<trial id>``) and uploads the trial's driver-side folder, which holds no
    checkpoint; the checkpoints live in Tune's storage, so they are copied from there. A trial
    continued by ``--resume`` has a run per attempt: the checkpoint goes to the attempt that
    finished (the latest, when none did), never to one an interruption KILLED.
    """
    attempts = sorted(
        child_runs(parent), key=lambda run: (run.info.status == "FINISHED", run.info.start_time)
    )
    names = {run.data.tags.get("trial_name", ""): run.info.run_id for run in attempts}
    for result in results:
        trial_id = (result.metrics or {}).get("trial_id")
        run_id = next(
            (r for n, r in names.items() if trial_id and n.endswith(f"_{trial_id}")), None
        )
        checkpoint = best_checkpoint(result, metric, mode) if run_id else None
        if checkpoint is None:
            continue
        with checkpoint.as_directory() as directory:
            parent.client.log_artifact(run_id, str(Path(directory) / "model.pt"), "checkpoint")


def print_top_trials(trials: list[dict[str, Any]], metric: str, mode: str, n: int = 10) -> None:
    """The ``n`` best trials by ``metric`` as a text table (cross-validated trials that ran more
    folds first), then the failed trials' errors."""
    ok = [t for t in trials if t["best"] is not None]
    ok.sort(key=lambda t: trial_rank(t, metric, mode), reverse=True)
    cv = any("fold" in t["best"] for t in ok)
    rows = [
        (
            f"{t['best'][metric]:.3f}",
            len(t["history"]),
            ", ".join(
                f"{k}={v:.2g}" if isinstance(v, float) else f"{k}={v}"
                for k, v in t["params"].items()
            ),
        )
        for t in ok[:n]
    ]
    print(f"\nTop trials by {metric} ({'out of fold' if cv else 'validation'}):")
    print("\n".join(text_table((metric, "folds" if cv else "epochs", "params"), rows, "rrl")))
    failed = [t for t in trials if t["status"] == "ERROR"]
    if failed:
        print(
            f"{len(failed)} trial(s) failed: "
            + "; ".join(f"{t['trial_id']}: {t['error']}" for t in failed)
        )


def write_trials_csv(path: Path, trials: list[dict[str, Any]], metric: str) -> None:
    """``trials.csv``: one row per trial, its params, reports run, best values and test figures."""
    rows = [
        {
            "trial_id": t["trial_id"],
            "status": t["status"],
            **t["params"],
            "folds_run" if "fold" in (t["best"] or {}) else "epochs_run": len(t["history"]),
            metric: (t["best"] or {}).get(metric),
            **{f"best_{c}": (t["best"] or {}).get(c) for c in TRIAL_COLUMNS if c != metric},
            **{
                f"test_{k}": (t.get("test") or {}).get(k) for k in ("balanced_accuracy", "accuracy")
            },
        }
        for t in trials
    ]
    pd.DataFrame(rows).to_csv(path, index=False)
