"""Tests of mammo_ray.explain: superpixels, circle mapping, lesion overlap, LIME end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from lime.lime_image import ImageExplanation
from torch import nn

from mammo_ray.config import to_dict
from mammo_ray.data.mias import load_mias
from mammo_ray.data.mias_info import LABELS, MiasRecord, RoiCircle
from mammo_ray.errors import ConfigError
from mammo_ray.explain.circles import input_circles, positive_weight_in_circles
from mammo_ray.explain.command import format_table, main
from mammo_ray.explain.figure import explanation_figure
from mammo_ray.explain.lime_images import explain_images, select_images
from mammo_ray.explain.superpixels import slic_superpixels
from mammo_ray.learn.checkpoint import save_checkpoint
from mammo_ray.learn.models import ModelConfig, build_model
from mammo_ray.preprocess.frames import map_circles
from mammo_ray.preprocess.pipeline import (
    CacheManifest,
    PreprocessConfig,
    load_cache,
    preprocess_image,
    resize_square,
)
from mammo_ray.preprocess.prepared import PreparedData
from mammo_ray.preprocess.quality import circles_mask
from mammo_ray.preprocess.segment import SegmentConfig
from tests.data.mias_factory import mias_files, write_mias

SIZE = 48
DISC = (14.0, 30.0, 8.0)
ELSEWHERE = (34.0, 12.0, 8.0)
MASS = LABELS.index("mass")


class DiscBrightness(nn.Module):
    """Known answer: the "mass" logit is ``gain`` x the mean normalised brightness in a disc."""

    def __init__(self, size: int, disc: tuple[float, float, float], gain: float = 4.0):
        super().__init__()
        mask = torch.from_numpy(circles_mask((size, size), [disc]).astype(np.float32))
        self.register_buffer("disc", mask / mask.sum())
        self.gain = nn.Parameter(torch.tensor(gain))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mass = self.gain * (x[:, 0].float() * self.disc).sum(dim=(1, 2))
        zeros = torch.zeros_like(mass)
        return torch.stack([zeros, mass, zeros], dim=1)


def _film(seed: int, disc: tuple[float, float, float] = DISC) -> np.ndarray:
    """A 48 x 48 "segmented" input: black padding left, textured tissue, a bright disc."""
    rng = np.random.default_rng(seed)
    image = rng.integers(50, 80, size=(SIZE, SIZE)).astype(np.uint8)
    image[:, :6] = 0
    image[circles_mask((SIZE, SIZE), [disc])] = 210
    return image


def _record(image_id: str, label: str = "mass") -> MiasRecord:
    rois = (RoiCircle(500.0, 500.0, 40.0),) if label != "normal" else ()
    classes = {"mass": ("CIRC",), "normal": ("NORM",), "calc": ("CALC",)}[label]
    return MiasRecord(
        image_id=image_id,
        patient_id=(int(image_id[3:]) + 1) // 2,
        label=label,
        tissue="G",
        severity=None if label == "normal" else "B",
        classes=classes,
        rois=rois,
    )


def _explain(tmp_path: Path, circles, *, seed: int = 0, out: str = "out") -> dict:
    torch.manual_seed(0)
    images = np.stack([_film(1), _film(2)])
    records = [_record("mdb001"), _record("mdb002", "normal")]
    return explain_images(
        DiscBrightness(SIZE, DISC),
        images,
        records,
        tmp_path / out,
        num_samples=100,
        seed=seed,
        circles_in_input_coords=circles,
        n_segments=20,
        batch_size=25,
        precision="fp32",
    )


# --- superpixels -------------------------------------------------------------------------


def test_superpixels_are_contiguous_labels_with_the_black_padding_as_one():
    image = _film(3)
    segments = slic_superpixels(image, n_segments=20)
    assert segments.shape == image.shape and segments.dtype == np.int64
    labels = np.unique(segments)
    np.testing.assert_array_equal(labels, np.arange(len(labels)))
    assert 10 <= len(labels) <= 40
    assert len(np.unique(segments[:, :6])) == 1
    assert not np.isin(segments[:, 6:], segments[0, 0]).any()
    np.testing.assert_array_equal(segments, slic_superpixels(image, n_segments=20))


def test_superpixels_of_an_all_black_image_use_no_mask():
    segments = slic_superpixels(np.zeros((32, 32), np.uint8), n_segments=4)
    assert segments.min() == 0 and segments.shape == (32, 32)


@pytest.mark.parametrize(
    ("gray", "kwargs", "message"),
    [
        (np.zeros((4, 4), np.float32), {}, "uint8"),
        (np.zeros((4, 4, 3), np.uint8), {}, "2-D"),
        (np.zeros((8, 8), np.uint8), {"n_segments": 0}, "n_segments"),
        (np.zeros((8, 8), np.uint8), {"compactness": 0.0}, "compactness"),
        (np.zeros((8, 8), np.uint8), {"sigma": -1.0}, "sigma"),
    ],
)
def test_superpixels_reject_bad_input(gray, kwargs, message):
    with pytest.raises(ValueError, match=message):
        slic_superpixels(gray, **kwargs)


# --- circle mapping ----------------------------------------------------------------------


def test_whole_film_circles_scale_about_pixel_centres():
    ((row, col, radius),) = map_circles([(511.5, 255.5, 96.0)], 32)
    assert (row, col, radius) == pytest.approx((15.5, 7.5, 3.0))
    ((row, col, _),) = map_circles([(0.0, 1023.0, 1.0)], 32)
    assert (row, col) == pytest.approx((-31 / 64, 31 + 31 / 64))


def test_segmented_circles_follow_crop_pad_and_resize_to_the_lesion():
    """A disc in a film, cropped to a bbox and resize_square'd, lands on the mapped circle."""
    film_shape, bbox, disc, size = (400, 400), (50, 350, 120, 300), (210.0, 250.0, 30.0), 60
    film = np.zeros(film_shape, np.uint8)
    film[circles_mask(film_shape, [disc])] = 255
    row0, row1, col0, col1 = bbox
    model_input = resize_square(film[row0:row1, col0:col1], size).astype(np.float64)
    ((row, col, radius),) = map_circles([disc], size, bbox=bbox, shape=film_shape)
    rows, cols = np.mgrid[0:size, 0:size]
    weight = model_input / model_input.sum()
    assert (rows * weight).sum() == pytest.approx(row, abs=0.1)
    assert (cols * weight).sum() == pytest.approx(col, abs=0.1)
    assert np.sqrt(model_input.sum() / 255 / np.pi) == pytest.approx(radius, abs=0.2)
    assert (row, col, radius) == pytest.approx((31.6, 37.6, 6.0))


