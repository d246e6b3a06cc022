"""Preprocessing on Ray Data, with an on-disk cache that later stages read.

Per image (a pure function, :func:`preprocess_image`)::

    original ─► enhance (median → LCM → adaptive CLAHE → Wiener, or a baseline)
             ─► segment (Otsu + morphology breast mask; candidate region on the enhanced image)
             ─► resize to each requested size:
                   enhanced_<S>  : the whole enhanced film, S x S           ("no segmentation")
                   segmented_<S> : the enhanced breast with background zeroed, cropped to the
                                   breast's bounding box, zero-padded to a centred square and
                                   resized to S x S                         ("with segmentation")
                   breast_<S>    : the breast mask (255 inside, 0 outside) in the frame of
                                   enhanced_<S>: the region patch and radiomics inputs sample

Across images, :func:`run_preprocessing` reads the archive once on the driver, ships the raw
PGM bytes through Ray Data (``map_batches`` over a pool of ``workers`` tasks, one CPU each) and
writes a cache directory named by :func:`cache_key` = hash(preprocessing config, dataset
fingerprint, package version):

    <out>/<key>/manifest.json        records, config, key, per-image stats (breast fraction, Dice),
                                     each film's shape and breast crop box
    <out>/<key>/<array>.npy          one (N, S, S) uint8 array per output, rows in manifest order

The directory is first written as ``<out>/.tmp-<key>-<random>`` and renamed into place when
complete, so an interrupted or failed run never leaves a cache that :func:`load_cache` accepts;
a staging folder a crash left behind is removed the next time the cache root is opened, once it
is older than :data:`STALE_STAGING_S`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
import ray
from ray.data import ActorPoolStrategy, DataContext

from mammo_ray import __version__
from mammo_ray.config import config_key, from_dict, to_dict
from mammo_ray.contracts import CacheManifestFile, check, read_checked
from mammo_ray.data.mias import MIAS_IMAGE_SHAPE, MiasDataset, dataset_fingerprint, load_mias
from mammo_ray.data.mias_info import MiasRecord
from mammo_ray.data.pgm import decode_pgm
from mammo_ray.errors import CacheError, ConfigError, MammoRayError
from mammo_ray.preprocess.enhance import EnhanceConfig, enhance
from mammo_ray.preprocess.segment import SegmentConfig, candidate_dice, segment

__all__ = [
    "PreprocessConfig",
    "CacheManifest",
    "PreprocessResult",
    "preprocess_image",
    "resize_square",
    "mask_square",
    "cache_key",
    "run_preprocessing",
    "load_cache",
    "ensure_ray",
    "pgm_dataset",
    "pgm_items",
    "remove_stale_staging",
    "user_error",
    "raise_user_error",
    "MANIFEST",
    "CACHE_FORMAT",
]

MANIFEST = "manifest.json"
STALE_STAGING_S = 3600.0
"""Age (seconds since last change) past which a ``.tmp-<key>-*`` staging folder is left over
from a crash, not a write in progress: writing a cache takes seconds."""


@dataclasses.dataclass(frozen=True)
class PreprocessConfig:
    """What the cache holds: enhancement, segmentation, output sizes and the label scheme."""

    enhance: EnhanceConfig = EnhanceConfig()
    segment: SegmentConfig = SegmentConfig()
    sizes: tuple[int, ...] = (224,)
    label_scheme: Literal["paper", "strict_mass"] = "paper"

    def __post_init__(self) -> None:
        if not self.sizes:
            raise ValueError("sizes must list at least one output size")
        if any(s < 16 or s > 1024 for s in self.sizes):
            raise ValueError(f"sizes must lie in [16, 1024], got {list(self.sizes)}")
        if len(set(self.sizes)) != len(self.sizes):
            raise ValueError(f"sizes must not repeat, got {list(self.sizes)}")

    def array_names(self) -> list[str]:
        """Names of the cached arrays: ``enhanced_<S>``, ``segmented_<S>`` and ``breast_<S>``
        per size."""
        return [f"{kind}_{s}" for s in self.sizes for kind in ("enhanced", "segmented", "breast")]


@dataclasses.dataclass(frozen=True)
class CacheManifest:
    """The manifest of a cache directory: what was computed, from what, for which images.

    Row ``i`` of every array is ``records[i]``, a film of ``film_shapes[i]`` (height, width)
    whose ``segmented_*`` input is the crop ``crop_boxes[i]`` (half-open row0, row1, col0,
    col1) of it; explanations map the MIAS circles with them instead of segmenting again.
    On disk it is :class:`~mammo_ray.contracts.CacheManifestFile`.
    """

    key: str
    version: str
    fingerprint: str
    data_path: str
    config: dict[str, Any]
    records: tuple[MiasRecord, ...]
    arrays: dict[str, list[int]]
    stats: dict[str, list[float | None]]
    seconds: float
    crop_boxes: tuple[tuple[int, int, int, int], ...]
    film_shapes: tuple[tuple[int, int], ...]

    @property
    def image_ids(self) -> list[str]:
        return [r.image_id for r in self.records]

    def preprocess_config(self) -> PreprocessConfig:
        return from_dict(PreprocessConfig, self.config, where=f"{MANIFEST} config")

    def to_dict(self) -> dict[str, Any]:
        """Plain data for ``manifest.json``; tuples become lists."""
        data = json.loads(json.dumps(dataclasses.asdict(self)))
        data["records"] = [r.to_dict() for r in self.records]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CacheManifest:
        """The manifest of :meth:`to_dict`'s data (already checked against the contract)."""
        values = {f.name: data[f.name] for f in dataclasses.fields(cls)}
        values["records"] = tuple(MiasRecord.from_dict(r) for r in data["records"])
        values["crop_boxes"] = tuple(tuple(box) for box in data["crop_boxes"])
        values["film_shapes"] = tuple(tuple(shape) for shape in data["film_shapes"])
        return cls(**values)


