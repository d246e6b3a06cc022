"""``python -m mammo_ray.train``: one training run with all its outputs, and the leakage audit.

A run: preprocess (cached) → split → ``train_trial`` (per-epoch validation) → keep the best
epoch's checkpoint by the selection metric on validation → evaluate it once on the test split →
``model.pt``, ``metrics.json``, ``predictions.csv``, ``confusion_matrix.png``, ``curves.png``,
``split.json``, ``config.yaml``, all logged to an MLflow run.

The audit trains one configuration under several splits (the paper's image-level split, the
patient-level split and, optionally, x5 augmentation applied before an image-level split) and
prints the test accuracies side by side; then it counts, for a k-fold cross-validation of every
film, the patients each fold shares with the folds that train its model, with image-level folds
(the paper's protocol) and patient-grouped ones (``audit_folds.json``).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from tqdm import tqdm

from mammo_ray.cli import check_outputs, data_options, resolve_data, text_table
from mammo_ray.config import apply_overrides, from_dict, to_dict
from mammo_ray.contracts import AuditFile, AuditFoldsFile, check
from mammo_ray.data.mias_info import LABELS
from mammo_ray.errors import ConfigError
from mammo_ray.files import write_json_atomic, write_text_atomic
from mammo_ray.learn.best_epoch import keep_best_epoch
from mammo_ray.learn.checkpoint import load_trained
from mammo_ray.learn.config import TrainConfig, load_train_config
from mammo_ray.learn.cv import format_cross_validation, run_cross_validation
from mammo_ray.learn.evaluate import evaluate_and_log
from mammo_ray.learn.patch_cv import run_patch_cv
from mammo_ray.learn.radiomics_cv import run_radiomics_cv
from mammo_ray.learn.splits import fold_leakage, leakage_report, write_split
from mammo_ray.learn.trial import TrialArrays, train_trial, trial_arrays
from mammo_ray.plots import plot_training_curves
from mammo_ray.preprocess.prepared import PreparedData, prepare_data
from mammo_ray.tracking import TrainingRun, tracking_uri

__all__ = [
    "run_training",
    "AUDIT_ARMS",
    "run_audit",
    "format_audit",
    "AUDIT_FOLD_PROTOCOLS",
    "audit_folds",
    "format_audit_folds",
]


def run_training(
    cfg: TrainConfig,
    data: PreparedData,
    out_dir: str | Path,
    *,
    mlflow_uri: str | None = None,
    experiment: str = "mammo_ray",
    run_name: str | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train ``cfg``, evaluate the best epoch once on the test split, write and log everything.

    Writes into ``out_dir``: ``config.yaml``, ``split.json``, ``model.pt`` (the best epoch by
    ``cfg.selection_metric`` on validation), ``curves.png``, the test split's
    ``metrics.json``, ``predictions.csv`` and ``confusion_matrix.png``, and ``summary.json``
    (returned). All of it is logged to one MLflow run (:class:`~mammo_ray.tracking.TrainingRun`)
    with the flattened config as params and every epoch's metrics at step = epoch.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config = to_dict(cfg)
    write_text_atomic(out / "config.yaml", yaml.safe_dump(config, sort_keys=False))
    arrays = trial_arrays(cfg, data)
    write_split(out / "split.json", arrays.split, arrays.image_ids)
    tags = data.identity | cfg.tags
    uri = tracking_uri(out, mlflow_uri)
    with TrainingRun(uri, experiment=experiment, run_name=run_name, tags=tags) as run:
        run.log_params(config)
        with tqdm(
            total=cfg.epochs,
            unit="epoch",
            desc=run_name or "train",
            disable=not progress,
            file=sys.stderr,
        ) as bar:
            result = train_trial(config, data, keep_best_epoch(cfg, out / "model.pt", run, bar))
        plot_training_curves(result["history"], out / "curves.png")
        metrics = evaluate_and_log(
            load_trained(out / "model.pt").model,
            arrays,
            out,
            run,
            title=f"{cfg.model.backbone}, {cfg.split.method} split, test",
            seed=cfg.seed,
        )
        summary = {
            "best_epoch": result["best"]["epoch"],
            "best_val": {k: v for k, v in result["best"].items() if k.startswith("val_")},
            "test": {
                k: metrics[k] for k in ("n", "accuracy", "balanced_accuracy", "macro_f1", "ci95")
            },
            "images_per_s": [row["images_per_s"] for row in result["history"]],
            "split": cfg.split.method,
            "leaky": cfg.leaky,
            "leakage": _leakage(arrays),
            "mlflow": {"uri": uri, "run_id": run.run_id},
        }
        write_json_atomic(out / "summary.json", summary)
        run.log_metrics({"best_epoch": result["best"]["epoch"]})
        run.log_artifacts([out / name for name in _RUN_FILES])
        run.log_artifacts([out / "model.pt"], artifact_path="model")
    return summary


def _leakage(arrays: TrialArrays) -> dict[str, Any]:
    """:func:`~mammo_ray.learn.splits.leakage_report` of the run's split, plus
    ``test_images_from_train_films``: test images that are a training film or a copy of one."""
    split = arrays.split
    leakage = leakage_report(split, arrays.patient_ids.tolist())
    train_films = set(arrays.source_index[list(split.train)].tolist())
    leakage["test_images_from_train_films"] = sum(
        1 for i in split.test if int(arrays.source_index[i]) in train_films
    )
    return leakage


_RUN_FILES = (
    "curves.png",
    "split.json",
    "config.yaml",
    "summary.json",
)


AUDIT_ARMS: dict[str, dict[str, Any]] = {
    "paper (image-level 80:20)": {"split.method": "paper", "augment_before_split": False},
    "patient (grouped by patient)": {"split.method": "patient", "augment_before_split": False},
    "paper + x5 copies before split": {
        "split.method": "paper",
        "augment.mode": "x5",
        "augment_before_split": True,
    },
}
"""The audit's split protocols: their names and the config keys each one sets."""