@pytest.mark.parametrize("segmentation", [True, False])
def test_input_circles_land_on_the_lesion_of_the_model_input(tmp_path, segmentation):
    from mammo_ray.learn.config import TrainConfig

    shape = (128, 128)
    dataset = load_mias(write_mias(tmp_path / "mias", mias_files(shape=shape)), image_shape=shape)
    cfg = TrainConfig(
        input_size=32,
        # The defaults (half the Otsu threshold, 10 px morphology) suit 1024 px films and take
        # this whole synthetic film for breast; plain Otsu and 2 px find its half-ellipse.
        preprocess=PreprocessConfig(
            sizes=(32,),
            segment=SegmentConfig(
                breast_threshold_scale=1.0, breast_open_radius=2, breast_close_radius=2
            ),
        ),
        model=ModelConfig(pretrained="none"),
        segmentation=segmentation,
    )
    records = [r for r in dataset.records if r.image_id in ("mdb001", "mdb002")]
    films = [dataset.read_image(r.image_id) for r in records]
    outputs = [preprocess_image(film, cfg.preprocess) for film in films]
    manifest = CacheManifest(
        key="test",
        version="test",
        fingerprint=dataset.fingerprint,
        data_path="memory",
        config=to_dict(cfg.preprocess),
        records=tuple(records),
        arrays={cfg.input_array: [2, 32, 32]},
        stats={},
        seconds=0.0,
        crop_boxes=tuple(stats["crop_box"] for _, stats in outputs),
        film_shapes=tuple(film.shape for film in films),
    )
    stacked = np.stack([arrays[cfg.input_array] for arrays, _ in outputs])
    data = PreparedData({cfg.input_array: stacked}, manifest)
    lesion, normal = input_circles(records, cfg, data)
    assert normal == [] and len(lesion) == 1
    model_input = stacked[0].astype(np.float64)
    inside = circles_mask(model_input.shape, lesion)
    tissue = (model_input > 0) & ~inside
    assert inside.sum() >= 9
    assert model_input[inside].mean() > max(200.0, model_input[tissue].mean() + 80)