@dataclasses.dataclass(frozen=True)
class PreprocessResult:
    """Where a preprocessing run left its cache, and whether it was reused."""

    cache_dir: Path
    key: str
    reused: bool
    n_images: int
    seconds: float


def resize_square(image: np.ndarray, size: int) -> np.ndarray:
    """Zero-pad ``image`` to a centred square, then resize to ``size x size`` (area interpolation).

    Padding first keeps the aspect ratio of a cropped breast; ``cv2.INTER_AREA`` averages the
    pixels a target pixel covers, the right choice for shrinking.
    """
    height, width = image.shape
    side = max(height, width)
    if height != width:
        top, left = (side - height) // 2, (side - width) // 2
        image = cv2.copyMakeBorder(
            image, top, side - height - top, left, side - width - left, cv2.BORDER_CONSTANT, value=0
        )
    if side == size:
        return np.ascontiguousarray(image)
    interpolation = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
    return cv2.resize(image, (size, size), interpolation=interpolation)


def mask_square(mask: np.ndarray, size: int) -> np.ndarray:
    """A boolean mask as :func:`resize_square` places its image: uint8, 255 where at least half
    of the pixels a target pixel covers are inside, else 0."""
    return np.where(resize_square(mask.astype(np.uint8) * 255, size) >= 128, 255, 0).astype(
        np.uint8
    )


def preprocess_image(
    image: np.ndarray,
    cfg: PreprocessConfig,
    circles: Sequence[tuple[float, float, float]] = (),
) -> tuple[dict[str, np.ndarray], dict[str, float | None]]:
    """Enhance, segment and resize one uint8 film; return the cached arrays and per-image stats.

    Stats: ``breast_fraction`` (share of the film inside the breast mask), ``candidate_dice``
    (Dice of the candidate region against the ground-truth ``circles``; None without circles)
    and ``crop_box``, the breast's bounding box that ``segmented_*`` arrays are cut to.
    """
    enhanced = enhance(image, cfg.enhance)
    segmentation = segment(image, enhanced, cfg.segment)
    arrays: dict[str, np.ndarray] = {}
    for size in cfg.sizes:
        arrays[f"enhanced_{size}"] = resize_square(enhanced, size)
        arrays[f"segmented_{size}"] = resize_square(segmentation.cropped, size)
        arrays[f"breast_{size}"] = mask_square(segmentation.breast_mask, size)
    stats = {
        "breast_fraction": float(segmentation.breast_mask.mean()),
        "candidate_dice": candidate_dice(segmentation, circles) if circles else None,
        "crop_box": segmentation.bbox,
    }
    return arrays, stats


