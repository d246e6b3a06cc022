"""A search's fixed baselines: models with nothing to search, cross-validated once on the
trials' patient folds after the trials, so the report sets them beside the searched ones.

``radiomics`` (``search.baselines: [radiomics]``) is the baseline every deep model must beat:
:func:`~mammo_ray.learn.radiomics_cv.run_radiomics_cv` (the classifier of
``search_spaces/radiomics.yaml``) on the search's cache, so on the films the trials read
(their enhancement, which may differ from ``radiomics.yaml``'s), into
``OUT/baseline_radiomics/`` (its ``train cv`` outputs), an MLflow run nested under the search's
parent run. It never competes for the best trial: the search selects networks.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

from mammo_ray.config import from_dict
from mammo_ray.errors import MammoRayError
from mammo_ray.learn.config import TrainConfig
from mammo_ray.learn.radiomics_cv import run_radiomics_cv
from mammo_ray.preprocess.prepared import PreparedData
from mammo_ray.search.space import SearchSpace

__all__ = ["BASELINE_KEYS", "run_baselines"]

BASELINE_KEYS = ("out_of_fold", "test", "folds")
"""What ``search.json`` keeps of each baseline's ``summary.json`` (beside its folder)."""


def run_baselines(
    space: SearchSpace,
    data: PreparedData,
    out: Path,
    *,
    uri: str,
    experiment: str,
    parent_run_id: str,
    progress: bool = True,
) -> dict[str, dict[str, Any]]:
    """Cross-validate each of ``space.settings.baselines`` (MLflow runs at ``uri`` under the
    parent run): ``{name: {"dir": folder under out, "out_of_fold": ..., "test": ...,
    "folds": k}}`` (the measures of its ``summary.json``). A baseline that fails is left out,
    its folder removed, with one line on stderr: it is for comparison, and the trials are
    done."""
    done: dict[str, dict[str, Any]] = {}
    for name in space.settings.baselines:
        cfg = from_dict(TrainConfig, space.baseline_config(name), where=f"baseline {name}")
        folder = f"baseline_{name}"
        try:
            summary = run_radiomics_cv(
                cfg,
                data,
                out / folder,
                mlflow_uri=uri,
                experiment=experiment,
                run_name=f"baseline: {name}",
                parent_run_id=parent_run_id,
                progress=progress,
            )
        except (MammoRayError, OSError) as exc:
            shutil.rmtree(out / folder, ignore_errors=True)
            print(f"baseline {name} left out: {exc}", file=sys.stderr)
            continue
        done[name] = {"dir": folder} | {k: summary[k] for k in BASELINE_KEYS}
        oof = summary["out_of_fold"]
        low, high = oof["ci95"]["balanced_accuracy"]
        print(
            f"baseline {name}: out of fold balanced accuracy {oof['balanced_accuracy']:.3f} "
            f"({low:.3f}-{high:.3f}), AUC normal vs abnormal "
            f"{oof['auc_normal_vs_abnormal'] or float('nan'):.3f} over {oof['n']} films "
            f"-> {out / folder}"
        )
    return done