@pytest.mark.parametrize(
    ("size", "bbox", "message"),
    [
        (0, None, "size"),
        (32, (10, 10, 0, 5), "bbox"),
        (32, (0, 2000, 0, 5), "bbox"),
        (32, (-1, 5, 0, 5), "bbox"),
    ],
)
def test_circle_mapping_rejects_bad_input(size, bbox, message):
    with pytest.raises(ValueError, match=message):
        map_circles([(1.0, 1.0, 1.0)], size, bbox=bbox)


# --- lesion overlap ----------------------------------------------------------------------


def test_positive_weight_in_circles_by_hand():
    segments = np.zeros((10, 10), np.int64)
    segments[:, 5:] = 1
    # The disc of radius 1 about (4.5, 2) holds pixels (4, 2) and (5, 2): 2 of the 50 of label 0.
    assert positive_weight_in_circles(segments, {0: 3.0, 1: 1.0}, [(4.5, 2.0, 1.0)]) == (
        pytest.approx(3.0 * 2 / 50 / 4.0)
    )
    assert positive_weight_in_circles(segments, {0: 3.0, 1: -5.0}, [(4.5, 2.0, 1.0)]) == (
        pytest.approx(2 / 50)
    )
    assert positive_weight_in_circles(segments, {0: 3.0, 1: 1.0}, [(5, 5, 100)]) == 1.0
    assert positive_weight_in_circles(segments, {0: 3.0, 1: 1.0}, [(50, 50, 2)]) == 0.0


def test_positive_weight_is_none_without_circle_or_positive_weight():
    segments = np.zeros((4, 4), np.int64)
    assert positive_weight_in_circles(segments, {0: 1.0}, []) is None
    assert positive_weight_in_circles(segments, {0: -1.0}, [(1, 1, 1)]) is None


@pytest.mark.parametrize(
    ("segments", "weights", "message"),
    [
        (np.zeros((4, 4), np.float64), {0: 1.0}, "integer"),
        (np.zeros(4, np.int64), {0: 1.0}, "2-D"),
        (np.full((4, 4), -1, np.int64), {}, ">= 0"),
        (np.zeros((4, 4), np.int64), {3: 1.0}, "superpixel 3"),
    ],
)
def test_positive_weight_rejects_bad_input(segments, weights, message):
    with pytest.raises(ValueError, match=message):
        positive_weight_in_circles(segments, weights, [(1, 1, 1)])


# --- figure ------------------------------------------------------------------------------