CACHE_FORMAT = "3"
"""Version of the cache layout; format 2 added crop boxes and film shapes to the manifest,
format 3 the ``breast_<S>`` masks."""


def cache_key(cfg: PreprocessConfig, fingerprint: str) -> str:
    """``sha256(config, dataset fingerprint, package version, cache format)[:16]``: the cache
    directory name. A cache of another layout has another key and is made anew."""
    return config_key(cfg, fingerprint, __version__, CACHE_FORMAT)


def _circles(record: MiasRecord) -> list[tuple[float, float, float]]:
    return [(roi.row, roi.col, roi.radius) for roi in record.rois]


class _PreprocessBatch:
    """Ray Data batch function: decode PGM bytes, preprocess, return arrays and stats."""

    def __init__(self, cfg: PreprocessConfig):
        self.cfg = cfg

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        cv2.setNumThreads(1)
        outputs: dict[str, list[Any]] = {name: [] for name in self.cfg.array_names()}
        outputs.update(image_id=[], breast_fraction=[], candidate_dice=[], crop_box=[], shape=[])
        for image_id, pgm, circles in zip(
            batch["image_id"], batch["pgm"], batch["circles"], strict=True
        ):
            image = decode_pgm(bytes(pgm), source=str(image_id))
            arrays, stats = preprocess_image(image, self.cfg, json.loads(circles))
            for name, array in arrays.items():
                outputs[name].append(array)
            outputs["image_id"].append(str(image_id))
            outputs["breast_fraction"].append(stats["breast_fraction"])
            dice_value = stats["candidate_dice"]
            outputs["candidate_dice"].append(np.nan if dice_value is None else dice_value)
            outputs["crop_box"].append(stats["crop_box"])
            outputs["shape"].append(image.shape)
        return {
            name: np.stack(values) if name in self.cfg.array_names() else np.asarray(values)
            for name, values in outputs.items()
        }


def ensure_ray(address: str | None, workers: int | None = None) -> None:
    """Connect to the Ray cluster at ``address``, or start a local Ray with ``workers`` CPUs
    (None: the CPUs Ray detects). Does nothing when this process is already connected.

    Without ``address`` the instance is always a new local one (``address="local"``): a plain
    ``ray.init()`` joins whatever cluster ``$RAY_ADDRESS`` or a leftover
    ``/tmp/ray/ray_current_cluster`` names, and then refuses ``num_cpus``.
    """
    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        cpus = None if workers is None else max(workers, 1)
        ray.init(address="local", num_cpus=cpus, include_dashboard=False, log_to_driver=False)


