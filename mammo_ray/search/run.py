"""``python -m mammo_ray.search``: the main job.

Preprocess once (Ray Data, cached) → Ray Tune trials of ``train_trial`` sampled by Optuna's TPE
(seeded; the published configuration enqueued first) and stopped early by ASHA on the
validation metric, or every point of a grid (the ablation); with ``search.cv`` each trial
cross-validates over patient folds and ASHA races trials over folds (whole-film models, or
with ``input.mode`` ``patch`` / ``patch+bilateral`` patch classifiers whose out-of-fold score
maps are aggregated after each fold), and the fixed baselines of ``search.baselines`` are
cross-validated on the same folds after the trials → every trial an MLflow
child run under one parent run per search → the best trial's checkpoint (a cross-validated
trial's fold ensemble) evaluated once on the test split, and the best ResNet-18 beside it →
LIME explanations of test images → every trial's test figures for the report → ``report.md``.

Outputs under ``--out`` (default ``runs/<name>``)::

    tune/            Ray Tune's experiment (trial checkpoints, state for --resume), unless
                     --storage puts it elsewhere (S3 or a shared file system on a cluster)
    search.json      every trial: params, status, per-epoch history, best epoch
    trials.csv       one row per trial
    best/            model.pt, metrics.json, predictions.csv, confusion_matrix.png (test split)
    best_resnet18/   the same for the best ResNet-18 trial, when another backbone won
    explain/         LIME PNGs and lime.json (and score-map PNGs when a patch model won)
    baseline_radiomics/  with search.baselines: [radiomics], that baseline's train cv outputs
    report.md        tables and figures next to the paper's
    mlflow.db        the MLflow store (unless --mlflow-uri or $MLFLOW_TRACKING_URI)

Nothing here knows whether it runs on a laptop or a cluster: ``--address auto`` joins a running
Ray cluster, and ``--gpus-per-trial 1`` gives each trial one GPU.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

import ray
import torch
from ray import tune

from mammo_ray.config import from_dict
from mammo_ray.contracts import SearchFile, check
from mammo_ray.errors import ConfigError, Interrupted, MammoRayError
from mammo_ray.files import write_json_atomic
from mammo_ray.learn.config import TrainConfig
from mammo_ray.learn.throughput import ThroughputCache
from mammo_ray.preprocess.pipeline import ensure_ray
from mammo_ray.preprocess.prepared import PreparedData, prepare_data
from mammo_ray.report.document import write_report
from mammo_ray.report.tables import plan_check
from mammo_ray.search.baselines import run_baselines
from mammo_ray.search.best import finish_best
from mammo_ray.search.held_out import test_every_trial
from mammo_ray.search.interrupt import graceful_stop
from mammo_ray.search.plan import (
    Plan,
    plan_lines,
    plan_search,
    planned_settings,
)
from mammo_ray.search.results import (
    best_checkpoint,
    best_trial,
    end_interrupted_children,
    log_trial_checkpoints,
    print_top_trials,
    trial_record,
    write_trials_csv,
)
from mammo_ray.search.space import (
    BUILTIN_SPACES,
    SearchSettings,
    SearchSpace,
    check_pretrained,
    load_search_space,
)
from mammo_ray.search.tune import (
    TrialEpochBudget,
    TrialRunsCallback,
    checkpoint_config,
    legacy_tune_output,
    progress_reporter,
    trainable,
    trial_dirname,
    tune_objects,
)
from mammo_ray.tracking import TrainingRun, global_tracking_uri, tracking_uri, ui_url

__all__ = ["DEFAULT_SPACE", "EXPERIMENT", "SearchOptions", "run_search", "plan_only"]


DEFAULT_SPACE = BUILTIN_SPACES / "default.yaml"
EXPERIMENT = "mammo_ray"
"""The MLflow experiment of every search."""


@dataclasses.dataclass(frozen=True)
class SearchOptions:
    """How to run one search, beyond its space file: the command line's options.

    ``num_samples``, ``max_epochs`` and ``time_budget_s`` override the space's ``search``
    settings when given. ``storage`` puts Ray Tune's experiment elsewhere than ``OUT/tune`` (a
    directory, or a URI such as ``s3://bucket/runs`` that every node can reach).
    ``cpus_per_trial`` defaults to all CPUs of the cluster over the concurrent trials.
    """

    name: str = "search"
    overrides: tuple[str, ...] = ()
    out_dir: Path | None = None
    storage: str | None = None
    cache_root: Path = Path("runs/cache")
    num_samples: int | None = None
    max_epochs: int | None = None
    time_budget_s: float | None = None
    cpus_per_trial: float | None = None
    gpus_per_trial: float = 0
    address: str | None = None
    resume: bool = False
    mlflow_uri: str | None = None
    seed: int = 0
    explain_n: int = 4
    lime_samples: int | None = None
    command: str = ""

    @property
    def out(self) -> Path:
        """The search's folder: ``out_dir``, or ``runs/<name>``, absolute."""
        return Path(self.out_dir or Path("runs") / self.name).resolve()

    @property
    def tune_location(self) -> tuple[str, str]:
        """(storage path, experiment name) of Ray Tune's experiment."""
        if self.storage is None:
            return str(self.out), "tune"
        root = self.storage if "://" in self.storage else str(Path(self.storage).resolve())
        return root, self.name

    @property
    def tune_dir(self) -> str:
        root, name = self.tune_location
        return f"{root.rstrip('/')}/{name}"

    def settings_for(self, space: SearchSpace) -> SearchSettings:
        """The space's search settings with this run's overrides; ASHA's grace period is
        clipped to its last rung (``max_epochs``, or the folds)."""
        given = {
            "num_samples": self.num_samples,
            "max_epochs": self.max_epochs,
            "time_budget_s": self.time_budget_s,
        }
        grace = space.settings.grace_period
        try:
            settings = dataclasses.replace(
                space.settings, grace_period=1, **{k: v for k, v in given.items() if v is not None}
            )
        except ValueError as exc:
            raise ConfigError(f"--num-samples/--max-epochs/--time-budget: {exc}") from None
        return dataclasses.replace(settings, grace_period=min(grace, settings.max_t))


