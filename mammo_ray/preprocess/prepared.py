"""The preprocessing cache in memory: :class:`PreparedData`, made by :func:`prepare_data`.

Training, evaluation, explanation and search all read the films through this one object: the
cached arrays (``enhanced_<S>``, ``segmented_<S>``) and the manifest whose records give each
row's image id, patient and label.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from mammo_ray.data.mias import MIAS_IMAGE_SHAPE
from mammo_ray.data.mias_info import LABELS
from mammo_ray.errors import CacheError
from mammo_ray.preprocess.pipeline import (
    CacheManifest,
    PreprocessConfig,
    load_cache,
    run_preprocessing,
)

__all__ = ["PreparedData", "prepare_data"]


@dataclasses.dataclass(frozen=True)
class PreparedData:
    """The preprocessing cache in memory: ``{array name: (N, S, S) uint8}`` and its manifest.

    Row ``i`` of every array is ``manifest.records[i]``.
    """

    arrays: dict[str, np.ndarray]
    manifest: CacheManifest

    def __post_init__(self) -> None:
        n_records = len(self.manifest.records)
        for name, array in self.arrays.items():
            if array.dtype != np.uint8 or array.ndim != 3 or array.shape[0] != n_records:
                raise ValueError(
                    f"array {name!r} must be ({n_records}, S, S) uint8 like the manifest's "
                    f"records, got {array.shape} {array.dtype}"
                )

    @property
    def identity(self) -> dict[str, str]:
        """What names the data a run saw (MLflow tags): the dataset fingerprint, the cache key."""
        return {
            "dataset_fingerprint": self.manifest.fingerprint,
            "preprocess_key": self.manifest.key,
        }

    @property
    def labels(self) -> np.ndarray:
        """(N,) int64 class index of each record into :data:`~mammo_ray.data.mias_info.LABELS`."""
        index = {name: i for i, name in enumerate(LABELS)}
        return np.array([index[r.label] for r in self.manifest.records], dtype=np.int64)

    @property
    def patient_ids(self) -> np.ndarray:
        """(N,) int64 patient of each record."""
        return np.array([r.patient_id for r in self.manifest.records], dtype=np.int64)

    @property
    def image_ids(self) -> list[str]:
        """(N,) image id of each record, e.g. ``mdb001``."""
        return self.manifest.image_ids

    def array(self, name: str) -> np.ndarray:
        """The cached array ``name`` (e.g. ``segmented_224``), or a :class:`CacheError` that
        names the cache, the arrays it has and how to get the missing one."""
        if name not in self.arrays:
            size = name.rpartition("_")[2]
            raise CacheError(
                f"the preprocessing cache {self.manifest.key} has no array {name!r} "
                f"(it has {', '.join(sorted(self.arrays))}); add {size} to preprocess.sizes"
            )
        return self.arrays[name]


def prepare_data(
    preprocess_cfg: PreprocessConfig,
    data_path: str | Path,
    cache_root: str | Path,
    *,
    workers: int = 2,
    address: str | None = None,
    image_shape: tuple[int, int] | None = MIAS_IMAGE_SHAPE,
    progress: bool = False,
) -> PreparedData:
    """Run (or reuse) the preprocessing cache and load it into memory as PreparedData.

    ``progress`` shows a bar on stderr in place of Ray Data's own log lines.
    """

    bars: list[tqdm] = []

    def advance(done: int, total: int) -> None:
        if not bars:
            bars.append(tqdm(total=total, unit="image", desc="preprocess", file=sys.stderr))
        bars[0].update(done - bars[0].n)

    try:
        result = run_preprocessing(
            data_path,
            preprocess_cfg,
            cache_root,
            workers=workers,
            address=address,
            image_shape=image_shape,
            progress=advance if progress else None,
        )
    finally:
        for bar in bars:
            bar.close()
    arrays, manifest = load_cache(result.cache_dir)
    return PreparedData(arrays, manifest)
