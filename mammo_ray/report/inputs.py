"""What a report reads from a search directory, checked: ``search.json``, ``best/metrics.json``,
``explain/lime.json``, ``audit.json`` and ``quality.csv``; a missing optional part is None, a
malformed one a :class:`~mammo_ray.errors.ConfigError` naming the file and the key.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from mammo_ray.errors import ConfigError

__all__ = ["ReportInputs", "load_inputs"]


@dataclass(frozen=True)
class ReportInputs:
    """What :func:`load_inputs` read from a search directory; ``None`` marks a missing part."""

    search: dict[str, Any]
    best_metrics: dict[str, Any] | None
    lime: dict[str, Any] | None
    audit: list[dict[str, Any]] | None
    quality: pd.DataFrame | None


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: invalid JSON ({exc})") from None


def _require(data: Mapping[str, Any], keys: Sequence[str], path: Path) -> None:
    missing = [key for key in keys if key not in data]
    if missing:
        raise ConfigError(f"{path}: missing key(s) {', '.join(missing)}")


def _check_search(data: object, path: Path) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a JSON object, got {type(data).__name__}")
    _require(data, ("name", "metric", "trials"), path)
    if not isinstance(data["trials"], list):
        raise ConfigError(f"{path}: 'trials' must be a list")
    for index, trial in enumerate(data["trials"]):
        if not isinstance(trial, dict) or "trial_id" not in trial:
            raise ConfigError(f"{path}: trials[{index}] is not an object with a 'trial_id'")
    if data.get("mode", "max") not in ("min", "max"):
        raise ConfigError(f"{path}: 'mode' must be 'min' or 'max', got {data['mode']!r}")
    wanted = data.get("best_trial")
    if wanted is not None and wanted not in {t["trial_id"] for t in data["trials"]}:
        raise ConfigError(f"{path}: best_trial {wanted!r} is not one of the trials")
    return data


def _check_metrics(data: object, path: Path) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a JSON object, got {type(data).__name__}")
    _require(data, ("labels", "n", "confusion_matrix", "accuracy", "per_class"), path)
    labels = data["labels"]
    if not isinstance(labels, list) or not labels or not all(isinstance(x, str) for x in labels):
        raise ConfigError(f"{path}: 'labels' must be a non-empty list of class names")
    if isinstance(data["n"], bool) or not isinstance(data["n"], int):
        raise ConfigError(f"{path}: 'n' must be an integer, got {data['n']!r}")
    size = len(labels)
    matrix = data["confusion_matrix"]
    if (
        not isinstance(matrix, list)
        or len(matrix) != size
        or any(not isinstance(row, list) or len(row) != size for row in matrix)
    ):
        raise ConfigError(f"{path}: confusion_matrix must be {size} x {size} for {labels}")
    if any(isinstance(v, bool) or not isinstance(v, int) or v < 0 for row in matrix for v in row):
        raise ConfigError(f"{path}: confusion_matrix must hold non-negative integer counts")
    per_class = data["per_class"]
    if not isinstance(per_class, dict) or not all(isinstance(v, dict) for v in per_class.values()):
        raise ConfigError(f"{path}: 'per_class' must map each label to an object")
    return data


def _check_lime(data: object, path: Path) -> dict[str, Any]:
    images = data.get("images") if isinstance(data, dict) else None
    if not isinstance(images, list) or not all(isinstance(image, dict) for image in images):
        raise ConfigError(f"{path}: expected an object with an 'images' list of objects")
    return data


def _check_audit(data: object, path: Path) -> list[dict[str, Any]]:
    if not isinstance(data, list) or not all(isinstance(row, dict) for row in data):
        raise ConfigError(f"{path}: expected a list of objects, one per arm")
    return data


def _read_quality(path: Path) -> pd.DataFrame:
    try:
        frame = pd.read_csv(path)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise ConfigError(f"{path}: cannot read as CSV ({exc})") from None
    missing = {"name", "table"} - set(frame.columns)
    if missing:
        raise ConfigError(f"{path}: missing column(s) {', '.join(sorted(missing))}")
    return frame


def load_inputs(storage: str | Path) -> ReportInputs:
    """Read a search directory: ``search.json`` is required, every other part optional.

    Raises
    ------
    ConfigError : naming the file, if ``storage`` is not a directory, ``search.json`` is
        missing, or a file present is not valid JSON / CSV or lacks a required key.
    """
    storage = Path(storage)
    if not storage.is_dir():
        raise ConfigError(f"{storage}: not a directory (--storage takes a search directory)")
    search_path = storage / "search.json"
    if not search_path.is_file():
        raise ConfigError(f"{search_path}: not found; is {storage} a finished search directory?")
    search = _check_search(_read_json(search_path), search_path)
    parts: dict[str, Any] = {}
    for name, relative, check in (
        ("best_metrics", "best/metrics.json", _check_metrics),
        ("lime", "explain/lime.json", _check_lime),
        ("audit", "audit.json", _check_audit),
    ):
        path = storage / relative
        parts[name] = check(_read_json(path), path) if path.is_file() else None
    quality_path = storage / "quality.csv"
    quality = _read_quality(quality_path) if quality_path.is_file() else None
    return ReportInputs(search=search, quality=quality, **parts)