@dataclasses.dataclass
class _Search:
    """What the steps of one search share once it is set up."""

    space_path: Path
    data_path: Path
    options: SearchOptions
    space: SearchSpace
    settings: SearchSettings
    data: PreparedData
    parent: TrainingRun
    uri: str
    cpus_per_trial: float
    restore: bool
    timings: dict[str, float]
    plan: dict[str, Any] | None


def run_search(
    space_path: str | Path, data_path: str | Path, options: SearchOptions = SearchOptions()
) -> dict[str, Any]:
    """Run or resume a search; evaluate, explain and report its best trial; return search.json.

    Three steps: set up (space, Ray, the preprocessing cache, the MLflow parent run), tune (Ray
    Tune with Optuna/ASHA or a grid), finish (trial records, the best trial evaluated once and
    explained, ``report.md``). Ctrl-C or SIGTERM while tuning stops Tune gracefully and raises
    :class:`~mammo_ray.errors.Interrupted` (saying how to resume) without finishing; the parent
    run and every open child run then end KILLED (FAILED if something else raised).

    Raises
    ------
    Interrupted
        When Ctrl-C or SIGTERM stopped the search; ``--resume`` continues it.
    """
    start = time.perf_counter()
    search = _set_up(Path(space_path), Path(data_path), options)
    with global_tracking_uri(search.uri), legacy_tune_output():
        try:
            results = _tune(search)
            summary = _finish_search(search, results)
        except BaseException as exc:
            status = "KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED"
            end_interrupted_children(search.parent)
            search.parent.end(status)
            raise
    search.parent.end("FINISHED")
    minutes = (time.perf_counter() - start) / 60
    print(f"\nsearch {options.name!r} done in {minutes:.1f} min: {options.out}")
    print(f"report: {options.out / 'report.md'}")
    print(f"MLflow: mlflow ui --backend-store-uri {search.uri}")
    print(f"        then open {ui_url(search.parent.experiment_id)}")
    return summary