def user_error(exc: BaseException) -> MammoRayError | None:
    """The MammoRayError a Ray task raised, if one is in ``exc``'s cause chain."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, MammoRayError):
            return current
        current = current.__cause__ or current.__context__
    return None


def _run_ray_data(
    dataset: MiasDataset,
    items: list[dict[str, Any]],
    cfg: PreprocessConfig,
    workers: int,
    batch_size: int,
    progress: Callable[[int], None] | None,
) -> tuple[dict[str, np.ndarray], dict[str, list[float | None]], list[Any], list[Any]]:
    """Preprocess every film on Ray Data: (arrays, stats, crop boxes, film shapes), in the
    order of ``dataset.records``."""

    if progress is not None:
        DataContext.get_current().enable_progress_bars = False
    order = {record.image_id: i for i, record in enumerate(dataset.records)}
    pipeline = pgm_dataset(items, batch_size).map_batches(
        _PreprocessBatch,
        fn_constructor_args=(cfg,),
        batch_size=batch_size,
        batch_format="numpy",
        compute=ActorPoolStrategy(size=workers),
        num_cpus=1,
    )
    names = cfg.array_names()
    arrays = {name: np.empty((len(order), *_array_shape(name)), np.uint8) for name in names}
    breast_fraction: list[float | None] = [None] * len(order)
    dice_values: list[float | None] = [None] * len(order)
    crop_boxes: list[Any] = [None] * len(order)
    film_shapes: list[Any] = [None] * len(order)
    done = 0
    try:
        for batch in pipeline.iter_batches(batch_size=None, batch_format="numpy"):
            for j, image_id in enumerate(batch["image_id"]):
                i = order[str(image_id)]
                for name in names:
                    arrays[name][i] = batch[name][j]
                breast_fraction[i] = float(batch["breast_fraction"][j])
                value = float(batch["candidate_dice"][j])
                dice_values[i] = None if np.isnan(value) else value
                crop_boxes[i] = tuple(int(v) for v in batch["crop_box"][j])
                film_shapes[i] = tuple(int(v) for v in batch["shape"][j])
            done += len(batch["image_id"])
            if progress is not None:
                progress(done)
    except Exception as exc:
        raise_user_error(exc)
        raise
    if done != len(order):
        raise CacheError(f"preprocessing returned {done} of {len(order)} images")
    stats = {"breast_fraction": breast_fraction, "candidate_dice": dice_values}
    return arrays, stats, crop_boxes, film_shapes


def pgm_items(dataset: MiasDataset, ids: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """``{image_id, pgm (raw bytes), circles (JSON)}`` per film, read in one archive pass and
    checked in full (:meth:`MiasDataset.iter_pgm_bytes`), so a bad film fails here, naming its
    file, before Ray starts."""
    return [
        {"image_id": record.image_id, "pgm": pgm, "circles": json.dumps(_circles(record))}
        for record, pgm in dataset.iter_pgm_bytes(ids)
    ]


def pgm_dataset(items: list[dict[str, Any]], batch_size: int) -> ray.data.Dataset:
    """A Ray Dataset of :func:`pgm_items` rows, about ``batch_size`` rows per block."""
    return ray.data.from_items(items, override_num_blocks=max(1, len(items) // batch_size))


def raise_user_error(exc: BaseException) -> None:
    """Re-raise the MammoRayError inside a Ray task failure as itself (one line, exit 2)."""
    error = user_error(exc)
    if error is not None:
        raise type(error)(str(error)) from None


def _array_shape(name: str) -> tuple[int, int]:
    size = int(name.rsplit("_", 1)[1])
    return size, size


def remove_stale_staging(out_dir: Path, now: float | None = None) -> list[Path]:
    """Delete the ``.tmp-*`` staging folders in ``out_dir`` untouched for more than
    :data:`STALE_STAGING_S` (a crash during a cache write leaves them); return what went."""
    now = time.time() if now is None else now
    removed = []
    for staging in sorted(out_dir.glob(".tmp-*")) if out_dir.is_dir() else []:
        try:
            stale = staging.is_dir() and now - staging.stat().st_mtime > STALE_STAGING_S
        except FileNotFoundError:
            continue
        if stale:
            shutil.rmtree(staging, ignore_errors=True)
            removed.append(staging)
    return removed


def _write_cache_atomically(
    out_dir: Path, key: str, arrays: dict[str, np.ndarray], manifest: CacheManifest
) -> Path:
    final = out_dir / key
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".tmp-{key}-", dir=out_dir))
    try:
        for name, array in arrays.items():
            np.save(staging / f"{name}.npy", array)
        data = manifest.to_dict()
        check(CacheManifestFile, data, final / MANIFEST)
        (staging / MANIFEST).write_text(json.dumps(data, indent=1))
        try:
            os.rename(staging, final)
        except OSError:
            if not (final / MANIFEST).exists():
                raise
            shutil.rmtree(staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return final


def run_preprocessing(
    data_path: str | Path,
    cfg: PreprocessConfig,
    out_dir: str | Path,
    *,
    workers: int = 2,
    address: str | None = None,
    batch_size: int = 4,
    image_shape: tuple[int, int] | None = MIAS_IMAGE_SHAPE,
    progress: Callable[[int, int], None] | None = None,
) -> PreprocessResult:
    """Preprocess every image of the MIAS data at ``data_path`` into ``out_dir/<cache_key>``.

    Reuses the cache when one with the same key is complete. Starts a local Ray with
    ``workers`` CPUs unless Ray is already initialised or ``address`` names a cluster.
    ``image_shape`` is the size every film must have (None: any). ``progress(done, total)``
    is called as batches arrive (and replaces Ray Data's own progress output).
    """
    start = time.perf_counter()
    out_dir = Path(out_dir)
    remove_stale_staging(out_dir)
    key = cache_key(cfg, dataset_fingerprint(data_path))
    manifest_path = out_dir / key / MANIFEST
    if manifest_path.exists():
        n_images = len(json.loads(manifest_path.read_text())["records"])
        return PreprocessResult(out_dir / key, key, True, n_images, time.perf_counter() - start)
    dataset = load_mias(data_path, scheme=cfg.label_scheme, image_shape=image_shape)
    if not dataset.records:
        raise CacheError(f"{data_path}: no images to preprocess")
    if workers < 1:
        raise CacheError(f"workers must be >= 1, got {workers}")
    items = pgm_items(dataset)
    ensure_ray(address, workers)
    total = len(dataset.records)
    arrays, stats, crop_boxes, film_shapes = _run_ray_data(
        dataset,
        items,
        cfg,
        workers,
        batch_size,
        None if progress is None else (lambda done: progress(done, total)),
    )
    seconds = time.perf_counter() - start
    manifest = CacheManifest(
        key=key,
        version=__version__,
        fingerprint=dataset.fingerprint,
        data_path=str(Path(data_path).resolve()),
        config=to_dict(cfg),
        records=dataset.records,
        arrays={name: list(array.shape) for name, array in arrays.items()},
        stats=stats,
        seconds=seconds,
        crop_boxes=tuple(crop_boxes),
        film_shapes=tuple(film_shapes),
    )
    cache_dir = _write_cache_atomically(out_dir, key, arrays, manifest)
    return PreprocessResult(cache_dir, key, False, total, seconds)


def load_cache(cache_dir: str | Path) -> tuple[dict[str, np.ndarray], CacheManifest]:
    """Load a complete cache directory: ``({array name: (N, S, S) uint8}, manifest)``.

    Raises :class:`CacheError` naming the directory when the manifest is missing or does not
    match the arrays on disk.
    """
    cache_dir = Path(cache_dir)
    manifest_path = cache_dir / MANIFEST
    if not manifest_path.exists():
        raise CacheError(f"{cache_dir}: not a preprocessing cache (no {MANIFEST})")
    try:
        manifest = CacheManifest.from_dict(read_checked(CacheManifestFile, manifest_path))
    except ConfigError as exc:
        raise CacheError(f"{exc} (not a manifest of this version; delete the folder)") from None
    except ValueError as exc:
        raise CacheError(f"{manifest_path}: unreadable manifest ({exc})") from None
    arrays: dict[str, np.ndarray] = {}
    for name, shape in manifest.arrays.items():
        path = cache_dir / f"{name}.npy"
        try:
            array = np.load(path)
        except (OSError, ValueError) as exc:
            raise CacheError(f"{path}: cannot read cached array ({exc})") from None
        if list(array.shape) != list(shape):
            raise CacheError(f"{path}: shape {list(array.shape)} differs from manifest {shape}")
        arrays[name] = array
    return arrays, manifest
