from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from mammo_ray.config import from_dict
from mammo_ray.errors import CacheError, ConfigError, MiasFormatError
from mammo_ray.preprocess import pipeline
from mammo_ray.preprocess.pipeline import (
    PreprocessConfig,
    cache_key,
    load_cache,
    mask_square,
    preprocess_image,
    resize_square,
    run_preprocessing,
)
from tests.data.mias_factory import DEFAULT_LABELS, mias_files, write_mias

SHAPE = (128, 128)
SMALL = PreprocessConfig(sizes=(32,))


@pytest.fixture
def synthetic_archive(tmp_path) -> Path:
    return write_mias(tmp_path / "mias.tar.gz", mias_files(shape=SHAPE))


def test_resize_square_pads_to_a_centred_square():
    image = np.full((40, 20), 200, np.uint8)
    out = resize_square(image, 40)
    assert out.shape == (40, 40)
    assert (out[:, :10] == 0).all() and (out[:, 30:] == 0).all() and (out[:, 10:30] == 200).all()
    assert resize_square(np.zeros((64, 64), np.uint8), 16).shape == (16, 16)


def test_preprocess_image_gives_every_array_and_stats():
    rng = np.random.default_rng(0)
    image = np.zeros((256, 256), np.uint8)
    image[:, :140] = rng.integers(90, 160, (256, 140))
    cfg = PreprocessConfig(sizes=(32, 64))
    arrays, stats = preprocess_image(image, cfg, [(128.0, 60.0, 20.0)])
    assert sorted(arrays) == [
        f"{kind}_{size}" for kind in ("breast", "enhanced", "segmented") for size in (32, 64)
    ]
    assert all(a.dtype == np.uint8 for a in arrays.values())
    assert arrays["segmented_64"].shape == (64, 64)
    assert 0.4 < stats["breast_fraction"] < 0.7
    assert 0.0 <= stats["candidate_dice"] <= 1.0
    assert preprocess_image(image, cfg)[1]["candidate_dice"] is None
    breast = arrays["breast_64"] > 0
    assert set(np.unique(arrays["breast_64"])) == {0, 255}
    assert breast[:, :30].mean() > 0.9 and not breast[:, 40:].any()


def test_mask_square_keeps_the_frame_of_resize_square():
    mask = np.zeros((40, 80), bool)
    mask[10:30, 0:20] = True
    image = np.where(mask, 200, 0).astype(np.uint8)
    np.testing.assert_array_equal(mask_square(mask, 40) > 0, resize_square(image, 40) >= 100)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"sizes": []}, "at least one"),
        ({"sizes": [8]}, r"\[16, 1024\]"),
        ({"sizes": [32, 32]}, "repeat"),
        ({"enhance": {"method": "magic"}}, "magic"),
    ],
)
def test_preprocess_config_validation(data, message):
    with pytest.raises(ConfigError, match=message):
        from_dict(PreprocessConfig, data)


def test_cache_key_depends_on_config_and_data():
    assert cache_key(SMALL, "a") == cache_key(PreprocessConfig(sizes=(32,)), "a")
    assert cache_key(SMALL, "a") != cache_key(SMALL, "b")
    assert cache_key(SMALL, "a") != cache_key(PreprocessConfig(sizes=(64,)), "a")


def test_run_writes_a_cache_and_reuses_it(ray_local, synthetic_archive, tmp_path):
    out = tmp_path / "cache"
    first = run_preprocessing(synthetic_archive, SMALL, out, image_shape=SHAPE)
    assert not first.reused and first.n_images == 12
    arrays, manifest = load_cache(first.cache_dir)
    assert sorted(arrays) == ["breast_32", "enhanced_32", "segmented_32"]
    assert arrays["enhanced_32"].shape == (12, 32, 32) and arrays["enhanced_32"].dtype == np.uint8
    assert {r.image_id: r.label for r in manifest.records} == DEFAULT_LABELS["paper"]
    assert manifest.preprocess_config() == SMALL
    assert len(manifest.stats["breast_fraction"]) == 12
    second = run_preprocessing(synthetic_archive, SMALL, out, image_shape=SHAPE)
    assert second.reused and second.cache_dir == first.cache_dir
    again, _ = load_cache(second.cache_dir)
    np.testing.assert_array_equal(again["segmented_32"], arrays["segmented_32"])
    assert [p.name for p in out.iterdir()] == [first.key]