def _set_up(space_path: Path, data_path: Path, options: SearchOptions) -> _Search:
    """Load and check the space, check that the folder is new (or resumable), start or join
    Ray, prepare the data, and start (or resume) the MLflow parent run."""
    start = time.perf_counter()
    space = load_search_space(space_path, options.overrides)
    check_pretrained(space)
    settings = options.settings_for(space)
    out = options.out
    state_path = out / "search_state.json"
    restorable = tune.Tuner.can_restore(options.tune_dir)
    if state_path.exists() and restorable and not options.resume:
        raise ConfigError(
            f"{out}: a search named {options.name!r} exists; pass --resume to continue it "
            "or choose another --name"
        )
    if options.resume and not restorable and not state_path.exists():
        raise ConfigError(f"{options.tune_dir}: nothing to resume (no Ray Tune experiment there)")
    if state_path.exists() and not restorable:
        print(
            f"{out}: the last run of search {options.name!r} stopped before its first trial; "
            "starting its trials afresh"
        )
    out.mkdir(parents=True, exist_ok=True)

    ensure_ray(options.address)
    total_cpus = int(ray.cluster_resources().get("CPU", 1))
    data = prepare_data(
        space.preprocess_config, data_path, options.cache_root, workers=total_cpus, progress=True
    )
    cpus_per_trial = options.cpus_per_trial or max(1, total_cpus // settings.max_concurrent)
    saved = _read_state(state_path).get("plan") if state_path.exists() else None
    if saved:
        settings = planned_settings(
            settings, max_epochs=saved["max_epochs"], num_samples=saved["num_samples"]
        )
    elif settings.plan and not space.grid:
        plan = _plan(space, settings, data, options, total_cpus, cpus_per_trial)
        settings, saved = plan.apply(settings), plan.record()
    uri = tracking_uri(out, options.mlflow_uri)
    if state_path.exists():
        parent = TrainingRun.resume(uri, str(_read_state(state_path)["parent_run_id"]))
        end_interrupted_children(parent)
    else:
        parent = TrainingRun(
            uri,
            experiment=EXPERIMENT,
            run_name=options.name,
            tags={"search_space": str(space_path.resolve()), **data.identity},
        )
        parent.log_params(
            {
                "space": str(space_path),
                "command": options.command or "run_search",
                **{f"search.{k}": v for k, v in dataclasses.asdict(settings).items()},
            }
        )
        write_json_atomic(
            state_path, {"parent_run_id": parent.run_id, "space": str(space_path), "plan": saved}
        )
    return _Search(
        space_path=space_path,
        data_path=data_path,
        options=options,
        space=space,
        settings=settings,
        data=data,
        parent=parent,
        uri=uri,
        cpus_per_trial=cpus_per_trial,
        plan=saved,
        restore=options.resume and restorable,
        timings={"setup_s": time.perf_counter() - start},
    )


def _read_state(state_path: Path) -> dict[str, Any]:
    """``search_state.json``: the MLflow parent run id, the space and the plan (None for a
    search that did not plan)."""
    try:
        state = json.loads(state_path.read_text(encoding="utf-8"))
        if not isinstance(state, dict) or not isinstance(state.get("plan") or {}, dict):
            raise TypeError("not a JSON object with parent_run_id and a plan object or null")
        str(state["parent_run_id"])
        return state
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(
            f"{state_path}: not a search state ({type(exc).__name__}: {exc}); delete the "
            "folder to start the search again"
        ) from None


def _plan(
    space: SearchSpace,
    settings: SearchSettings,
    data: PreparedData,
    options: SearchOptions,
    total_cpus: int,
    cpus_per_trial: float,
) -> Plan:
    """Plan the search (:func:`~mammo_ray.search.plan.plan_search`) with the throughput cache
    beside the preprocessing cache, the trials' device and threads; print the plan."""
    gpu = options.gpus_per_trial > 0 and torch.cuda.is_available()
    concurrent = min(settings.max_concurrent, max(1, int(total_cpus // cpus_per_trial)))
    if gpu:
        gpus = ray.cluster_resources().get("GPU", 0)
        concurrent = min(concurrent, max(1, int(gpus // options.gpus_per_trial)))
    cache = ThroughputCache(
        options.cache_root / "throughput.json",
        torch.device("cuda" if gpu else "cpu"),
        threads=max(1, int(cpus_per_trial)),
    )
    fixed = tuple(key for key in ("num_samples", "max_epochs") if getattr(options, key) is not None)
    plan = plan_search(space, settings, data, cache, concurrent=concurrent, fixed=fixed)
    print("\n".join(plan_lines(plan)), flush=True)
    return plan


def plan_only(space_path: str | Path, data_path: str | Path, options: SearchOptions) -> Plan:
    """Print the plan of a search (``--plan``) without starting it: the space checked, the
    data prepared (cached), the throughput measured where it is not cached."""
    space = load_search_space(space_path, options.overrides)
    settings = options.settings_for(space)
    if space.grid:
        raise ConfigError(f"{space_path}: a grid runs every point; there is nothing to plan")
    ensure_ray(options.address)
    total_cpus = int(ray.cluster_resources().get("CPU", 1))
    data = prepare_data(
        space.preprocess_config, data_path, options.cache_root, workers=total_cpus, progress=True
    )
    cpus_per_trial = options.cpus_per_trial or max(1, total_cpus // settings.max_concurrent)
    return _plan(space, settings, data, options, total_cpus, cpus_per_trial)


def _tune(search: _Search) -> tune.ResultGrid:
    """Run (or restore and continue) Ray Tune's experiment; every trial an MLflow child run."""
    space, settings, options = search.space, search.settings, search.options
    tune_root, tune_name = options.tune_location
    fn = tune.with_resources(
        tune.with_parameters(
            trainable, data=search.data, space=space, max_epochs=settings.max_epochs
        ),
        {"cpu": search.cpus_per_trial, "gpu": options.gpus_per_trial},
    )
    if search.restore:
        tuner = tune.Tuner.restore(options.tune_dir, trainable=fn, resume_errored=True)
    else:
        param_space, search_alg, scheduler = tune_objects(space, settings, options.seed)
        child_tags = {"mlflow.parentRunId": search.parent.run_id, "search": options.name}
        run_config = tune.RunConfig(
            name=tune_name,
            storage_path=tune_root,
            failure_config=tune.FailureConfig(max_failures=settings.max_failures),
            stop=(
                TrialEpochBudget(settings.trial_epoch_budget)
                if settings.trial_epoch_budget
                else None
            ),
            checkpoint_config=checkpoint_config(settings),
            callbacks=[
                TrialRunsCallback(
                    space,
                    tracking_uri=search.uri,
                    experiment_name=EXPERIMENT,
                    save_artifact=True,
                    tags=child_tags | search.data.identity,
                )
            ],
            progress_reporter=progress_reporter(space, settings),
            verbose=1,
        )
        tuner = tune.Tuner(
            fn,
            param_space=param_space,
            tune_config=tune.TuneConfig(
                search_alg=search_alg,
                scheduler=scheduler,
                num_samples=1 if space.grid else settings.num_samples,
                max_concurrent_trials=settings.max_concurrent,
                time_budget_s=settings.time_budget_s,
                trial_dirname_creator=trial_dirname,
            ),
            run_config=run_config,
        )
    start = time.perf_counter()
    with graceful_stop(
        "stopping the search: running trials end and Tune saves its state for --resume "
        "(press Ctrl-C again to abort at once)"
    ) as stop:
        results = tuner.fit()
    search.timings["tune_s"] = time.perf_counter() - start
    if stop.requested:
        raise Interrupted(
            f"{stop.signal_name} stopped search {options.name!r} before it finished; continue it "
            f"with: {_resume_command(options)}"
        )
    return results


def _resume_command(options: SearchOptions) -> str:
    """The command that continues this search: the one that started it, plus ``--resume``."""
    command = options.command or f"python -m mammo_ray.search --name {options.name}"
    return command if "--resume" in command.split() else f"{command} --resume"


def _print_time_spent(search: _Search, trials: list[dict[str, Any]]) -> None:
    """The plan against the trials' measured times, and whether the time budget ended the
    search (how many trials it cut before their first result)."""
    checked = None if search.plan is None else plan_check(search.plan, trials)
    if checked:
        print(checked)
    budget = search.settings.time_budget_s
    if budget is not None and search.timings["tune_s"] >= budget:
        cut = sum(t["status"] == "CUT" for t in trials)
        print(
            f"the time budget ({budget:.0f} s) ended the search: {len(trials)} trials ran, "
            f"{cut} of them cut before their first result"
        )


def _finish_search(search: _Search, results: tune.ResultGrid) -> dict[str, Any]:
    """Record the trials, evaluate and explain the best one, write search.json and the report."""
    start = time.perf_counter()
    settings, out, parent = search.settings, search.options.out, search.parent
    trials = [trial_record(r, search.space, settings.metric, settings.mode) for r in results]
    log_trial_checkpoints(parent, results, settings.metric, settings.mode)
    base = from_dict(TrainConfig, search.space.base, where=str(search.space_path))
    summary = {
        "name": search.options.name,
        "metric": settings.metric,
        "mode": settings.mode,
        "space": str(search.space_path.resolve()),
        "command": search.options.command,
        "split": base.split.method,
        "leaky": base.leaky,
        "input_mode": base.input.mode,
        "mlflow": {"uri": search.uri, "parent_run_id": parent.run_id, "experiment": EXPERIMENT},
        "cv": None if settings.cv is None else dataclasses.asdict(settings.cv),
        "best_trial": None,
        "best_resnet18_trial": None,
        "trials": trials,
        "plan": search.plan,
    }
    print_top_trials(trials, settings.metric, settings.mode)
    _print_time_spent(search, trials)
    by_id = {Path(r.path).name: r for r in results}

    def is_resnet18(trial: dict[str, Any]) -> bool:
        return trial["params"].get("model.backbone", base.model.backbone) == "resnet18"

    for name, keep in (("best", None), ("best_resnet18", is_resnet18)):
        best = best_trial(trials, settings.metric, settings.mode, keep)
        if best is None or (name != "best" and best["trial_id"] == summary["best_trial"]):
            continue
        checkpoint = best_checkpoint(by_id[best["trial_id"]], settings.metric, settings.mode)
        if checkpoint is None:
            continue
        summary[f"{name}_trial"] = best["trial_id"]
        try:
            finish_best(
                checkpoint,
                search.data,
                search.parent,
                search.options.out,
                name=name,
                explain_n=search.options.explain_n if name == "best" else 0,
                lime_samples=search.options.lime_samples,
                seed=search.options.seed,
            )
        except MammoRayError as exc:
            if name == "best":
                raise
            summary[f"{name}_trial"] = None
            print(f"the best ResNet-18 trial was not evaluated: {exc}", file=sys.stderr)
    tested = test_every_trial(results, search.data, settings.metric, settings.mode)
    for trial in trials:
        trial["test"] = tested.get(trial["trial_id"])
    summary["baselines"] = run_baselines(
        search.space,
        search.data,
        out,
        uri=search.uri,
        experiment=EXPERIMENT,
        parent_run_id=parent.run_id,
    )
    summary["timings"] = search.timings | {"finish_s": time.perf_counter() - start}
    check(SearchFile, summary, out / "search.json")
    write_json_atomic(out / "search.json", summary, indent=1, default=str)
    write_trials_csv(out / "trials.csv", trials, settings.metric)
    write_report(out, out / "report.md")
    parent.log_artifacts([out / n for n in ("search.json", "trials.csv", "report.md")])
    parent.log_artifacts([p for p in (out / "report_figures",) if p.exists()], "report_figures")
    return summary