def _hand_explanation(image: np.ndarray) -> ImageExplanation:
    segments = np.zeros(image.shape, np.int64)
    segments[:, image.shape[1] // 2 :] = 1
    explanation = ImageExplanation(np.repeat(image[..., None], 3, axis=2), segments)
    explanation.local_exp[MASS] = [(0, 0.5), (1, -0.2)]
    return explanation


def test_figure_has_four_panels_and_a_title():
    image = _film(4)
    figure = explanation_figure(
        image, _hand_explanation(image), MASS, title="mdb001", circles=[DISC]
    )
    assert len(figure.axes) == 4
    assert figure.get_suptitle() == "mdb001"
    assert [a.get_title()[:3] for a in figure.axes] == ["(a)", "(b)", "(c)", "(d)"]


@pytest.mark.parametrize(
    ("image", "kwargs", "message"),
    [
        (np.zeros((SIZE, SIZE), np.float32), {}, "uint8"),
        (np.zeros((SIZE, SIZE + 1), np.uint8), {}, "differs"),
        (np.zeros((SIZE, SIZE), np.uint8), {"num_features": 0}, "num_features"),
    ],
)
def test_figure_rejects_bad_input(image, kwargs, message):
    explanation = _hand_explanation(np.zeros((SIZE, SIZE), np.uint8))
    with pytest.raises(ValueError, match=message):
        explanation_figure(image, explanation, MASS, title="t", **kwargs)


# --- LIME end to end ---------------------------------------------------------------------


def test_lime_puts_the_positive_weight_on_the_disc_the_model_looks_at(tmp_path):
    on_disc = _explain(tmp_path, [[DISC], []], out="on")
    elsewhere = _explain(tmp_path, [[ELSEWHERE], []], out="off")
    first = on_disc["images"][0]
    assert first["pred"] == "mass" and first["true"] == "mass"
    assert first["positive_weight_in_lesion"] > 0.6
    assert elsewhere["images"][0]["positive_weight_in_lesion"] < 0.2
    assert on_disc["images"][1]["positive_weight_in_lesion"] is None
    assert on_disc["mean_positive_weight_in_lesion"] == first["positive_weight_in_lesion"]


def test_lime_json_schema_and_pngs(tmp_path):
    result = _explain(tmp_path, [[DISC], []])
    saved = json.loads((tmp_path / "out" / "lime.json").read_text())
    assert saved == result
    assert {"images", "mean_positive_weight_in_lesion", "num_samples", "segmentation"} <= set(saved)
    assert saved["num_samples"] == 100
    assert saved["segmentation"].startswith("slic(n_segments=20")
    for row, image_id in zip(saved["images"], ["mdb001", "mdb002"], strict=True):
        assert set(row) == {"image_id", "true", "pred", "proba", "positive_weight_in_lesion", "png"}
        assert row["image_id"] == image_id and row["png"] == f"{image_id}_lime.png"
        assert len(row["proba"]) == len(LABELS) and sum(row["proba"]) == pytest.approx(1.0)
        png = tmp_path / "out" / row["png"]
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        width, height = np.frombuffer(png.read_bytes()[16:24], dtype=">u4")
        assert (width, height) == (1200, 360)
    table = format_table(result)
    assert "mdb001" in table and "mean positive weight in lesion" in table


def test_seeded_runs_are_identical_and_the_seed_matters(tmp_path):
    circles = [[ELSEWHERE], []]
    first = _explain(tmp_path, circles, out="a")
    again = _explain(tmp_path, circles, out="b")
    other = _explain(tmp_path, circles, seed=1, out="c")
    assert first == again
    assert (tmp_path / "a" / "mdb001_lime.png").read_bytes() == (
        tmp_path / "b" / "mdb001_lime.png"
    ).read_bytes()
    assert (
        other["images"][0]["positive_weight_in_lesion"]
        != first["images"][0]["positive_weight_in_lesion"]
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"images": np.zeros((2, SIZE, SIZE), np.float32)}, "uint8"),
        ({"images": np.zeros((SIZE, SIZE), np.uint8)}, r"\(N, S, S\)"),
        ({"records": [_record("mdb001")]}, "2 images but 1 records"),
        ({"circles_in_input_coords": [[]]}, "2 images but 1 lists"),
        ({"labels": ("a", "b", "c")}, "record label"),
        ({"num_samples": 0}, "num_samples"),
        ({"batch_size": 0}, "batch_size"),
    ],
)
def test_explain_images_rejects_bad_input(tmp_path, change, message):
    kwargs = {
        "images": np.zeros((2, SIZE, SIZE), np.uint8),
        "records": [_record("mdb001"), _record("mdb002")],
        "circles_in_input_coords": None,
        "num_samples": 10,
        **change,
    }
    with pytest.raises(ValueError, match=message):
        explain_images(
            DiscBrightness(SIZE, DISC),
            kwargs.pop("images"),
            kwargs.pop("records"),
            tmp_path,
            **kwargs,
        )


# --- image selection and the command line ------------------------------------------------


def test_select_images_prefers_films_with_circles():
    records = [_record("mdb002", "normal"), _record("mdb001"), _record("mdb003", "calc")]
    assert select_images(records, None, 2) == ["mdb001", "mdb003"]
    assert select_images(records, None, 5) == ["mdb001", "mdb003", "mdb002"]
    assert select_images(records, None, None) == ["mdb001", "mdb003", "mdb002"]
    assert select_images(records, ["mdb002", "mdb002"], None) == ["mdb002"]


@pytest.mark.parametrize(
    ("ids", "n", "message"),
    [
        (["mdb001"], 2, "exclude each other"),
        (None, 0, "--n must be >= 1"),
        ([], None, "no image id"),
        (["mdb001", "mdb999"], None, "'mdb999'"),
    ],
)
def test_select_images_rejects_bad_selections(ids, n, message):
    with pytest.raises(ConfigError, match=message):
        select_images([_record("mdb001")], ids, n)


