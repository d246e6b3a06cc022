"""Search benchmark: TPE + ASHA against random search, same trial-epoch budget; Tune's overhead.

    python benchmarks/search_bench.py --data PATH [--budget 36] [--seeds 0 1] [--size 64] [--cv K]

On the shared MIAS subset at ``--size`` px (``benchmarks/search_bench_space.yaml``: two
backbones, learning rate, batch size, segmentation, augmentation, class weighting; random
weights, patient split), for each seed:

(a) ``sampler: tpe`` + ``scheduler: asha`` (grace 1 epoch, reduction factor 2), trials sampled
    until ``--budget`` trial-epochs have been trained;
(b) ``sampler: random`` + ``scheduler: none``: ``budget / max_epochs`` trials of ``max_epochs``
    epochs each (the same budget, no early stopping).

It reports the best validation balanced accuracy each reached, the trial-epochs each used, and
the trial-epochs (a) needed to first reach (b)'s best (the target: at most half of (b)'s).
Trial-epochs are counted from Tune's per-trial ``progress.csv`` in the order they were trained.

With ``--cv K`` every trial is cross-validated over K patient folds (``search.cv``): the metric
is out of fold, a trial reports once per fold (its ``fold_epochs`` count as trial-epochs), ASHA
races over folds, random search runs ``budget / (max_epochs * K)`` whole trials, and only a
trial's score after its last fold counts as reached (a first fold alone is not a result).

(c) Ray Tune's overhead: the wall time of ``run_search``'s Tune phase for a 1-trial, 1-epoch
    search (``timings.tune_s`` in its search.json; Ray already running, cache warm) minus the
    same training run bare (``train_trial`` on the same PreparedData in this process).
    Target: < 15 s.

Prints a table and writes JSON (default ``benchmarks/results/search.json``). Each search's
outputs stay under ``--work`` (default ``benchmarks/results/search_runs``).
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import time
from pathlib import Path
from typing import Any

import yaml

from mammo_ray.learn.trial import train_trial
from mammo_ray.preprocess.prepared import prepare_data
from mammo_ray.search.run import SearchOptions, run_search
from mammo_ray.search.space import load_search_space

SPACE = Path(__file__).resolve().parent / "search_bench_space.yaml"
METRIC = "val_balanced_accuracy"
TARGET_EPOCH_RATIO = 0.5
TARGET_OVERHEAD_S = 15.0


def _space_file(
    work: Path, name: str, size: int, search: dict[str, Any], cv: int | None = None
) -> Path:
    """A copy of the benchmark space with ``input_size`` and the ``search`` block replaced."""
    data = yaml.safe_load(SPACE.read_text())
    data["base"] = str((SPACE.parent / data["base"]).resolve())
    data["fixed"]["input_size"] = size
    data["search"] = {**data.get("search", {}), **search}
    if cv:
        data["search"]["cv"] = {"folds": cv}
    path = work / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def trained_epochs(tune_dir: Path) -> list[float | None]:
    """One entry per trial-epoch in the order they were trained: the ``val_balanced_accuracy``
    reported after it, or None where no result counts (inside a cross-validated trial's fold,
    and after any fold but its last)."""
    rows = []
    for progress in tune_dir.glob("*/progress.csv"):
        with open(progress) as handle:
            for r in csv.DictReader(handle):
                epochs = int(float(r.get("fold_epochs") or 1))
                final = "fold" not in r or r["fold"] == r["folds"]
                value = float(r[METRIC]) if final else None
                rows.append((float(r["timestamp"]), [None] * (epochs - 1) + [value]))
    return [value for _, values in sorted(rows) for value in values]


def _arm(values: list[float | None], target: float | None) -> dict[str, Any]:
    scored = [v for v in values if v is not None]
    best = max(scored) if scored else float("nan")
    reached = next(
        (
            i + 1
            for i, v in enumerate(values)
            if target is not None and v is not None and v >= target
        ),
        None,
    )
    return {"best": best, "trial_epochs": len(values), "epochs_to_reach_random_best": reached}


def compare_searchers(
    data_path: Path,
    work: Path,
    cache: Path,
    *,
    budget: int,
    max_epochs: int,
    seed: int,
    size: int,
    cv: int | None = None,
) -> dict[str, Any]:
    """One seed of (a) TPE + ASHA and (b) random search with the same trial-epoch budget."""
    arms = {
        "random": {
            "sampler": "random",
            "scheduler": "none",
            "num_samples": max(1, budget // (max_epochs * (cv or 1))),
            "max_epochs": max_epochs,
        },
        "tpe_asha": {
            "sampler": "tpe",
            "scheduler": "asha",
            "num_samples": budget,
            "max_epochs": max_epochs,
            "grace_period": 1,
            "reduction_factor": 2,
            "trial_epoch_budget": budget,
        },
    }
    found: dict[str, list[float]] = {}
    seconds: dict[str, float] = {}
    for name, search in arms.items():
        run = f"{name}_seed{seed}"
        space = _space_file(work, run, size, search, cv)
        out = work / run
        shutil.rmtree(out, ignore_errors=True)
        start = time.perf_counter()
        run_search(
            space,
            data_path,
            SearchOptions(name=run, out_dir=out, cache_root=cache, seed=seed, explain_n=0),
        )
        seconds[name] = time.perf_counter() - start
        found[name] = trained_epochs(out / "tune")
    random_best = max((v for v in found["random"] if v is not None), default=None)
    result = {
        name: _arm(values, random_best) | {"seconds": seconds[name]}
        for name, values in found.items()
    }
    reached = result["tpe_asha"]["epochs_to_reach_random_best"]
    result["epoch_ratio"] = None if reached is None else reached / result["random"]["trial_epochs"]
    return result


def tune_overhead(data_path: Path, work: Path, cache: Path, size: int) -> dict[str, float]:
    """(c): Tune phase of a 1-trial, 1-epoch search minus the same ``train_trial`` run bare."""
    space = _space_file(
        work,
        "overhead",
        size,
        {"sampler": "random", "scheduler": "none", "num_samples": 1, "max_epochs": 1},
    )
    out = work / "overhead"
    shutil.rmtree(out, ignore_errors=True)
    summary = run_search(
        space,
        data_path,
        SearchOptions(name="overhead", out_dir=out, cache_root=cache, explain_n=0),
    )
    loaded = load_search_space(space)
    config = loaded.config_for(summary["trials"][0]["params"])
    data = prepare_data(loaded.preprocess_config, data_path, cache, workers=1)
    start = time.perf_counter()
    train_trial(config, data, lambda metrics, checkpoint: None)
    bare = time.perf_counter() - start
    tune_s = summary["timings"]["tune_s"]
    return {"tune_s": tune_s, "bare_s": bare, "overhead_s": tune_s - bare}


def _print_table(
    args: argparse.Namespace, seeds: dict[int, dict[str, Any]], overhead: dict[str, float] | None
) -> None:
    """The benchmark's table: each seed's two searchers, then Tune's overhead."""
    print(f"budget {args.budget} trial-epochs per searcher, {args.size} px, metric {METRIC}")
    header = (
        f"{'seed':>4} {'searcher':<16} {'best val bacc':>13} {'trial-epochs':>12} "
        f"{'epochs to random best':>21} {'minutes':>7}"
    )
    print(header)
    print("-" * len(header))
    for seed, result in seeds.items():
        for name in ("random", "tpe_asha"):
            arm = result[name]
            reached = arm["epochs_to_reach_random_best"]
            print(
                f"{seed:>4} {name:<16} {arm['best']:>13.3f} {arm['trial_epochs']:>12} "
                f"{'never' if reached is None else reached:>21} {arm['seconds'] / 60:>7.1f}"
            )
        ratio = result["epoch_ratio"]
        verdict = "not reached" if ratio is None else f"{ratio:.2f}"
        print(
            f"{'':>4} TPE+ASHA epochs to random's best / random's epochs: {verdict} "
            f"(target <= {TARGET_EPOCH_RATIO})"
        )
    if overhead is not None:
        tune_s, bare_s, extra_s = (overhead[k] for k in ("tune_s", "bare_s", "overhead_s"))
        print(
            f"Tune overhead, 1 trial x 1 epoch: Tune phase {tune_s:.1f} s - bare {bare_s:.1f} s "
            f"= {extra_s:.1f} s (target < {TARGET_OVERHEAD_S} s)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="MIAS folder or archive")
    parser.add_argument("--budget", type=int, default=36, help="trial-epochs per searcher")
    parser.add_argument("--max-epochs", type=int, default=6, help="epochs of a full trial")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--size", type=int, default=64, help="input size (px)")
    parser.add_argument("--cv", type=int, help="cross-validate every trial over CV folds")
    parser.add_argument("--skip-overhead", action="store_true", help="skip (c)")
    parser.add_argument("--work", default="benchmarks/results/search_runs")
    parser.add_argument("--out", default="benchmarks/results/search.json")
    args = parser.parse_args()
    if args.budget < args.max_epochs * (args.cv or 1):
        parser.error("--budget must hold at least one whole trial (max epochs x folds)")

    import ray

    work = Path(args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    cache = work / "cache"
    ray.init(include_dashboard=False, log_to_driver=False)
    overhead = (
        None if args.skip_overhead else tune_overhead(Path(args.data), work, cache, args.size)
    )
    seeds = {
        seed: compare_searchers(
            Path(args.data),
            work,
            cache,
            budget=args.budget,
            max_epochs=args.max_epochs,
            seed=seed,
            size=args.size,
            cv=args.cv,
        )
        for seed in args.seeds
    }
    results = {
        "settings": {
            "space": str(SPACE),
            "budget_trial_epochs": args.budget,
            "max_epochs": args.max_epochs,
            "input_size": args.size,
            "cv_folds": args.cv,
            "metric": METRIC,
        },
        "seeds": seeds,
        "tune_overhead": overhead,
        "target_epoch_ratio": TARGET_EPOCH_RATIO,
        "target_overhead_s": TARGET_OVERHEAD_S,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))

    _print_table(args, seeds, overhead)
    print(f"written: {out}")


if __name__ == "__main__":
    main()
