"""Preprocessing benchmark: project chain vs a scipy/skimage reference, Ray Data scaling, cache.

    python benchmarks/preprocess_bench.py --data ../shared/data/mias/mias-dev.tar.gz

Measures, in one run and on the same images:

(a) the project's enhancement + segmentation on full 1024x1024 films, single process, one thread;
(b) a straightforward reference implementation of the same chain written with scipy.ndimage /
    skimage defaults (kept here, not in the package);
(c) the Ray Data pipeline over the whole dataset with 1 and with all workers (Ray already
    started, so start-up is excluded): end to end, and in steady state from the first batch
    to the last (which also leaves out the archive pass, the actor pool's start and the
    cache write);
(d) a cached re-run of the pipeline (in-process: key computation + cache lookup + load_cache).

Peak memory is the largest summed PSS of this process and all its descendants (Ray's raylet and
workers), sampled every 50 ms. Prints a table and writes JSON (default
``benchmarks/results/preprocess.json``). Targets: (a) >= 20x (b); (c) 2 workers >= 1.6x 1 worker;
(d) >= 50x faster than the cold run; peak memory (PSS) <= 3 GB.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import tempfile
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import psutil
import scipy.ndimage as ndi
import scipy.signal
from skimage import exposure, filters, measure, morphology

from mammo_ray.data.mias import load_mias
from mammo_ray.preprocess.enhance import enhance
from mammo_ray.preprocess.pipeline import PreprocessConfig, load_cache, run_preprocessing
from mammo_ray.preprocess.segment import segment


def reference_chain(image: np.ndarray, cfg: PreprocessConfig) -> np.ndarray:
    """The same chain, same parameters, written the obvious way with scipy.ndimage / skimage.

    Already vectorised (uniform_filter for local statistics, not generic_filter), so the
    comparison measures OpenCV primitives against library defaults, not against Python loops.
    """
    e, s = cfg.enhance, cfg.segment
    x = ndi.median_filter(image, size=e.median_ksize).astype(np.float64)
    mean = ndi.uniform_filter(x, size=e.lcm_window)
    std = np.sqrt(np.maximum(ndi.uniform_filter(x**2, size=e.lcm_window) - mean**2, 0))
    gain = np.clip(e.lcm_k * x.mean() / np.maximum(std, 1e-6), e.lcm_gain_min, e.lcm_gain_max)
    lcm = np.clip(mean + gain * (x - mean), 0, 255) / 255.0
    clahe = exposure.equalize_adapthist(lcm, kernel_size=image.shape[0] // e.clahe_tiles)
    wiener = np.clip(scipy.signal.wiener(clahe, mysize=e.wiener_window), 0, 1)
    enhanced = (wiener * 255).astype(np.uint8)
    breast = image > s.breast_threshold_scale * filters.threshold_otsu(image)
    breast = morphology.opening(breast, morphology.disk(s.breast_open_radius))
    labels = measure.label(breast)
    if labels.max() > 0:
        largest = np.argmax(np.bincount(labels.ravel())[1:]) + 1
        breast = ndi.binary_fill_holes(labels == largest)
    breast = ndi.binary_fill_holes(
        morphology.closing(breast, morphology.disk(s.breast_close_radius))
    )
    inside = enhanced[breast]
    candidate = breast & (enhanced > filters.threshold_otsu(inside)) if inside.size else breast
    candidate = morphology.opening(candidate, morphology.disk(s.candidate_open_radius))
    rows, cols = np.nonzero(breast)
    if rows.size == 0:
        return enhanced
    return np.where(breast, enhanced, 0)[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]


def project_chain(image: np.ndarray, cfg: PreprocessConfig) -> np.ndarray:
    enhanced = enhance(image, cfg.enhance)
    return segment(image, enhanced, cfg.segment).cropped


class PeakMemory:
    """Largest summed PSS of this process and its descendants while the context is open.

    PSS (proportional set size) splits shared pages among the processes mapping them, so Ray's
    shared-memory object store is counted once rather than once per worker as plain RSS would.
    """

    def __init__(self, interval: float = 0.05):
        self.interval, self.peak, self._stop = interval, 0, threading.Event()

    def _sample(self) -> None:
        me = psutil.Process()
        while not self._stop.is_set():
            total = 0
            for proc in [me, *me.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):
                    total += proc.memory_full_info().pss
            self.peak = max(self.peak, total)
            time.sleep(self.interval)

    def __enter__(self) -> PeakMemory:
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def images_per_second(fn, images: list[np.ndarray]) -> float:
    fn(images[0])
    start = time.perf_counter()
    for image in images:
        fn(image)
    return len(images) / (time.perf_counter() - start)


class BatchArrivals:
    """A ``progress(done, total)`` callback that times the batches as they arrive."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self.done: list[int] = []

    def __call__(self, done: int, total: int) -> None:
        self.times.append(time.perf_counter())
        self.done.append(done)

    def steady_images_per_s(self) -> float:
        """Images after the first batch over the time from the first batch to the last:
        the throughput without the run's fixed costs (archive pass, actor start, cache write)."""
        if len(self.times) < 2:
            return float("nan")
        return (self.done[-1] - self.done[0]) / (self.times[-1] - self.times[0])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--data",
        default=os.environ.get("MAMMO_RAY_DATA"),
        required=not os.environ.get("MAMMO_RAY_DATA"),
    )
    parser.add_argument("--n-single", type=int, default=12, help="images for (a) and (b)")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--out", default="benchmarks/results/preprocess.json")
    args = parser.parse_args()

    import ray

    cfg = PreprocessConfig(sizes=(args.size,))
    cv2.setNumThreads(1)
    dataset = load_mias(args.data)
    images = [
        image
        for _, image in dataset.iter_images([r.image_id for r in dataset.records[: args.n_single]])
    ]
    project_ips = images_per_second(lambda im: project_chain(im, cfg), images)
    reference_ips = images_per_second(
        lambda im: reference_chain(im, cfg), images[: max(3, args.n_single // 4)]
    )

    workers_all = os.cpu_count() or 1
    results: dict[str, float] = {}
    with PeakMemory() as memory, tempfile.TemporaryDirectory() as tmp:
        ray.init(num_cpus=workers_all, include_dashboard=False, log_to_driver=False)
        for workers in sorted({1, workers_all}):
            out = Path(tmp) / f"cache-{workers}"
            arrivals = BatchArrivals()
            result = run_preprocessing(args.data, cfg, out, workers=workers, progress=arrivals)
            results[f"ray_{workers}"] = result.n_images / result.seconds
            results[f"ray_{workers}_seconds"] = result.seconds
            results[f"ray_{workers}_steady"] = arrivals.steady_images_per_s()
        start = time.perf_counter()
        cached = run_preprocessing(args.data, cfg, out, workers=workers_all)
        load_cache(cached.cache_dir)
        results["cached_seconds"] = time.perf_counter() - start
        ray.shutdown()
    cold = results[f"ray_{workers_all}_seconds"]
    report = {
        "machine": {"cpus": workers_all, "platform": platform.platform()},
        "n_images": len(dataset.records),
        "single_process": {
            "project_images_per_s": project_ips,
            "reference_images_per_s": reference_ips,
            "speedup": project_ips / reference_ips,
            "target_speedup": 20.0,
        },
        "ray_data": {
            "workers_1_images_per_s": results["ray_1"],
            f"workers_{workers_all}_images_per_s": results[f"ray_{workers_all}"],
            "scaling": results[f"ray_{workers_all}"] / results["ray_1"],
            "steady_workers_1_images_per_s": results["ray_1_steady"],
            f"steady_workers_{workers_all}_images_per_s": results[f"ray_{workers_all}_steady"],
            "steady_scaling": results[f"ray_{workers_all}_steady"] / results["ray_1_steady"],
            "target_scaling": 1.6,
        },
        "cache": {
            "cold_seconds": cold,
            "cached_seconds": results["cached_seconds"],
            "speedup": cold / results["cached_seconds"],
            "target_speedup": 50.0,
        },
        "peak_pss_gb": memory.peak / 1e9,
        "target_peak_gb": 3.0,
    }
    rows = [
        ("(a) project enhance+segment, 1 process", f"{project_ips:.2f} img/s", ""),
        (
            "(b) scipy/skimage reference, 1 process",
            f"{reference_ips:.2f} img/s",
            f"(a)/(b) = {project_ips / reference_ips:.1f}x (target >= 20x)",
        ),
        ("(c) Ray Data, 1 worker", f"{results['ray_1']:.2f} img/s", ""),
        (
            f"(c) Ray Data, {workers_all} workers",
            f"{results[f'ray_{workers_all}']:.2f} img/s",
            f"scaling {report['ray_data']['scaling']:.2f}x (target >= 1.6x)",
        ),
        (
            "(c) steady state, first to last batch",
            f"{results[f'ray_{workers_all}_steady']:.2f} img/s",
            f"1 worker {results['ray_1_steady']:.2f} img/s: scaling "
            f"{report['ray_data']['steady_scaling']:.2f}x",
        ),
        (
            "(d) cached re-run",
            f"{results['cached_seconds'] * 1000:.0f} ms",
            f"{report['cache']['speedup']:.0f}x faster than cold {cold:.1f} s (target >= 50x)",
        ),
        ("peak memory (PSS), whole run", f"{memory.peak / 1e9:.2f} GB", "(target <= 3 GB)"),
    ]
    width = max(len(r[0]) for r in rows)
    for name, value, note in rows:
        print(f"{name:<{width}}  {value:>12}  {note}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"written: {out}")


if __name__ == "__main__":
    main()
