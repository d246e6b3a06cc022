"""Tests of the trial function and its pieces, on tiny in-memory data (no Ray, no MLflow)."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest
import timm
import torch

from mammo_ray.config import from_dict, to_dict
from mammo_ray.data.mias_info import LABELS, MiasRecord
from mammo_ray.errors import CacheError, ConfigError, MammoRayError
from mammo_ray.learn.checkpoint import load_checkpoint, model_from_checkpoint
from mammo_ray.learn.config import OptimConfig, TrainConfig
from mammo_ray.learn.inference import autocast_dtype, cpu_threads, predict
from mammo_ray.learn.models import ModelConfig, build_model
from mammo_ray.learn.trial import (
    TrainingDiverged,
    _class_weights,
    improves,
    steps_per_epoch,
    train_trial,
    trial_arrays,
    validation_metrics,
)
from mammo_ray.preprocess.pipeline import CacheManifest, PreprocessConfig
from mammo_ray.preprocess.prepared import PreparedData

SIZE = 32
N_FILMS = 40


def _label(number: int) -> str:
    """Even films are normal; odd films of odd patients are masses, of even patients calcs."""
    if number % 2 == 0:
        return "normal"
    return "mass" if number % 4 == 1 else "calc"


def tiny_data(n_films: int = N_FILMS, size: int = SIZE) -> PreparedData:
    """``n_films`` records of ``n_films // 2`` patients; images carry a class-dependent blob."""
    codes = {"normal": ("NORM", None), "mass": ("CIRC", "B"), "calc": ("CALC", "M")}
    records = []
    images = np.random.default_rng(0).integers(0, 60, (n_films, size, size), dtype=np.uint8)
    for i in range(n_films):
        label = _label(i + 1)
        code, severity = codes[label]
        records.append(MiasRecord(f"mdb{i + 1:03d}", (i + 2) // 2, label, "G", severity, (code,)))
        if label != "normal":
            start = 4 if label == "mass" else 20
            images[i, start : start + 8, start : start + 8] = 220
    arrays = {f"segmented_{size}": images, f"enhanced_{size}": 255 - images}
    manifest = CacheManifest(
        key="tiny",
        version="test",
        fingerprint="tiny",
        data_path="memory",
        config=to_dict(PreprocessConfig(sizes=(size,))),
        records=tuple(records),
        arrays={name: list(a.shape) for name, a in arrays.items()},
        stats={"breast_fraction": [None] * n_films, "candidate_dice": [None] * n_films},
        seconds=0.0,
        crop_boxes=((0, size, 0, size),) * n_films,
        film_shapes=((size, size),) * n_films,
    )
    return PreparedData(arrays, manifest)


def tiny_config(**changes) -> dict:
    """A 32 px, 1-epoch, batch-4 MobileNet-V2 config without augmentation; ``a__b=v`` sets a.b.

    MobileNet-V2 (2.2M parameters) keeps the many short trainings here fast; the tests that
    need ResNet-18 itself set ``model__backbone``.
    """
    config = {
        "model": {"backbone": "mobilenetv2_100", "pretrained": "none"},
        "augment": {"mode": "none"},
        "split": {"method": "paper"},
        "preprocess": {"sizes": [SIZE]},
        "input_size": SIZE,
        "epochs": 1,
        "batch_size": 4,
        "seed": 0,
    }
    for key, value in changes.items():
        *sections, name = key.split("__")
        node = config
        for section in sections:
            node = node.setdefault(section, {})
        node[name] = value
    return config


class Recorder:
    """A ``report`` that keeps every epoch's metrics and the weights of its checkpoint."""

    def __init__(self) -> None:
        self.metrics: list[dict] = []
        self.paths: list[str] = []
        self.states: list[dict[str, torch.Tensor]] = []

    def __call__(self, metrics: dict, checkpoint: str | None) -> None:
        assert checkpoint is not None and Path(checkpoint).is_file()
        self.metrics.append(metrics)
        self.paths.append(checkpoint)
        self.states.append(load_checkpoint(checkpoint).state_dict)


@pytest.fixture(scope="module")
def data() -> PreparedData:
    return tiny_data()


# --- configuration -------------------------------------------------------------------------


def test_defaults_are_the_papers_table_1():
    cfg = TrainConfig()
    assert (cfg.model.backbone, cfg.optim.name, cfg.optim.lr, cfg.optim.schedule) == (
        "resnet18",
        "adam",
        0.001,
        "constant",
    )
    assert (cfg.epochs, cfg.batch_size, cfg.input_size, cfg.augment.mode) == (15, 16, 224, "x5")
    assert cfg.input_array == "segmented_224"
    assert from_dict(TrainConfig, to_dict(cfg)) == cfg


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"input_size": 64}, "input_size 64 is not among preprocess.sizes"),
        ({"epochs": 0}, "epochs must be >= 1"),
        ({"batch_size": 1}, "batch_size must be >= 2"),
        ({"optim__lr": 0.0}, r"lr must lie in \(0, 1\)"),
        ({"optim__lr": 1.5}, r"lr must lie in \(0, 1\)"),
        ({"optim__weight_decay": -0.1}, "weight_decay must be >= 0"),
        ({"optim__momentum": 1.0}, r"momentum must lie in \[0, 1\)"),
        ({"optim__name": "rmsprop"}, "'rmsprop' is not one of"),
        ({"selection_metric": "auc"}, "'auc' is not one of"),
        ({"precision": "fp16"}, "'fp16' is not one of"),
        ({"augment_before_split": True, "split__method": "patient"}, "augment_before_split"),
        ({"augment_before_split": True}, "augment_before_split needs"),
        ({"epochs": "3"}, "expected an integer"),
        ({"optimiser": {"lr": 0.1}}, "unknown key 'optimiser'"),
    ],
)
def test_bad_config_is_a_config_error_naming_the_value(changes, message):
    with pytest.raises(ConfigError, match=message):
        from_dict(TrainConfig, tiny_config(**changes))


