"""Cross-validated selection benchmark: fold racing's savings, and whether cross-validation ranks
configurations the way held-out patients do.

    python benchmarks/cv_bench.py --data PATH [--folds 5] [--epochs 3]

The same 8 fixed configurations (``benchmarks/cv_bench_space.yaml``: ResNet-18 and
MobileNet-V2 x 64 and 96 px x learning rate 3e-4 and 3e-3; random weights, seeded, the outer
test part of 20 % of the patients) are searched three times, as grids in a fixed order:

(a) ``cv_all``: every fold of every configuration (``scheduler: none``);
(b) ``cv_race``: fold racing, ASHA over folds (grace 1 fold, reduction factor 2);
(c) ``single``: one patient-level train/validation split per configuration, no cross-validation.

Fold racing (a vs b): trial-epochs trained, and whether racing finds (a)'s best configuration
with the same out-of-fold score. Target: at most half the trial-epochs for the same best.

Selection reliability (a vs c): every configuration is also scored once on the held-out test
part (the search's ``test`` figures: the fold ensemble for (a), the best-epoch model for (c));
Spearman's rank correlation of each selection metric (out of fold, single-split validation)
with the test balanced accuracy. Target: the cross-validated ranking correlates clearly better.
Caveat: (a) is scored on test with the ensemble of its fold models, (c) with one model, so the
comparison measures the protocol as a whole (selection and the model it ships), not selection
alone.

Prints a table and writes JSON (default ``benchmarks/results/cv.json``); the searches stay under
``--work``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path
from typing import Any

import yaml
from scipy.stats import spearmanr

from mammo_ray.search.run import SearchOptions, run_search

SPACE = Path(__file__).resolve().parent / "cv_bench_space.yaml"
METRIC = "val_balanced_accuracy"
TARGET_EPOCH_RATIO = 0.5

ARMS = {
    "cv_all": {"scheduler": "none"},
    "cv_race": {"scheduler": "asha", "grace_period": 1, "reduction_factor": 2},
    "single": {"scheduler": "none"},
}


def _space_file(work: Path, arm: str, folds: int, epochs: int) -> Path:
    data = yaml.safe_load(SPACE.read_text())
    data["base"] = str((SPACE.parent / data["base"]).resolve())
    data["fixed"]["epochs"] = epochs
    data["search"] = {**data["search"], **ARMS[arm], "max_epochs": epochs}
    if arm != "single":
        data["search"]["cv"] = {"folds": folds}
    path = work / f"{arm}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _config_key(trial: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(trial["params"].items()))


def _trials(summary: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Configuration -> its selection value, folds run, trial-epochs and test bacc."""
    rows = {}
    for trial in summary["trials"]:
        history, best = trial["history"], trial["best"] or {}
        rows[_config_key(trial)] = {
            "selection": best.get(METRIC),
            "folds": best.get("fold"),
            "trial_epochs": sum(int(h.get("fold_epochs", 1)) for h in history),
            "test": (trial.get("test") or {}).get("balanced_accuracy"),
        }
    return rows


def _spearman(rows: dict[str, dict[str, Any]], folds: int) -> float | None:
    """Spearman's rho of selection value and test bacc over the trials that ran every fold."""
    pairs = [
        (r["selection"], r["test"])
        for r in rows.values()
        if None not in (r["selection"], r["test"]) and r["folds"] in (None, folds)
    ]
    if len(pairs) < 3:
        return None
    x, y = zip(*pairs, strict=True)
    return float(spearmanr(x, y).statistic)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="MIAS folder or archive")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=3, help="epochs per fold (or trial)")
    parser.add_argument("--work", default="benchmarks/results/cv_runs")
    parser.add_argument("--out", default="benchmarks/results/cv.json")
    args = parser.parse_args()

    import ray

    work = Path(args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    ray.init(include_dashboard=False, log_to_driver=False)
    arms: dict[str, Any] = {}
    for arm in ARMS:
        out = work / arm
        shutil.rmtree(out, ignore_errors=True)
        start = time.perf_counter()
        summary = run_search(
            _space_file(work, arm, args.folds, args.epochs),
            Path(args.data),
            SearchOptions(name=arm, out_dir=out, cache_root=work / "cache", explain_n=0),
        )
        rows = _trials(summary)
        best = next(t for t in summary["trials"] if t["trial_id"] == summary["best_trial"])
        arms[arm] = {
            "minutes": (time.perf_counter() - start) / 60,
            "trial_epochs": sum(r["trial_epochs"] for r in rows.values()),
            "best_config": _config_key(best),
            "best_selection": best["best"][METRIC],
            "best_test": rows[_config_key(best)]["test"] or float("nan"),
            "spearman_selection_vs_test": _spearman(rows, args.folds),
            "trials": rows,
        }
    ratio = arms["cv_race"]["trial_epochs"] / arms["cv_all"]["trial_epochs"]
    same_best = arms["cv_race"]["best_config"] == arms["cv_all"]["best_config"]
    results = {
        "settings": {"space": str(SPACE), "folds": args.folds, "epochs": args.epochs},
        "arms": arms,
        "racing_epoch_ratio": ratio,
        "racing_found_the_same_best": same_best,
        "target_epoch_ratio": TARGET_EPOCH_RATIO,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))

    print(f"8 configurations, {args.folds} folds x {args.epochs} epochs, metric {METRIC}")
    header = (
        f"{'arm':<8} {'trial-epochs':>12} {'best selection':>14} {'its test bacc':>13} "
        f"{'Spearman sel/test':>17} {'minutes':>7}  best configuration"
    )
    print(header)
    print("-" * len(header))
    for name, arm in arms.items():
        rho = arm["spearman_selection_vs_test"]
        print(
            f"{name:<8} {arm['trial_epochs']:>12} {arm['best_selection']:>14.3f} "
            f"{arm['best_test']:>13.3f} {'n/a' if rho is None else f'{rho:+.2f}':>17} "
            f"{arm['minutes']:>7.1f}  {arm['best_config']}"
        )
    print(
        f"fold racing: {ratio:.2f} of the trial-epochs of every fold (target <= "
        f"{TARGET_EPOCH_RATIO}), same best configuration: {'yes' if same_best else 'no'}"
    )
    print(f"written: {out}")


if __name__ == "__main__":
    main()
