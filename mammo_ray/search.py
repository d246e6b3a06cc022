"""``python -m mammo_ray.search``: the main job.

Preprocess once (Ray Data, cached) → Ray Tune trials of ``train_trial`` sampled by Optuna's TPE
(seeded; the published configuration enqueued first) and stopped early by ASHA on the
validation metric, or every point of a grid (the ablation) → every trial an MLflow child run
under one parent run per search → the best trial's checkpoint evaluated once on the test split
→ LIME explanations of test images → ``report.md``.

Outputs under ``--out`` (default ``runs/<name>``)::

    tune/            Ray Tune's experiment (trial checkpoints, state for --resume), unless
                     --storage puts it elsewhere (S3 or a shared file system on a cluster)
    search.json      every trial: params, status, per-epoch history, best epoch
    trials.csv       one row per trial
    best/            model.pt, metrics.json, predictions.csv, confusion_matrix.png (test split)
    explain/         LIME PNGs and lime.json
    report.md        tables and figures next to the paper's
    mlflow.db        the MLflow store (unless --mlflow-uri or $MLFLOW_TRACKING_URI)

Nothing here knows whether it runs on a laptop or a cluster: ``--address auto`` joins a running
Ray cluster, and ``--gpus-per-trial 1`` gives each trial one GPU.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from mammo_ray.cli import add_data_argument, resolve_data, run_cli
from mammo_ray.errors import ConfigError

__all__ = ["run_search", "trainable", "main", "build_parser"]

DEFAULT_SPACE = Path(__file__).resolve().parents[1] / "search_spaces" / "default.yaml"
TRIAL_COLUMNS = (
    "val_balanced_accuracy",
    "val_accuracy",
    "val_macro_f1",
    "val_loss",
    "train_loss",
    "images_per_s",
)


def trainable(config: dict[str, Any], data, space, max_epochs: int) -> None:
    """The Ray Tune function trainable: one ``train_trial`` with ``tune.report`` as reporter.

    ``config`` holds dotted keys (Optuna's sample and the constants, or a grid point);
    :meth:`~mammo_ray.search_space.SearchSpace.config_for` turns it into the trial's config.
    """
    from ray import tune

    from mammo_ray.train import train_trial

    full = space.config_for(config, max_epochs)

    def report(metrics: dict[str, Any], checkpoint: str | None) -> None:
        ckpt = tune.Checkpoint.from_directory(str(Path(checkpoint).parent)) if checkpoint else None
        tune.report(metrics, checkpoint=ckpt)

    train_trial(full, data, report)


PROGRESS_COLUMNS = {
    "epoch": "epoch",
    "train_loss": "loss",
    "val_accuracy": "val acc",
    "val_balanced_accuracy": "val bacc",
    "val_macro_f1": "val F1",
    "images_per_s": "img/s",
}


def _progress_reporter(space, settings):
    """Tune's table on the terminal: the searched parameters and the metrics that matter,
    best trial first, refreshed at most every 30 s."""
    from ray.tune import CLIReporter

    return CLIReporter(
        metric_columns=PROGRESS_COLUMNS,
        parameter_columns=_searched_keys(space),
        metric=settings.metric,
        mode=settings.mode,
        sort_by_metric=True,
        max_report_frequency=30,
    )


@contextlib.contextmanager
def _legacy_tune_output() -> Iterator[None]:
    """Use Tune's classic output engine for the block: the new one (Ray >= 2.7) ignores a
    ``progress_reporter`` and prints every trial's whole config, ~60 constants included."""
    previous = os.environ.get("RAY_AIR_NEW_OUTPUT")
    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("RAY_AIR_NEW_OUTPUT")
        else:
            os.environ["RAY_AIR_NEW_OUTPUT"] = previous


def _trial_dirname(trial) -> str:
    """``trial_<id>``: Tune's default folder name spells out every constant of the config."""
    return f"trial_{trial.trial_id}"


def _searched_keys(space) -> list[str]:
    return [p.key for p in space.params] + [k for k, _ in space.grid]


def _trial_params(space, config: dict[str, Any]) -> dict[str, Any]:
    """The searched values of one trial; a conditional parameter only where it was sampled
    (``optim.momentum`` for SGD), since Tune's config also holds the base's constant value."""
    params = {k: config[k] for k, _ in space.grid if k in config}
    for spec in space.params:
        if spec.key in config and all(config.get(k) == v for k, v in spec.when):
            params[spec.key] = config[spec.key]
    return params


def _tune_objects(space, settings, seed: int):
    """(param_space, search_alg, scheduler) for a sampled space or a grid."""
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    from mammo_ray.config import flatten_dotted

    constants = flatten_dotted(space.base)
    scheduler = None
    if settings.scheduler == "asha":
        scheduler = ASHAScheduler(
            metric=settings.metric,
            mode=settings.mode,
            time_attr="training_iteration",
            max_t=settings.max_epochs,
            grace_period=settings.grace_period,
            reduction_factor=settings.reduction_factor,
        )
    if space.grid:
        param_space = {k: v for k, v in constants.items() if k not in dict(space.grid)}
        param_space.update({k: tune.grid_search(list(v)) for k, v in space.grid})
        return param_space, None, scheduler
    import optuna
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.search.optuna import OptunaSearch

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


def _history(result) -> list[dict[str, Any]]:
    frame = result.metrics_dataframe
    if frame is None or frame.empty:
        return []
    keep = [c for c in frame.columns if c == "epoch" or c.startswith(("val_", "train_"))]
    keep += [c for c in ("images_per_s", "epoch_seconds") if c in frame.columns]
    rows = frame[keep].to_dict("records")
    return [{k: (None if v != v else v) for k, v in row.items()} for row in rows]


def _trial_record(result, space, metric: str, mode: str) -> dict[str, Any]:
    history = _history(result)
    scored = [h for h in history if h.get(metric) is not None]
    best = (max if mode == "max" else min)(scored, key=lambda h: h[metric]) if scored else None
    return {
        "trial_id": Path(result.path).name,
        "status": "ERROR" if result.error else "TERMINATED",
        "failures": _failures(result),
        "params": _trial_params(space, result.config),
        "best": best,
        "history": history,
        "error": None if result.error is None else str(result.error).strip().splitlines()[-1][:500],
    }


def _failures(result) -> int:
    """How many times the trial raised: one ``Failure # k`` block each in Tune's error.txt."""
    try:
        with result.filesystem.open_input_stream(f"{result.path}/error.txt") as stream:
            text = stream.read().decode(errors="replace")
    except (FileNotFoundError, OSError):
        return 0
    return sum(line.startswith("Failure # ") for line in text.splitlines())


def _children(parent) -> list:
    """The MLflow child runs of the search's parent run (one per trial)."""
    return parent.client.search_runs(
        [parent.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{parent.run_id}'",
        max_results=10_000,
    )


def _end_interrupted_children(parent) -> None:
    """Mark KILLED the child runs a killed driver left RUNNING; Tune restarts those trials."""
    for run in _children(parent):
        if run.info.status == "RUNNING":
            parent.client.set_terminated(run.info.run_id, "KILLED")


def _best_checkpoint(result, metric: str, mode: str):
    """The trial's checkpoint with the best ``metric``, or None when it saved none."""
    return result.get_best_checkpoint(metric, mode) if result.best_checkpoints else None


def _log_trial_checkpoints(parent, results, metric: str, mode: str) -> None:
    """Log each trial's best checkpoint (``model.pt``) into its MLflow child run.

    ``MLflowLoggerCallback`` names a child run's ``trial_name`` tag after the trial
    (``trainable_<trial id>``) and uploads the trial's driver-side folder, which holds no
    checkpoint; the checkpoints live in Tune's storage, so they are copied from there.
    """
    names = {run.data.tags.get("trial_name", ""): run.info.run_id for run in _children(parent)}
    for result in results:
        trial_id = (result.metrics or {}).get("trial_id")
        run_id = next(
            (r for n, r in names.items() if trial_id and n.endswith(f"_{trial_id}")), None
        )
        checkpoint = _best_checkpoint(result, metric, mode) if run_id else None
        if checkpoint is None:
            continue
        with checkpoint.as_directory() as directory:
            parent.client.log_artifact(run_id, str(Path(directory) / "model.pt"), "checkpoint")


def _print_top(trials: list[dict[str, Any]], metric: str, mode: str, n: int = 10) -> None:
    ok = [t for t in trials if t["best"] is not None]
    ok.sort(key=lambda t: t["best"][metric], reverse=mode == "max")
    print(f"\nTop trials by {metric} (validation):")
    for t in ok[:n]:
        params = ", ".join(
            f"{k}={v:.2g}" if isinstance(v, float) else f"{k}={v}" for k, v in t["params"].items()
        )
        print(f"  {t['best'][metric]:.3f}  epochs {len(t['history'])}  {params}")
    failed = [t for t in trials if t["status"] == "ERROR"]
    if failed:
        print(
            f"{len(failed)} trial(s) failed: "
            + "; ".join(f"{t['trial_id']}: {t['error']}" for t in failed)
        )


def _write_trials_csv(path: Path, trials: list[dict[str, Any]], metric: str) -> None:
    import pandas as pd

    rows = [
        {
            "trial_id": t["trial_id"],
            "status": t["status"],
            **t["params"],
            "epochs_run": len(t["history"]),
            metric: (t["best"] or {}).get(metric),
            **{f"best_{c}": (t["best"] or {}).get(c) for c in TRIAL_COLUMNS if c != metric},
        }
        for t in trials
    ]
    pd.DataFrame(rows).to_csv(path, index=False)


def run_search(
    space_path: str | Path,
    data_path: str | Path,
    *,
    name: str,
    overrides: Sequence[str] = (),
    out_dir: str | Path | None = None,
    storage: str | None = None,
    cache_root: str | Path = "runs/cache",
    num_samples: int | None = None,
    max_epochs: int | None = None,
    time_budget_s: float | None = None,
    cpus_per_trial: float | None = None,
    gpus_per_trial: float = 0,
    address: str | None = None,
    resume: bool = False,
    mlflow_uri: str | None = None,
    seed: int = 0,
    explain_n: int = 4,
    lime_samples: int = 300,
    command: str = "",
) -> dict[str, Any]:
    """Run or resume a search; evaluate, explain and report its best trial; return search.json."""
    import dataclasses

    import ray
    from ray import tune
    from ray.air.integrations.mlflow import MLflowLoggerCallback

    from mammo_ray.search_budget import TrialEpochBudget
    from mammo_ray.search_space import load_search_space
    from mammo_ray.tracking import TrainingRun, global_tracking_uri, tracking_uri
    from mammo_ray.train_command import prepare_data

    start = time.perf_counter()
    space = load_search_space(space_path, overrides)
    _check_pretrained(space)
    settings = dataclasses.replace(
        space.settings,
        **{
            k: v
            for k, v in {
                "num_samples": num_samples,
                "max_epochs": max_epochs,
                "time_budget_s": time_budget_s,
            }.items()
            if v is not None
        },
    )
    if settings.grace_period > settings.max_epochs:
        settings = dataclasses.replace(settings, grace_period=settings.max_epochs)
    out = Path(out_dir or Path("runs") / name).resolve()
    if storage is None:
        tune_root, tune_name = str(out), "tune"
    else:
        tune_root = storage if "://" in storage else str(Path(storage).resolve())
        tune_name = name
    tune_dir = f"{tune_root.rstrip('/')}/{tune_name}"
    state_path = out / "search_state.json"
    if state_path.exists() and not resume:
        raise ConfigError(
            f"{out}: a search named {name!r} exists; pass --resume to continue it "
            "or choose another --name"
        )
    if resume and not tune.Tuner.can_restore(tune_dir):
        raise ConfigError(f"{tune_dir}: nothing to resume (no Ray Tune experiment there)")
    out.mkdir(parents=True, exist_ok=True)

    if not ray.is_initialized():
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(include_dashboard=False, log_to_driver=False)
    total_cpus = int(ray.cluster_resources().get("CPU", 1))
    cpus = cpus_per_trial or max(1, total_cpus // settings.max_concurrent)
    data = prepare_data(
        space.preprocess_config, data_path, cache_root, workers=total_cpus, progress=True
    )
    timings = {"setup_s": time.perf_counter() - start}

    uri = tracking_uri(out, mlflow_uri)
    experiment = "mammo_ray"
    if resume and state_path.exists():
        parent_id = json.loads(state_path.read_text())["parent_run_id"]
        parent = TrainingRun.resume(uri, parent_id)
        _end_interrupted_children(parent)
    else:
        parent = TrainingRun(
            uri,
            experiment=experiment,
            run_name=f"search {name}",
            tags={
                "search_space": str(Path(space_path).resolve()),
                "dataset_fingerprint": data.manifest.fingerprint,
                "preprocess_key": data.manifest.key,
            },
        )
        parent.log_params(
            {
                "space": str(space_path),
                "command": command or "run_search",
                **{f"search.{k}": v for k, v in dataclasses.asdict(settings).items()},
            }
        )
        state_path.write_text(
            json.dumps({"parent_run_id": parent.run_id, "space": str(space_path)})
        )
    parent_id = parent.run_id

    param_space, search_alg, scheduler = _tune_objects(space, settings, seed)
    fn = tune.with_resources(
        tune.with_parameters(trainable, data=data, space=space, max_epochs=settings.max_epochs),
        {"cpu": cpus, "gpu": gpus_per_trial},
    )
    run_config = tune.RunConfig(
        name=tune_name,
        storage_path=tune_root,
        failure_config=tune.FailureConfig(max_failures=settings.max_failures),
        stop=(
            TrialEpochBudget(settings.trial_epoch_budget) if settings.trial_epoch_budget else None
        ),
        checkpoint_config=tune.CheckpointConfig(
            num_to_keep=1,
            checkpoint_score_attribute=settings.metric,
            checkpoint_score_order=settings.mode,
        ),
        callbacks=[
            MLflowLoggerCallback(
                tracking_uri=uri,
                experiment_name=experiment,
                save_artifact=True,
                tags={
                    "mlflow.parentRunId": parent_id,
                    "search": name,
                    "dataset_fingerprint": data.manifest.fingerprint,
                    "preprocess_key": data.manifest.key,
                },
            )
        ],
        progress_reporter=_progress_reporter(space, settings),
        verbose=1,
    )
    with global_tracking_uri(uri), _legacy_tune_output():
        try:
            if resume:
                tuner = tune.Tuner.restore(tune_dir, trainable=fn, resume_errored=True)
            else:
                tuner = tune.Tuner(
                    fn,
                    param_space=param_space,
                    tune_config=tune.TuneConfig(
                        search_alg=search_alg,
                        scheduler=scheduler,
                        num_samples=1 if space.grid else settings.num_samples,
                        max_concurrent_trials=settings.max_concurrent,
                        time_budget_s=settings.time_budget_s,
                        trial_dirname_creator=_trial_dirname,
                    ),
                    run_config=run_config,
                )
            tune_start = time.perf_counter()
            results = tuner.fit()
            timings["tune_s"] = time.perf_counter() - tune_start
        except BaseException:
            parent.end("KILLED")
            raise
        try:
            summary = _finish_search(
                results,
                space,
                settings,
                data,
                data_path,
                out,
                parent,
                timings,
                name=name,
                space_path=space_path,
                command=command,
                uri=uri,
                experiment=experiment,
                explain_n=explain_n,
                lime_samples=lime_samples,
                seed=seed,
            )
        except BaseException:
            parent.end("FAILED")
            raise
    parent.end("FINISHED")
    total = time.perf_counter() - start
    print(f"\nsearch {name!r} done in {total / 60:.1f} min: {out}")
    print(f"report: {out / 'report.md'}")
    print(f"MLflow: mlflow ui --backend-store-uri {uri}")
    return summary


def _finish_search(
    results,
    space,
    settings,
    data,
    data_path,
    out: Path,
    parent,
    timings: dict[str, float],
    *,
    name: str,
    space_path,
    command: str,
    uri: str,
    experiment: str,
    explain_n: int,
    lime_samples: int,
    seed: int,
) -> dict[str, Any]:
    """Record the trials, evaluate and explain the best one, write search.json and the report."""
    finish_start = time.perf_counter()
    trials = [_trial_record(r, space, settings.metric, settings.mode) for r in results]
    _log_trial_checkpoints(parent, results, settings.metric, settings.mode)
    summary = {
        "name": name,
        "metric": settings.metric,
        "mode": settings.mode,
        "space": str(Path(space_path).resolve()),
        "command": command,
        "split": space.base["split"]["method"],
        "leaky": space.base["split"]["method"] == "paper"
        or space.base.get("augment_before_split", False),
        "mlflow": {"uri": uri, "parent_run_id": parent.run_id, "experiment": experiment},
        "best_trial": None,
        "trials": trials,
    }
    _print_top(trials, settings.metric, settings.mode)
    try:
        best = results.get_best_result(settings.metric, settings.mode, scope="all")
    except RuntimeError:
        best = None
    checkpoint = None if best is None else _best_checkpoint(best, settings.metric, settings.mode)
    if checkpoint is not None:
        summary["best_trial"] = Path(best.path).name
        _finish_best(
            checkpoint,
            data,
            data_path,
            out,
            parent,
            explain_n=explain_n,
            lime_samples=lime_samples,
            seed=seed,
        )
    summary["timings"] = timings | {"finish_s": time.perf_counter() - finish_start}
    staged = out / "search.json.tmp"
    staged.write_text(json.dumps(summary, indent=1, default=str))
    staged.replace(out / "search.json")  # whole or absent, never half-written
    _write_trials_csv(out / "trials.csv", trials, settings.metric)
    _write_report(out)
    parent.log_artifacts([out / n for n in ("search.json", "trials.csv", "report.md")])
    parent.log_artifacts([p for p in (out / "report_figures",) if p.exists()], "report_figures")
    return summary


def _check_pretrained(space) -> None:
    """Resolve the weights of every backbone the space can pick, once, before Ray starts.

    Offline without cached ImageNet weights this fails in one line that says how to pass
    ``--set model.pretrained=none`` or ``file:PATH``, instead of failing every trial.
    """
    from mammo_ray.models import ModelConfig, resolve_pretrained

    def values(key: str) -> set[str]:
        searched = {v for s in space.params if s.key == key for v in s.values}
        searched |= {v for k, grid_values in space.grid if k == key for v in grid_values}
        return searched or {space.base["model"][key.split(".")[1]]}

    for backbone in sorted(values("model.backbone")):
        for pretrained in sorted(values("model.pretrained")):
            resolve_pretrained(ModelConfig(backbone=backbone, pretrained=pretrained))


def _finish_best(
    checkpoint, data, data_path, out: Path, parent, *, explain_n: int, lime_samples: int, seed: int
) -> None:
    """Evaluate the best checkpoint once on the test split, explain test images, log to parent."""
    import numpy as np

    from mammo_ray.config import from_dict
    from mammo_ray.evaluate import evaluate_test_split
    from mammo_ray.models import load_checkpoint, model_from_checkpoint
    from mammo_ray.train import TrainConfig, select_device, trial_arrays

    best_dir = out / "best"
    best_dir.mkdir(parents=True, exist_ok=True)
    with checkpoint.as_directory() as directory:
        shutil.copyfile(Path(directory) / "model.pt", best_dir / "model.pt")
    ckpt = load_checkpoint(best_dir / "model.pt")
    cfg = from_dict(TrainConfig, ckpt.config, where="best checkpoint config")
    arrays = trial_arrays(cfg, data)
    test = np.asarray(arrays.split.test)
    model = model_from_checkpoint(ckpt).to(select_device())
    metrics = evaluate_test_split(
        model,
        arrays,
        best_dir,
        title=f"best: {cfg.model.backbone}, {cfg.split.method} split, test",
        seed=cfg.seed,
    )
    parent.log_metrics(
        {f"test_{k}": metrics[k] for k in ("accuracy", "balanced_accuracy", "macro_f1")}
    )
    parent.log_artifacts(
        [best_dir / n for n in ("metrics.json", "predictions.csv", "confusion_matrix.png")], "best"
    )
    _log_model(parent, model, cfg.input_size)
    if explain_n > 0:
        _explain(
            model,
            cfg,
            data,
            data_path,
            arrays,
            test,
            out / "explain",
            explain_n,
            lime_samples,
            seed,
        )
        parent.log_artifacts([out / "explain"], "explain")


def _explain(
    model, cfg, data, data_path, arrays, test, out: Path, n: int, num_samples: int, seed: int
) -> None:
    """LIME on ``n`` test images, abnormal ones first (they have circles to compare with)."""
    import numpy as np

    from mammo_ray.data.mias import load_mias
    from mammo_ray.explain import explain_images, input_circles

    by_id = {r.image_id: r for r in data.manifest.records}
    test_records = [by_id[arrays.image_ids[i].split("~")[0]] for i in test]
    rng = np.random.default_rng(seed)
    order = sorted(range(len(test)), key=lambda j: (not test_records[j].rois, rng.random()))
    chosen = sorted(order[:n])
    records = [test_records[j] for j in chosen]
    dataset = load_mias(data_path, scheme=cfg.preprocess.label_scheme)
    explain_images(
        model,
        arrays.images[test[chosen]],
        records,
        out,
        num_samples=num_samples,
        seed=seed,
        circles_in_input_coords=input_circles(dataset, records, cfg),
    )


def _log_model(parent, model, input_size: int) -> None:
    """Log the best model to the parent run as an MLflow model (PyTorch, torch.export format).

    The input example, two normalised grayscale images (2, 1, S, S) float32, gives the model
    signature; two rather than one keeps the exported batch dimension dynamic. Runs inside
    :func:`~mammo_ray.tracking.global_tracking_uri` of the search's store.
    """
    import copy

    import mlflow
    import numpy as np

    example = np.zeros((2, 1, input_size, input_size), np.float32)
    with mlflow.start_run(run_id=parent.run_id):
        cpu_model = copy.deepcopy(model).cpu().eval()
        mlflow.pytorch.log_model(cpu_model, name="best_model", input_example=example)


def _write_report(out: Path) -> None:
    from mammo_ray.report import write_report

    write_report(out, out / "report.md")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m mammo_ray.search",
        description=(
            "Search backbones, learning rates and ablation settings with Ray Tune + Optuna (TPE, "
            "ASHA early stopping), log every trial to MLflow, then evaluate the best model once on "
            "the held-out test split, explain it with LIME and write report.md. The published "
            "configuration is always the first trial."
        ),
    )
    parser.add_argument(
        "--space",
        default=str(DEFAULT_SPACE),
        help="search space YAML (default: search_spaces/default.yaml)",
    )
    add_data_argument(parser)
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a fixed training setting of the space, e.g. model.pretrained=none "
        "(repeatable)",
    )
    parser.add_argument("--num-samples", type=int, help="trials to sample (overrides the space)")
    parser.add_argument("--max-epochs", type=int, help="epochs per trial at most (ASHA's max_t)")
    parser.add_argument(
        "--time-budget",
        type=float,
        metavar="S",
        help="end the search, running trials too, after S seconds (overrides the space)",
    )
    parser.add_argument(
        "--cpus-per-trial",
        type=float,
        help="CPUs per trial (default: all CPUs / max concurrent trials)",
    )
    parser.add_argument(
        "--gpus-per-trial", type=float, default=0, help="GPUs per trial (default: 0)"
    )
    parser.add_argument(
        "--address", help="Ray cluster: 'auto' or ray://host:10001 (default: local)"
    )
    parser.add_argument(
        "--name",
        default="search",
        help="search name: MLflow parent run, output folder (default: search)",
    )
    parser.add_argument("--out", help="output directory (default: runs/NAME)")
    parser.add_argument(
        "--storage",
        help="Ray Tune storage: a directory, or a URI such as s3://bucket/runs "
        "that every node of a cluster can reach (default: OUT/tune)",
    )
    parser.add_argument(
        "--cache", default="runs/cache", help="preprocessing cache root (default: runs/cache)"
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted search of this name without redoing trials",
    )
    parser.add_argument("--mlflow-uri", help="MLflow tracking URI (default: sqlite in OUT)")
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the sampler and of LIME (default: 0)"
    )
    parser.add_argument(
        "--explain",
        type=int,
        default=4,
        metavar="N",
        help="test images to explain with LIME (default: 4; 0: none)",
    )
    parser.add_argument(
        "--lime-samples", type=int, default=300, help="LIME perturbations per image (default: 300)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    run_search(
        args.space,
        resolve_data(args.data),
        name=args.name,
        overrides=args.set,
        out_dir=args.out,
        storage=args.storage,
        cache_root=args.cache,
        num_samples=args.num_samples,
        max_epochs=args.max_epochs,
        time_budget_s=args.time_budget,
        cpus_per_trial=args.cpus_per_trial,
        gpus_per_trial=args.gpus_per_trial,
        address=args.address,
        resume=args.resume,
        mlflow_uri=args.mlflow_uri,
        seed=args.seed,
        explain_n=args.explain,
        lime_samples=args.lime_samples,
        command=" ".join(
            ["python -m mammo_ray.search", *(argv if argv is not None else sys.argv[1:])]
        ),
    )
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