def test_optim_config_accepts_its_ranges():
    assert OptimConfig(name="sgd", lr=0.5, momentum=0.0, weight_decay=1e-4).lr == 0.5


def test_prepared_data_rejects_arrays_that_do_not_match_the_records(data):
    with pytest.raises(ValueError, match=r"must be \(40, S, S\) uint8"):
        PreparedData({"segmented_32": np.zeros((39, 32, 32), np.uint8)}, data.manifest)
    with pytest.raises(ValueError, match="float32"):
        PreparedData({"segmented_32": np.zeros((40, 32, 32), np.float32)}, data.manifest)


def test_prepared_data_labels_and_patients(data):
    assert data.labels.tolist()[:8] == [1, 0, 2, 0, 1, 0, 2, 0]
    assert data.patient_ids.tolist()[:4] == [1, 1, 2, 2]
    assert data.image_ids[0] == "mdb001"


# --- arrays and split ----------------------------------------------------------------------


def test_trial_arrays_pick_the_configured_input(data):
    cfg = from_dict(TrainConfig, tiny_config())
    assert trial_arrays(cfg, data).images is data.arrays["segmented_32"]
    cfg = from_dict(TrainConfig, tiny_config(segmentation=False))
    assert trial_arrays(cfg, data).images is data.arrays["enhanced_32"]


def test_trial_arrays_patient_split_keeps_patients_together(data):
    arrays = trial_arrays(from_dict(TrainConfig, tiny_config(split__method="patient")), data)
    split = arrays.split
    parts = [set(arrays.patient_ids[list(part)].tolist()) for part in (split.train, split.test)]
    assert not split.leaky and not parts[0] & parts[1]
    assert arrays.source_index.tolist() == list(range(N_FILMS))


def test_trial_arrays_missing_input_is_a_cache_error(data):
    cfg = from_dict(TrainConfig, tiny_config(input_size=64, preprocess__sizes=[64]))
    with pytest.raises(CacheError, match="no array 'segmented_64'.*segmented_32"):
        trial_arrays(cfg, data)


def test_impossible_split_is_a_config_error():
    cfg = from_dict(TrainConfig, tiny_config(split__method="patient"))
    with pytest.raises(ConfigError, match="split \\(patient\\).*patient"):
        trial_arrays(cfg, tiny_data(n_films=12))


def test_augment_before_split_copies_every_film_first(data):
    cfg = from_dict(TrainConfig, tiny_config(augment__mode="x5", augment_before_split=True))
    arrays = trial_arrays(cfg, data)
    n = N_FILMS * 6
    assert arrays.images.shape == (n, SIZE, SIZE) and arrays.labels.shape == (n,)
    assert arrays.source_index.tolist() == list(range(N_FILMS)) * 6
    assert arrays.image_ids[N_FILMS] == "mdb001~copy1"
    assert arrays.image_ids[-1] == "mdb040~copy5"
    assert (arrays.labels == data.labels[arrays.source_index]).all()
    train = set(arrays.source_index[list(arrays.split.train)].tolist())
    assert any(arrays.source_index[i] in train for i in arrays.split.test)


