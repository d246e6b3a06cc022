"""Images per second of one (backbone, input size) on this machine, measured in a few steps of
the project's own training step and prediction, and cached per machine.

:func:`measure_throughput` builds the :class:`~mammo_ray.learn.trial.Fitter` a trial builds
(random weights, channels_last, the autocast of :func:`~mammo_ray.learn.inference.
compute_choice`) and times one pass of ``steps`` batches of random uint8 images after an
untimed pass of the same length (oneDNN builds its kernels on the first); prediction is timed
the same way with :func:`~mammo_ray.learn.inference.predict`. :class:`ThroughputCache` keeps the
figures in a JSON file keyed by :func:`machine_key` (CPU model and flags, threads, device,
torch), so a search measures each pair once per machine. The search planner
(:mod:`mammo_ray.search.plan`) turns them into trial times.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import torch

from mammo_ray.config import from_dict
from mammo_ray.errors import ConfigError
from mammo_ray.files import write_json_atomic
from mammo_ray.learn.config import TrainConfig
from mammo_ray.learn.hardware import cpu_info
from mammo_ray.learn.inference import compute_choice, predict
from mammo_ray.learn.trial import Fitter

__all__ = ["Throughput", "measure_throughput", "machine_key", "ThroughputCache"]

_PREDICT_BATCH = 64


@dataclasses.dataclass(frozen=True)
class Throughput:
    """Training and prediction images/s of ``backbone`` on ``size`` px inputs, batches of
    ``batch_size`` in training."""

    backbone: str
    size: int
    batch_size: int
    train_images_per_s: float
    predict_images_per_s: float


def _timed(work: Callable[[], object], images: int) -> float:
    """Images/s of the second of two runs of ``work`` over ``images`` images."""
    work()
    start = time.perf_counter()
    work()
    return images / (time.perf_counter() - start)


def measure_throughput(
    backbone: str,
    size: int,
    *,
    batch_size: int = 8,
    steps: int = 2,
    device: torch.device | None = None,
    precision: str = "auto",
) -> Throughput:
    """The :class:`Throughput` of ``backbone`` at ``size`` px: ``steps`` training steps of
    ``batch_size`` images (no augmentation), and prediction of ``2 x steps x batch_size``
    images in batches of 64, each timed after one untimed run of the same work."""
    device = device or torch.device("cpu")
    cfg = from_dict(
        TrainConfig,
        {
            "model": {"backbone": backbone, "pretrained": "none"},
            "augment": {"mode": "none"},
            "input_size": size,
            "batch_size": batch_size,
            "preprocess": {"sizes": [size]},
            "precision": precision,
        },
        where=f"throughput of {backbone} at {size} px",
    )
    n = batch_size * steps
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (2 * n, size, size), dtype=torch.uint8, generator=generator)
    labels = torch.arange(n) % 3
    amp_dtype = compute_choice(precision, device).dtype
    fitter = Fitter.build(cfg, labels.numpy(), device, amp_dtype)
    train_images, train_labels = images[:n].to(device), labels.to(device)
    train = _timed(lambda: fitter.train_epoch(train_images, train_labels), n)
    batch = min(_PREDICT_BATCH, 2 * n)
    inferred = _timed(
        lambda: predict(fitter.model, images, batch_size=batch, device=device, amp_dtype=amp_dtype),
        2 * n,
    )
    return Throughput(backbone, size, batch_size, train, inferred)


def machine_key(device: torch.device, threads: int) -> str:
    """What a throughput depends on besides the model: CPU model and speed flags (or the GPU's
    name), intra-op threads and torch's version, as one string."""
    cpu = cpu_info()
    hardware = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"{cpu['model']} [{' '.join(cpu['flags'])}]"  # type: ignore[arg-type]
    )
    return f"{hardware}, {threads} threads, torch {torch.__version__}"


class ThroughputCache:
    """:class:`Throughput` figures in the JSON file ``path``, ``{machine key: {"<backbone>@
    <size>/b<batch>": [train, predict]}}``; :meth:`get` measures what is missing and saves."""

    def __init__(self, path: str | Path, device: torch.device, threads: int):
        self.path = Path(path)
        self.device = device
        self.threads = threads
        self.key = machine_key(device, threads)

    def _load(self) -> dict[str, dict[str, list[float]]]:
        if not self.path.exists():
            return {}
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
            return data
        except (OSError, ValueError) as exc:
            raise ConfigError(
                f"{self.path}: not a throughput cache ({type(exc).__name__}: {exc}); delete it "
                "and it is measured again"
            ) from None

    def cached(self, batch_size: int) -> list[tuple[str, int]]:
        """The (backbone, size) pairs this machine has figures for at ``batch_size``."""
        pairs = []
        for name in self._load().get(self.key, {}):
            pair, _, batch = name.partition("/b")
            backbone, _, size = pair.rpartition("@")
            if batch == str(batch_size) and size.isdigit():
                pairs.append((backbone, int(size)))
        return pairs

    def get(
        self,
        pairs: Iterable[tuple[str, int]],
        batch_size: int,
        progress: Callable[[str], None] | None = None,
    ) -> dict[tuple[str, int], Throughput]:
        """The throughput of each (backbone, size) of ``pairs`` at ``batch_size``: cached, or
        measured with ``threads`` intra-op threads (``progress`` is told before each)."""
        data = self._load()
        figures = data.setdefault(self.key, {})
        found: dict[tuple[str, int], Throughput] = {}
        threads = torch.get_num_threads()
        try:
            for backbone, size in sorted(set(pairs)):
                name = f"{backbone}@{size}/b{batch_size}"
                if name not in figures:
                    if progress is not None:
                        progress(f"measuring {backbone} at {size} px")
                    torch.set_num_threads(self.threads)
                    measured = measure_throughput(
                        backbone, size, batch_size=batch_size, device=self.device
                    )
                    figures[name] = [measured.train_images_per_s, measured.predict_images_per_s]
                    write_json_atomic(self.path, data)
                try:
                    train, inferred = (float(v) for v in figures[name])
                except (TypeError, ValueError):
                    raise ConfigError(
                        f"{self.path}: {name} is not [train, predict] images/s; delete the "
                        "file and it is measured again"
                    ) from None
                found[backbone, size] = Throughput(backbone, size, batch_size, train, inferred)
        finally:
            torch.set_num_threads(threads)
        return found
