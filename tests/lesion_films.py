"""Synthetic full-resolution films with known lesions, as a preprocessing cache in memory.

Each film is 1024 px a side: a breast (a half disc against the left or right edge, the right
breast of a patient mirrored from the left) of smooth noisy tissue. A ``mass`` film has a bright
disc of radius 40 px, a ``calc`` film a cluster of eight 2 x 2 px specks within 40 px; their
MIAS circles are in the records. Films ``2k - 1`` and ``2k`` are patient ``k``.
"""

from __future__ import annotations

import cv2
import numpy as np

from mammo_ray.config import to_dict
from mammo_ray.data.mias_info import MiasRecord, RoiCircle
from mammo_ray.preprocess.pipeline import (
    CacheManifest,
    PreprocessConfig,
    mask_square,
    resize_square,
)
from mammo_ray.preprocess.prepared import PreparedData

SIDE = 1024
CODES = {"normal": ("NORM", None), "mass": ("CIRC", "B"), "calc": ("CALC", "M")}


def breast_mask(right: bool) -> np.ndarray:
    """A half disc of radius 420 px centred on the left edge (mirrored for a right breast)."""
    rows, cols = np.mgrid[:SIDE, :SIDE]
    mask = (rows - SIDE / 2) ** 2 + cols**2 <= 420**2
    return mask[:, ::-1] if right else mask


def film(rng: np.random.Generator, label: str, centre: tuple[int, int], right: bool) -> np.ndarray:
    """A uint8 film of ``label`` with its lesion (if any) at ``centre`` (row, col)."""
    tissue = cv2.GaussianBlur(rng.normal(0, 1, (SIDE, SIDE)).astype(np.float32), (0, 0), 3)
    image = 110 + 8 * tissue / tissue.std()
    row, col = centre
    if label == "mass":
        rows, cols = np.mgrid[:SIDE, :SIDE]
        image += 80 * np.exp(-((rows - row) ** 2 + (cols - col) ** 2) / (2 * 25.0**2))
    elif label == "calc":
        for dr, dc in rng.integers(-30, 31, (8, 2)):
            image[row + dr : row + dr + 2, col + dc : col + dc + 2] = 250
    mask = breast_mask(right)
    return np.where(mask, np.clip(image, 0, 255), 0).astype(np.uint8)


def lesion_data(
    patient_labels: list[str], seed: int = 0, sizes: tuple[int, ...] = (SIDE,)
) -> PreparedData:
    """Two films per patient: the first (right breast) carries the patient's lesion label, the
    second (left) is normal. Lesions sit 200 px into the breast at a random height. The
    arrays are cached at ``sizes`` as the preprocessing pipeline would."""
    rng = np.random.default_rng(seed)
    images, breasts, records = [], [], []
    for patient, label in enumerate(patient_labels, start=1):
        for number, right in ((2 * patient - 1, True), (2 * patient, False)):
            film_label = label if right else "normal"
            row = int(rng.integers(350, 670))
            col = SIDE - 200 if right else 200
            images.append(film(rng, film_label, (row, col), right))
            breasts.append(breast_mask(right).astype(np.uint8) * 255)
            code, severity = CODES[film_label]
            rois = () if film_label == "normal" else (RoiCircle(float(row), float(col), 40.0),)
            records.append(
                MiasRecord(f"mdb{number:03d}", patient, film_label, "G", severity, (code,), rois)
            )
    n = len(records)
    arrays = {}
    for size in sizes:
        arrays[f"enhanced_{size}"] = np.stack([resize_square(i, size) for i in images])
        arrays[f"segmented_{size}"] = arrays[f"enhanced_{size}"]
        arrays[f"breast_{size}"] = np.stack([mask_square(b > 0, size) for b in breasts])
    manifest = CacheManifest(
        key="lesions",
        version="test",
        fingerprint="lesions",
        data_path="memory",
        config=to_dict(PreprocessConfig(sizes=sizes)),
        records=tuple(records),
        arrays={name: list(a.shape) for name, a in arrays.items()},
        stats={"breast_fraction": [None] * n, "candidate_dice": [None] * n},
        seconds=0.0,
        crop_boxes=((0, SIDE, 0, SIDE),) * n,
        film_shapes=((SIDE, SIDE),) * n,
    )
    return PreparedData(arrays, manifest)