def test_each_image_lands_in_its_own_row(ray_local, synthetic_archive, tmp_path):
    result = run_preprocessing(synthetic_archive, SMALL, tmp_path / "c", image_shape=SHAPE)
    arrays, manifest = load_cache(result.cache_dir)
    from mammo_ray.data.mias import load_mias

    dataset = load_mias(synthetic_archive, image_shape=SHAPE)
    for i, (record, image) in enumerate(dataset.iter_images()):
        expected, stats = preprocess_image(image, SMALL)
        assert manifest.records[i].image_id == record.image_id
        np.testing.assert_array_equal(arrays["enhanced_32"][i], expected["enhanced_32"])
        assert manifest.crop_boxes[i] == stats["crop_box"]
        assert manifest.film_shapes[i] == image.shape


def test_failed_write_leaves_no_cache(ray_local, synthetic_archive, tmp_path, monkeypatch):
    calls = []

    def failing_save(path, array):
        calls.append(path)
        raise OSError("disk full")

    monkeypatch.setattr(pipeline.np, "save", failing_save)
    out = tmp_path / "cache"
    with pytest.raises(OSError, match="disk full"):
        run_preprocessing(synthetic_archive, SMALL, out, image_shape=SHAPE)
    assert calls and list(out.iterdir()) == []


def test_a_bad_image_stops_the_run_with_its_name_and_no_cache(ray_local, tmp_path):
    files = mias_files(shape=SHAPE)
    files["mdb004.pgm"] = files["mdb004.pgm"][:-100]
    archive = write_mias(tmp_path / "bad.tar.gz", files)
    out = tmp_path / "cache"
    with pytest.raises(MiasFormatError, match="mdb004"):
        run_preprocessing(archive, SMALL, out, image_shape=SHAPE)
    assert not out.exists() or list(out.iterdir()) == []


def test_a_sample_above_maxval_fails_before_ray_starts_naming_the_file(tmp_path):
    """Before, only a Ray worker caught it, after Ray started, naming 'mdb004' alone."""
    files = mias_files(shape=SHAPE, maxval=1000)
    header_end = files["mdb004.pgm"].index(b"1000\n") + 5
    files["mdb004.pgm"] = (
        files["mdb004.pgm"][:header_end] + b"\xff\xff" + files["mdb004.pgm"][header_end + 2 :]
    )
    archive = write_mias(tmp_path / "bad.tar.gz", files)
    started = pipeline.ray.is_initialized()
    with pytest.raises(
        MiasFormatError,
        match=r"bad\.tar\.gz:mdb004\.pgm: PGM sample value 65535 exceeds maxval 1000",
    ):
        run_preprocessing(archive, SMALL, tmp_path / "cache", image_shape=SHAPE)
    assert pipeline.ray.is_initialized() == started


def test_stale_staging_folders_are_removed_when_the_cache_is_opened(tmp_path):
    out = tmp_path / "cache"
    stale, fresh = out / ".tmp-abc-crashed", out / ".tmp-def-writing"
    for staging in (stale, fresh):
        staging.mkdir(parents=True)
        (staging / "enhanced_32.npy").write_bytes(b"x")
    now = stale.stat().st_mtime + pipeline.STALE_STAGING_S + 1
    os.utime(fresh, (now - 5, now - 5))
    assert pipeline.remove_stale_staging(out, now=now) == [stale]
    assert not stale.exists() and fresh.exists()
    assert pipeline.remove_stale_staging(tmp_path / "absent") == []


