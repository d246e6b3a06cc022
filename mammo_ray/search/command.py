"""The command line of ``python -m mammo_ray.search`` (:mod:`mammo_ray.search.run` runs it):
its options, and ``--plan``, which prints the plan of the search (:mod:`mammo_ray.search.plan`)
and stops before any trial."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from mammo_ray.cli import check_outputs, data_options, resolve_data
from mammo_ray.search.run import DEFAULT_SPACE, SearchOptions, plan_only, run_search

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m mammo_ray.search",
        description=(
            "Search input modes (the paper's whole film, patches, patches against the other "
            "breast), backbones, learning rates and ablation settings with Ray Tune + Optuna "
            "(TPE, ASHA early stopping over patient folds), log every trial to MLflow, "
            "cross-validate the radiomics baseline on the same folds, then evaluate the best "
            "model once on the held-out test split, explain it with LIME and write report.md. "
            "The published configuration is always the first trial."
        ),
        parents=[data_options(workers=False)],
    )
    parser.add_argument(
        "--space",
        default=str(DEFAULT_SPACE),
        help="search space YAML (default: search_spaces/default.yaml)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a fixed training setting of the space, e.g. model.pretrained=none "
        "(repeatable)",
    )
    _budget_options(parser)
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
        "--lime-samples",
        type=int,
        help="LIME perturbations per image (default: 300, or 50 when a patch model won: each "
        "perturbation then maps a film with every fold model)",
    )
    return parser


def _budget_options(parser: argparse.ArgumentParser) -> None:
    """What a search may spend: trials, epochs, time, CPUs and GPUs, and its plan."""
    parser.add_argument(
        "--num-samples", type=int, help="trials to sample (overrides the space; the plan keeps it)"
    )
    parser.add_argument(
        "--max-epochs",
        type=int,
        help="epochs per trial at most (ASHA's max_t), or per fold with search.cv "
        "(overrides the space; the plan keeps it)",
    )
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
        "--plan",
        action="store_true",
        help="print the plan (each kind of trial timed from throughput measured on this "
        "machine, how many trials of how many epochs fit --time-budget, what to change for "
        "more) and exit without searching",
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    check_outputs(args, dirs=("out", "cache", "storage"))
    options = SearchOptions(
        name=args.name,
        overrides=tuple(args.set),
        out_dir=None if args.out is None else Path(args.out),
        storage=args.storage,
        cache_root=Path(args.cache),
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
    if args.plan:
        plan_only(args.space, resolve_data(args.data), options)
        return 0
    run_search(args.space, resolve_data(args.data), options)
    return 0
