"""What a report reads from a search directory, checked: ``search.json``,
``best/metrics.json``, ``best_resnet18/metrics.json``, ``explain/lime.json``, ``audit.json``
and ``audit_folds.json`` against their models in :mod:`mammo_ray.contracts`, and
``quality.csv``; a missing optional part is None, a malformed one a
:class:`~mammo_ray.errors.ConfigError` naming the file and the key.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from mammo_ray.contracts import (
    AuditFile,
    AuditFoldsFile,
    LimeFile,
    MetricsFile,
    SearchFile,
    read_checked,
)
from mammo_ray.errors import ConfigError

__all__ = ["ReportInputs", "load_inputs"]


@dataclass(frozen=True)
class ReportInputs:
    """What :func:`load_inputs` read from a search directory; ``None`` marks a missing part."""

    search: dict[str, Any]
    best_metrics: dict[str, Any] | None
    resnet18_metrics: dict[str, Any] | None
    lime: dict[str, Any] | None
    audit: list[dict[str, Any]] | None
    audit_folds: dict[str, list[dict[str, Any]]] | None
    quality: pd.DataFrame | None


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
        missing, or a file present is not valid JSON / CSV or does not fit its contract
        (:mod:`mammo_ray.contracts`), naming the key.
    """
    storage = Path(storage)
    if not storage.is_dir():
        raise ConfigError(f"{storage}: not a directory (--storage takes a search directory)")
    search_path = storage / "search.json"
    if not search_path.is_file():
        raise ConfigError(f"{search_path}: not found; is {storage} a finished search directory?")
    search = read_checked(SearchFile, search_path)
    parts: dict[str, Any] = {}
    for name, relative, model in (
        ("best_metrics", "best/metrics.json", MetricsFile),
        ("resnet18_metrics", "best_resnet18/metrics.json", MetricsFile),
        ("lime", "explain/lime.json", LimeFile),
        ("audit", "audit.json", AuditFile),
        ("audit_folds", "audit_folds.json", AuditFoldsFile),
    ):
        path = storage / relative
        parts[name] = read_checked(model, path) if path.is_file() else None
    quality_path = storage / "quality.csv"
    quality = _read_quality(quality_path) if quality_path.is_file() else None
    return ReportInputs(search=search, quality=quality, **parts)