@pytest.fixture
def checkpoint(tmp_path) -> Path:
    """A checkpoint of an untrained ResNet-18 whose config preprocesses at 32 px."""
    from mammo_ray.learn.config import TrainConfig

    config = TrainConfig(
        input_size=32,
        preprocess=PreprocessConfig(sizes=(32,)),
        model=ModelConfig(pretrained="none"),
    )
    return save_checkpoint(
        tmp_path / "model.pt",
        build_model(config.model),
        config=to_dict(config),
        labels=list(LABELS),
        preprocess_key="test",
    )


def _run(argv: list[str], capsys) -> tuple[int, str]:
    from mammo_ray.cli import run_cli

    code = run_cli(main, argv)
    return code, capsys.readouterr().err


def test_cli_missing_checkpoint_is_one_line_exit_2(tmp_path, capsys):
    data = write_mias(tmp_path / "mias")
    missing = tmp_path / "nope.pt"
    code, err = _run(["--checkpoint", str(missing), "--data", str(data), "--out", "o"], capsys)
    assert code == 2
    assert err.count("\n") == 1 and str(missing) in err and "not found" in err


def test_cli_images_and_n_together_is_one_line_exit_2(tmp_path, checkpoint, capsys):
    argv = ["--checkpoint", str(checkpoint), "--data", str(tmp_path), "--out", "o"]
    code, err = _run([*argv, "--images", "mdb001", "--n", "2"], capsys)
    assert code == 2 and err.count("\n") == 1 and "--images and --n" in err


def test_cli_unknown_image_id_is_named(tmp_path, checkpoint, capsys):
    data = write_mias(tmp_path / "mias")
    argv = ["--checkpoint", str(checkpoint), "--data", str(data), "--out", str(tmp_path / "o")]
    code, err = _run([*argv, "--images", "mdb001,mdb321"], capsys)
    assert code == 2 and err.count("\n") == 1
    assert "'mdb321'" in err and str(data) in err
    assert not (tmp_path / "o").exists()


def test_cli_without_data_is_an_error(tmp_path, checkpoint, capsys, monkeypatch):
    monkeypatch.delenv("MAMMO_RAY_DATA", raising=False)
    code, err = _run(["--checkpoint", str(checkpoint), "--out", "o"], capsys)
    assert code == 2 and "--data" in err


# --- real data ---------------------------------------------------------------------------


@pytest.mark.integration
def test_cli_on_the_real_subset_at_32_px(tmp_path, mias_dev_path, ray_local, capsys):
    from mammo_ray.learn.config import TrainConfig
    from mammo_ray.preprocess.enhance import enhance
    from mammo_ray.preprocess.segment import segment

    config = TrainConfig(
        input_size=32,
        preprocess=PreprocessConfig(sizes=(32,)),
        model=ModelConfig(pretrained="none"),
    )
    torch.manual_seed(0)
    model = build_model(ModelConfig(pretrained="none"), num_classes=len(LABELS))
    # timm zero-initialises the last batch norm of each residual block; untrained, the network
    # is then constant on these films and LIME would find no weight to score.
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
    path = save_checkpoint(
        tmp_path / "model.pt",
        model,
        config=to_dict(config),
        labels=list(LABELS),
        preprocess_key="untrained",
    )
    out, cache = tmp_path / "lime", tmp_path / "cache"
    argv = ["--checkpoint", str(path), "--data", str(mias_dev_path), "--out", str(out)]
    argv += ["--images", "mdb001,mdb007", "--num-samples", "30", "--cache", str(cache)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "mdb001" in printed and "mean positive weight in lesion" in printed

    result = json.loads((out / "lime.json").read_text())
    first, second = result["images"]
    assert (first["image_id"], first["true"]) == ("mdb001", "mass")
    assert (second["image_id"], second["true"]) == ("mdb007", "normal")
    assert 0.0 <= first["positive_weight_in_lesion"] <= 1.0
    assert second["positive_weight_in_lesion"] is None
    assert (out / "mdb001_lime.png").stat().st_size > 10_000

    # The recomputed segmentation reproduces the cached input the circle is mapped into.
    (cache_dir,) = [p for p in cache.iterdir() if not p.name.startswith(".")]
    arrays, manifest = load_cache(cache_dir)
    film = load_mias(mias_dev_path).read_image("mdb001")
    seg = segment(film, enhance(film, config.preprocess.enhance), config.preprocess.segment)
    cached = arrays["segmented_32"][manifest.image_ids.index("mdb001")]
    np.testing.assert_array_equal(resize_square(seg.cropped, 32), cached)