# --- small pieces ---------------------------------------------------------------------------


def test_autocast_dtype():
    cpu = torch.device("cpu")
    assert autocast_dtype("fp32", cpu) is None
    assert autocast_dtype("bf16", cpu) is torch.bfloat16
    native = torch.ops.mkldnn._is_mkldnn_bf16_supported()
    assert autocast_dtype("auto", cpu) is (torch.bfloat16 if native else None)


def test_cpu_threads_follow_omp_num_threads(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert cpu_threads() == 3
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert cpu_threads() == len(os.sched_getaffinity(0))
    monkeypatch.setenv("OMP_NUM_THREADS", "zero")
    assert cpu_threads() == len(os.sched_getaffinity(0))


def test_validation_metrics_known_answer():
    labels = np.array([0, 0, 0, 1, 1, 2])
    proba = np.array(
        [
            [0.8, 0.1, 0.1],
            [0.6, 0.3, 0.1],
            [0.2, 0.7, 0.1],
            [0.1, 0.8, 0.1],
            [0.5, 0.4, 0.1],
            [0.1, 0.1, 0.8],
        ]
    )
    metrics = validation_metrics(proba, labels)
    # predictions 0 0 1 1 0 2: recalls 2/3, 1/2, 1; precisions 2/3, 1/2, 1.
    assert metrics["accuracy"] == pytest.approx(4 / 6)
    assert metrics["balanced_accuracy"] == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)
    assert metrics["macro_recall"] == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)
    assert metrics["macro_precision"] == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)
    assert metrics["macro_f1"] == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)
    expected_loss = -np.mean(np.log([0.8, 0.6, 0.2, 0.8, 0.4, 0.8]))
    assert metrics["loss"] == pytest.approx(expected_loss)


def test_validation_macro_precision_and_recall_differ_when_they_should():
    labels = np.array([0, 0, 0, 0, 1, 2])
    proba = np.eye(3)[[0, 0, 0, 0, 0, 2]]
    metrics = validation_metrics(proba, labels)
    assert metrics["macro_recall"] == pytest.approx((1 + 0 + 1) / 3)
    assert metrics["macro_precision"] == pytest.approx((4 / 5 + 0 + 1) / 3)


def test_improves():
    assert improves("loss", 0.5, None) and improves("accuracy", 0.0, None)
    assert improves("loss", 0.4, 0.5) and not improves("loss", 0.5, 0.5)
    assert improves("balanced_accuracy", 0.6, 0.5) and not improves("macro_f1", 0.5, 0.5)


def test_class_weights_are_inverse_frequencies():
    weights = _class_weights(np.array([0, 0, 0, 0, 0, 0, 1, 1, 2]))
    assert weights.tolist() == pytest.approx([9 / 18, 9 / 6, 9 / 3])
    assert _class_weights(np.array([0, 0, 1, 1])).tolist() == pytest.approx([2 / 3, 2 / 3, 0.0])


@pytest.mark.parametrize(
    ("n", "batch", "steps"), [(32, 16, 2), (33, 16, 2), (34, 16, 3), (1, 4, 1)]
)
def test_steps_per_epoch_drop_a_final_batch_of_one(n, batch, steps):
    assert steps_per_epoch(n, batch) == steps


def test_predict_gives_probabilities(data):
    torch.manual_seed(0)
    model = build_model(ModelConfig(pretrained="none"), num_classes=len(LABELS))
    images = torch.from_numpy(data.arrays["segmented_32"][:5])
    proba = predict(model, images, batch_size=2)
    assert proba.shape == (5, 3) and proba.dtype == np.float32
    assert np.allclose(proba.sum(1), 1.0, atol=1e-5)
    assert predict(model, images[:0]).shape == (0, 3)


# --- train_trial -----------------------------------------------------------------------------