def test_a_crashed_write_is_cleaned_up_by_the_next_run(ray_local, synthetic_archive, tmp_path):
    out = tmp_path / "cache"
    crashed = out / ".tmp-0123-crashed"
    crashed.mkdir(parents=True)
    (crashed / "enhanced_32.npy").write_bytes(b"x" * 100)
    old = crashed.stat().st_mtime - pipeline.STALE_STAGING_S - 60
    os.utime(crashed, (old, old))
    result = run_preprocessing(synthetic_archive, SMALL, out, image_shape=SHAPE)
    assert sorted(p.name for p in out.iterdir()) == [result.key]


def test_a_leftover_staging_dir_is_not_a_cache(ray_local, synthetic_archive, tmp_path):
    out = tmp_path / "cache"
    result = run_preprocessing(synthetic_archive, SMALL, out, image_shape=SHAPE)
    staging = out / f".tmp-{result.key}-interrupted"
    result.cache_dir.rename(staging)
    (staging / "enhanced_32.npy").unlink()
    rerun = run_preprocessing(synthetic_archive, SMALL, out, image_shape=SHAPE)
    assert not rerun.reused
    load_cache(rerun.cache_dir)


def test_load_cache_rejects_incomplete_directories(ray_local, synthetic_archive, tmp_path):
    with pytest.raises(CacheError, match="no manifest.json"):
        load_cache(tmp_path)
    result = run_preprocessing(synthetic_archive, SMALL, tmp_path / "c", image_shape=SHAPE)
    np.save(result.cache_dir / "enhanced_32.npy", np.zeros((3, 32, 32), np.uint8))
    with pytest.raises(CacheError, match="enhanced_32.npy: shape"):
        load_cache(result.cache_dir)
    (result.cache_dir / "segmented_32.npy").write_bytes(b"junk")
    (result.cache_dir / "enhanced_32.npy").unlink()
    with pytest.raises(CacheError, match="enhanced_32.npy"):
        load_cache(result.cache_dir)


def test_a_manifest_of_another_layout_names_the_missing_key(ray_local, synthetic_archive, tmp_path):
    result = run_preprocessing(synthetic_archive, SMALL, tmp_path / "c", image_shape=SHAPE)
    manifest_path = result.cache_dir / "manifest.json"
    data = json.loads(manifest_path.read_text())
    manifest_path.write_text(json.dumps({k: v for k, v in data.items() if k != "crop_boxes"}))
    with pytest.raises(CacheError, match="manifest.json: crop_boxes: Field required"):
        load_cache(result.cache_dir)
    data["film_shapes"] = data["film_shapes"][:-1]
    manifest_path.write_text(json.dumps(data))
    with pytest.raises(CacheError, match="12 records but film_shapes has 11"):
        load_cache(result.cache_dir)


def test_cli_without_data_says_how_to_get_it(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, "-m", "mammo_ray.preprocess", "run", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert proc.returncode == 2
    assert "mammo_ray.data fetch" in proc.stderr and proc.stderr.count("\n") == 1


def test_cli_rejects_a_bad_config_key(tmp_path, synthetic_archive):
    config = tmp_path / "pre.yaml"
    config.write_text("enhance:\n  metod: paper\n")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mammo_ray.preprocess",
            "run",
            "--data",
            str(synthetic_archive),
            "--config",
            str(config),
            "--out",
            str(tmp_path / "c"),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert "pre.yaml.enhance: unknown key 'metod'" in proc.stderr
    assert not (tmp_path / "c").exists()


@pytest.mark.integration
def test_real_subset_end_to_end(ray_local, mias_dev_path, tmp_path):
    result = run_preprocessing(mias_dev_path, PreprocessConfig(sizes=(64,)), tmp_path / "cache")
    arrays, manifest = load_cache(result.cache_dir)
    assert result.n_images == 258 and arrays["segmented_64"].shape == (258, 64, 64)
    assert Counter(r.label for r in manifest.records) == {"normal": 165, "mass": 72, "calc": 21}
    fractions = np.array(manifest.stats["breast_fraction"])
    assert (fractions > 0.1).all() and (fractions < 0.85).all()
    dice_values = [d for d in manifest.stats["candidate_dice"] if d is not None]
    assert len(dice_values) >= 80 and all(0 <= d <= 1 for d in dice_values)
    assert arrays["segmented_64"].mean() > 20