def run_audit(
    cfg: TrainConfig,
    data: PreparedData,
    out_dir: str | Path,
    *,
    augment_first: bool = True,
    mlflow_uri: str | None = None,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Train ``cfg`` once per audit arm (one MLflow store); one row per arm with test metrics.

    Each arm writes a full training run into ``out_dir/<arm>``; ``out_dir/audit.json`` holds
    the rows. ``augment_first=False`` skips the arm that copies images before splitting.
    """

    out = Path(out_dir)
    uri = tracking_uri(out, mlflow_uri)
    rows = []
    for name, changes in AUDIT_ARMS.items():
        if changes["augment_before_split"] and not augment_first:
            continue
        arm_cfg = from_dict(
            TrainConfig,
            apply_overrides(to_dict(cfg), [f"{k}={json.dumps(v)}" for k, v in changes.items()]),
            where=f"audit arm {name!r}",
        )
        slug = name.split(" ")[0] + ("-augfirst" if changes["augment_before_split"] else "")
        summary = run_training(
            arm_cfg, data, out / slug, mlflow_uri=uri, run_name=f"audit {slug}", progress=progress
        )
        rows.append({"arm": name, **summary})
    check(AuditFile, rows, out / "audit.json")
    write_json_atomic(out / "audit.json", rows)
    folds = audit_folds(cfg, data)
    check(AuditFoldsFile, folds, out / "audit_folds.json")
    write_json_atomic(out / "audit_folds.json", folds, indent=1)
    return rows


AUDIT_FOLD_PROTOCOLS = {"paper (image-level folds)": False, "patient (grouped folds)": True}
"""The cross-validation protocols whose folds the audit compares: name -> by patient."""


def audit_folds(cfg: TrainConfig, data: PreparedData) -> dict[str, list[dict[str, int]]]:
    """``audit_folds.json``: ``cfg.split.folds``-fold cross-validation of every film under each
    of :data:`AUDIT_FOLD_PROTOCOLS` (:func:`~mammo_ray.learn.splits.fold_leakage`, seeded with
    ``cfg.split.seed``): what each fold shares with the folds that train its model."""
    labels = [LABELS[i] for i in data.labels]
    patients = data.patient_ids.tolist()
    try:
        return {
            name: fold_leakage(
                labels, patients, cfg.split.folds, cfg.split.seed, by_patient=by_patient
            )
            for name, by_patient in AUDIT_FOLD_PROTOCOLS.items()
        }
    except ValueError as exc:
        raise ConfigError(f"audit folds (split.folds={cfg.split.folds}): {exc}") from None


def format_audit_folds(folds: dict[str, list[dict[str, int]]]) -> str:
    """One line per protocol: per fold, patients with a film in another fold / patients."""
    lines = [f"{len(next(iter(folds.values())))}-fold cross-validation of every film:"]
    for name, rows in folds.items():
        shared = ", ".join(f"{r['patients_in_other_folds']}/{r['patients']}" for r in rows)
        films = sum(r["films_with_partner_in_training"] for r in rows)
        lines.append(
            f"  {name}: patients also in another fold, per fold: {shared}; "
            f"films whose partner film trained their model: {films}"
        )
    return "\n".join(lines)


def format_audit(rows: list[dict[str, Any]]) -> str:
    """The audit as an aligned text table: one row per split protocol.

    ``shared patients``: patients with films in both train and test; ``test from train
    films``: test images that are a training film or a copy of one.
    """
    header = (
        "protocol",
        "n test",
        "accuracy (95% CI)",
        "bal. acc.",
        "shared patients",
        "test from train films",
    )
    table = []
    for row in rows:
        test, leakage = row["test"], row["leakage"]
        lo, hi = test["ci95"]["accuracy"]
        table.append(
            (
                row["arm"],
                test["n"],
                f"{test['accuracy']:.3f} ({lo:.3f}-{hi:.3f})",
                f"{test['balanced_accuracy']:.3f}",
                leakage["patients_train_test"],
                leakage["test_images_from_train_films"],
            )
        )
    lines = text_table(header, table)
    return "\n".join([lines[0], "-" * len(lines[0]), *lines[1:]])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m mammo_ray.train",
        description="Train one configuration (e.g. search_spaces/published.yaml) and evaluate its "
        "best epoch once on the held-out test split; or cross-validate it by patient ('cv', or "
        "a config with split.method: cv, as search_spaces/recommended.yaml: a model per fold, "
        "out-of-fold metrics with 95%% CIs, the fold ensemble as model.pt evaluated on the "
        "outer test part); or run the leakage audit ('audit').",
        parents=[data_options()],
    )
    parser.add_argument(
        "command",
        nargs="?",
        choices=["cv", "audit"],
        help="'cv': patient-level k-fold cross-validation; 'audit': compare split protocols",
    )
    parser.add_argument(
        "--folds",
        type=int,
        metavar="K",
        help="cv: number of folds (default: split.folds, 5)",
    )
    parser.add_argument("--config", help="training config YAML (default: built-in defaults)")
    parser.add_argument(
        "--out", default="runs/train", help="output directory (default: runs/train)"
    )
    parser.add_argument("--epochs", type=int, help="override the number of epochs")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override any config key, e.g. model.pretrained=none, optim.lr=0.0001, "
        "split.method=patient (aliases: pretrained, backbone, lr, optimizer); repeatable",
    )
    parser.add_argument("--mlflow-uri", help="MLflow tracking URI (default: sqlite under --out)")
    parser.add_argument(
        "--no-augment-first",
        action="store_true",
        help="audit: skip the arm that augments before splitting",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    check_outputs(args)
    overrides = list(args.set)
    if args.command == "cv":
        overrides += ["split.method=cv", *([f"split.folds={args.folds}"] if args.folds else [])]
    elif args.folds is not None:
        raise ConfigError("--folds is for 'train cv'")
    cfg = load_train_config(args.config, overrides, args.epochs)
    cross_validate = args.command == "cv" or (args.command is None and cfg.split.method == "cv")
    if cfg.input.mode != "whole" and not cross_validate:
        raise ConfigError(
            f"input.mode {cfg.input.mode} is cross-validated (its model is the fold ensemble): "
            "run 'python -m mammo_ray.train cv' or set split.method: cv"
        )
    progress = not args.quiet
    data = prepare_data(
        cfg.preprocess,
        resolve_data(args.data),
        args.cache,
        workers=args.workers,
        address=args.address,
        progress=progress,
    )
    if cross_validate:
        if cfg.input.mode == "radiomics":
            summary = run_radiomics_cv(
                cfg,
                data,
                args.out,
                workers=args.workers,
                mlflow_uri=args.mlflow_uri,
                progress=progress,
            )
        elif cfg.input.patches:
            summary = run_patch_cv(
                cfg, data, args.out, mlflow_uri=args.mlflow_uri, progress=progress
            )
        else:
            summary = run_cross_validation(
                cfg, data, args.out, mlflow_uri=args.mlflow_uri, progress=progress
            )
        print(format_cross_validation(summary))
        print(f"written: {Path(args.out).resolve()}")
        return 0
    if args.command == "audit":
        rows = run_audit(
            cfg,
            data,
            args.out,
            augment_first=not args.no_augment_first,
            mlflow_uri=args.mlflow_uri,
            progress=progress,
        )
        print(format_audit(rows))
        print(format_audit_folds(json.loads((Path(args.out) / "audit_folds.json").read_text())))
        return 0
    summary = run_training(
        cfg, data, args.out, mlflow_uri=args.mlflow_uri, run_name="train", progress=progress
    )
    test = summary["test"]
    lo, hi = test["ci95"]["accuracy"]
    note = " (LEAKY: image-level split)" if summary["leaky"] else ""
    print(
        f"best epoch {summary['best_epoch']}; test n={test['n']} accuracy {test['accuracy']:.3f} "
        f"(95% CI {lo:.3f}-{hi:.3f}) balanced accuracy {test['balanced_accuracy']:.3f}{note}"
    )
    print(f"written: {Path(args.out).resolve()}")
    return 0