def test_train_trial_reports_every_epoch_with_a_checkpoint(data):
    report = Recorder()
    result = train_trial(tiny_config(epochs=2, selection_metric="loss"), data, report)
    assert [m["epoch"] for m in report.metrics] == [1, 2]
    expected = {
        "epoch",
        "train_loss",
        "train_accuracy",
        "val_loss",
        "val_accuracy",
        "val_balanced_accuracy",
        "val_macro_precision",
        "val_macro_recall",
        "val_macro_f1",
        "images_per_s",
        "epoch_seconds",
    }
    for metrics in report.metrics:
        assert set(metrics) == expected
        assert all(math.isfinite(v) for v in metrics.values())
        assert 0 <= metrics["val_accuracy"] <= 1 and metrics["images_per_s"] > 0
    assert result["history"] == report.metrics
    assert result["best"] == min(report.metrics, key=lambda m: m["val_loss"])
    assert result["split_method"] == "paper" and result["leaky"] is True
    assert not Path(report.paths[0]).exists(), "the checkpoint folder is removed at the end"


def test_checkpoint_holds_the_config_and_rebuilds_the_model(data, tmp_path):
    kept = {}

    def report(metrics, checkpoint):
        kept["ckpt"] = load_checkpoint(checkpoint)

    config = tiny_config(model__backbone="resnet18")
    train_trial(config, data, report)
    ckpt = kept["ckpt"]
    assert ckpt.labels == list(LABELS) and ckpt.preprocess_key == "tiny"
    assert from_dict(TrainConfig, ckpt.config) == from_dict(TrainConfig, config)
    assert ckpt.metrics["epoch"] == 1
    model = model_from_checkpoint(ckpt)
    assert model(torch.zeros(2, 1, SIZE, SIZE)).shape == (2, 3)


def test_same_seed_gives_equal_metrics_and_weights(data):
    runs = [Recorder() for _ in range(3)]
    train_trial(tiny_config(augment__mode="online"), data, runs[0])
    train_trial(tiny_config(augment__mode="online"), data, runs[1])
    train_trial(tiny_config(augment__mode="online", seed=1), data, runs[2])

    def stable(metrics):
        return {k: v for k, v in metrics.items() if k not in ("images_per_s", "epoch_seconds")}

    assert stable(runs[0].metrics[0]) == stable(runs[1].metrics[0])
    first, second, other = (run.states[0] for run in runs)
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert not all(torch.equal(first[k], other[k]) for k in first)


def test_class_weighting_changes_the_loss(data):
    plain, weighted = Recorder(), Recorder()
    train_trial(tiny_config(), data, plain)
    train_trial(tiny_config(class_weighting=True), data, weighted)
    assert plain.metrics[0]["train_loss"] != weighted.metrics[0]["train_loss"]


@pytest.mark.parametrize(
    "changes",
    [
        {"augment__mode": "x5", "augment__copies": 1},
        {"optim__name": "sgd", "optim__schedule": "cosine", "epochs": 2},
        {"optim__name": "adamw", "optim__weight_decay": 0.01, "precision": "fp32"},
    ],
)
def test_train_trial_options_run(data, changes):
    report = Recorder()
    result = train_trial(tiny_config(**changes), data, report)
    assert len(result["history"]) == tiny_config(**changes)["epochs"]


def test_x5_trains_on_six_times_the_images():
    data = tiny_data(n_films=20)
    n_train = len(trial_arrays(from_dict(TrainConfig, tiny_config()), data).split.train)
    batch = n_train - 1
    plain, x5 = Recorder(), Recorder()
    train_trial(tiny_config(batch_size=batch), data, plain)
    train_trial(tiny_config(batch_size=batch, augment__mode="x5"), data, x5)

    def seen(metrics):
        return round(metrics["images_per_s"] * metrics["epoch_seconds"])

    assert seen(plain.metrics[0]) == batch, "the final batch of one image is left out"
    assert seen(x5.metrics[0]) == 6 * n_train


def test_nan_loss_raises_training_diverged(data, tmp_path):
    state = timm.create_model("resnet18", in_chans=1, num_classes=3).state_dict()
    state["conv1.weight"][0, 0, 0, 0] = float("nan")
    path = tmp_path / "poisoned.pth"
    torch.save(state, path)
    report = Recorder()
    with pytest.raises(TrainingDiverged, match="epoch 1 training loss is nan"):
        config = tiny_config(model__backbone="resnet18", model__pretrained=f"file:{path}")
        train_trial(config, data, report)
    assert report.metrics == []
    assert issubclass(TrainingDiverged, MammoRayError)


def test_bad_trial_config_is_a_config_error(data):
    with pytest.raises(ConfigError, match="trial config.*unknown key 'epoch'"):
        train_trial({**tiny_config(), "epoch": 3}, data, Recorder())
