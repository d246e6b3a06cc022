"""Tests of mammo_ray.splits: patient-grouped splits, the paper's leaky split, split files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mammo_ray.config import from_dict
from mammo_ray.errors import ConfigError
from mammo_ray.learn.splits import (
    Split,
    SplitConfig,
    cross_validation,
    fold_leakage,
    kfold_splits,
    leakage_report,
    make_split,
    read_split,
    write_split,
)

PARTS = ("train", "val", "test")


def _mias_like(seed: int = 0) -> tuple[list[str], list[int], list[str]]:
    """258 films of 129 patients (films 2k-1, 2k), labels 165 normal / 72 mass / 21 calc.

    Labels are shuffled over films, so many patients have films of two different classes.
    """
    labels = np.array(["normal"] * 165 + ["mass"] * 72 + ["calc"] * 21)
    np.random.default_rng(seed).shuffle(labels)
    films = np.arange(1, 259)
    return labels.tolist(), ((films + 1) // 2).tolist(), [f"mdb{n:03d}" for n in films]


def _patients_by_part(split: Split, patient_ids: list[int]) -> list[set[int]]:
    return [{patient_ids[i] for i in getattr(split, name)} for name in PARTS]


def test_patient_split_never_puts_a_patient_on_two_sides():
    for seed in range(50):
        labels, patients, _ = _mias_like(seed)
        split = make_split(labels, patients, SplitConfig(seed=seed))
        train, val, test = _patients_by_part(split, patients)
        assert not (train & val or train & test or val & test), f"seed {seed}"
        report = leakage_report(split, patients)
        assert report["patients_train_test"] == 0
        assert report["test_images_with_partner_in_train"] == 0


@pytest.mark.parametrize("method", ["patient", "paper"])
def test_fractions_within_a_few_images_and_every_class_in_every_part(method):
    labels, patients, _ = _mias_like()
    cfg = SplitConfig(method=method, seed=3)
    split = make_split(labels, patients, cfg)
    n = len(labels)
    assert sorted(split.train + split.val + split.test) == list(range(n))
    for name in PARTS:
        part = getattr(split, name)
        assert abs(len(part) - getattr(cfg, name) * n) <= 4, (name, len(part))
        assert {labels[i] for i in part} == {"normal", "mass", "calc"}, name
        assert list(part) == sorted(part)


def test_split_is_deterministic_for_a_seed_and_changes_with_it():
    labels, patients, _ = _mias_like()
    first = make_split(labels, patients, SplitConfig(seed=7))
    assert make_split(labels, patients, SplitConfig(seed=7)) == first
    assert make_split(labels, patients, SplitConfig(seed=8)).test != first.test
    assert first.method == "patient" and first.leaky is False and first.seed == 7


def test_paper_split_is_marked_leaky_and_leaks_where_it_must():
    # Two patients with 30 films each: test (12) and val (10) cannot hold all 30 films of
    # either patient, so both have films in train and any test film shares a patient with train.
    labels = ["normal", "mass", "calc"] * 20
    patients = [1] * 30 + [2] * 30
    split = make_split(labels, patients, SplitConfig(method="paper"))
    assert split.method == "paper" and split.leaky is True
    report = leakage_report(split, patients)
    assert report["leaky"] is True
    assert report["patients_train_test"] >= 1
    assert report["test_images_with_partner_in_train"] == len(split.test)


def test_fold_leakage_shows_image_level_folds_sharing_patients_and_grouped_ones_not():
    labels, patients, _ = _mias_like()
    image = fold_leakage(labels, patients, 5, seed=0, by_patient=False)
    grouped = fold_leakage(labels, patients, 5, seed=0, by_patient=True)
    for rows in (image, grouped):
        assert [r["fold"] for r in rows] == list(range(5))
        assert sum(r["films"] for r in rows) == len(labels)
    assert all(
        r["patients_in_other_folds"] == r["films_with_partner_in_training"] == 0 for r in grouped
    )
    assert sum(r["patients"] for r in grouped) == len(set(patients))
    # two films per patient in 5 random folds: the partner film lies elsewhere 4 times in 5
    shared = sum(r["films_with_partner_in_training"] for r in image)
    assert 0.7 * len(labels) < shared < 0.9 * len(labels)
    assert all(0 < r["patients_in_other_folds"] <= r["patients"] for r in image)


def test_paper_split_on_mias_like_data_shares_patients():
    labels, patients, _ = _mias_like()
    report = leakage_report(make_split(labels, patients, SplitConfig(method="paper")), patients)
    assert report["patients_train_test"] > 0


def test_leakage_report_counts_a_known_split():
    split = Split(method="paper", leaky=True, train=(0, 2), val=(4,), test=(1, 3, 5), seed=0)
    report = leakage_report(split, [1, 1, 2, 2, 3, 3])
    assert report == {
        "method": "paper",
        "leaky": True,
        "n_train": 2,
        "n_val": 1,
        "n_test": 3,
        "patients_train_test": 2,
        "patients_train_val": 0,
        "patients_val_test": 1,
        "test_images_with_partner_in_train": 2,
    }


def test_leakage_report_rejects_too_few_patient_ids():
    split = Split(method="patient", leaky=False, train=(0,), val=(1,), test=(5,), seed=0)
    with pytest.raises(ValueError, match="record 5 but only 3 patient ids"):
        leakage_report(split, [1, 1, 2])


def test_kfold_uses_every_image_once_as_test_and_keeps_patients_together():
    labels, patients, _ = _mias_like()
    folds = kfold_splits(labels, patients, n_folds=5, seed=0)
    assert len(folds) == 5
    tests = np.concatenate([fold.test for fold in folds])
    assert np.array_equal(np.sort(tests), np.arange(len(labels)))
    for fold in folds:
        assert sorted(fold.train + fold.val + fold.test) == list(range(len(labels)))
        assert leakage_report(fold, patients)["patients_train_val"] == 0
        assert leakage_report(fold, patients)["patients_train_test"] == 0
        assert abs(len(fold.val) - 0.2 * (len(fold.train) + len(fold.val))) <= 4


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"n_folds": 1}, "n_folds"), ({"n_folds": 5, "val_fraction": 0.9}, "val_fraction")],
)
def test_kfold_rejects_bad_arguments(kwargs, message):
    labels, patients, _ = _mias_like()
    with pytest.raises(ValueError, match=message):
        kfold_splits(labels, patients, seed=0, **kwargs)


def test_a_class_with_too_few_patients_fails_clearly():
    labels, patients, _ = _mias_like()
    labels = ["normal" if label == "calc" else label for label in labels]
    labels[:3] = ["calc"] * 3  # films 1-3: patients 1 and 2 only
    with pytest.raises(ValueError, match=r"class 'calc' has films of only 2 patient\(s\)"):
        make_split(labels, patients, SplitConfig())
    with pytest.raises(ValueError, match="'calc'"):
        kfold_splits(labels, patients, n_folds=5, seed=0)


def test_paper_split_with_a_tiny_class_fails_clearly():
    labels, patients, _ = _mias_like()
    labels = ["normal" if label == "calc" else label for label in labels]
    labels[0] = "calc"
    with pytest.raises(ValueError, match="at least 3 images of each class"):
        make_split(labels, patients, SplitConfig(method="paper"))


def test_lengths_must_agree():
    with pytest.raises(ValueError, match="3 labels but 2 patient ids"):
        make_split(["a", "b", "c"], [1, 2], SplitConfig())
    with pytest.raises(ValueError, match="empty"):
        make_split([], [], SplitConfig())


def test_split_file_round_trip_uses_image_ids(tmp_path):
    labels, patients, ids = _mias_like()
    split = make_split(labels, patients, SplitConfig(seed=2))
    path = write_split(tmp_path / "run" / "split.json", split, ids)
    data = json.loads(path.read_text())
    assert data["method"] == "patient" and data["leaky"] is False and data["seed"] == 2
    assert data["test"] == [ids[i] for i in split.test]
    assert read_split(path, ids) == split
    assert not [p for p in path.parent.iterdir() if p.name != "split.json"]


def test_split_file_survives_a_new_record_order(tmp_path):
    labels, patients, ids = _mias_like()
    split = make_split(labels, patients, SplitConfig())
    path = write_split(tmp_path / "split.json", split, ids)
    reordered = ids[::-1]
    again = read_split(path, reordered)
    for name in PARTS:
        assert sorted(reordered[i] for i in getattr(again, name)) == sorted(
            ids[i] for i in getattr(split, name)
        )


def test_unknown_image_id_in_split_file_names_the_file(tmp_path):
    labels, patients, ids = _mias_like()
    path = write_split(tmp_path / "split.json", make_split(labels, patients, SplitConfig()), ids)
    with pytest.raises(ConfigError, match=r"split\.json: .*unknown image id 'mdb00"):
        read_split(path, ids[2:])


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "top level must be a mapping"),
        ('{"method": "patient"}', "missing key"),
        (
            '{"method": "patient", "leaky": false, "seed": 0, "train": [], "val": [], '
            '"test": [], "extra": 1}',
            "unknown key 'extra'",
        ),
        (
            '{"method": "patient", "leaky": false, "seed": 0, "train": ["a"], "val": ["a"], '
            '"test": []}',
            "also in an earlier part",
        ),
        (
            '{"method": "patient", "leaky": true, "seed": 0, "train": [], "val": [], "test": []}',
            "contradicts method",
        ),
        (
            '{"method": "patient", "leaky": false, "seed": 0, "train": "a", "val": [], "test": []}',
            "list",
        ),
    ],
)
def test_bad_split_files_raise_config_error(tmp_path, content, message):
    path = tmp_path / "split.json"
    path.write_text(content)
    with pytest.raises(ConfigError, match=message) as info:
        read_split(path, ["a", "b"])
    assert str(path) in str(info.value)


def test_missing_split_file(tmp_path):
    with pytest.raises(ConfigError, match="split file not found"):
        read_split(tmp_path / "nope.json", ["a"])


def test_to_dict_needs_an_id_per_record():
    split = Split(method="patient", leaky=False, train=(0,), val=(1,), test=(2,), seed=0)
    with pytest.raises(ValueError, match="record 2 but only 2 image ids"):
        split.to_dict(["a", "b"])
    with pytest.raises(ValueError, match="'a' appears more than once"):
        split.to_dict(["a", "b", "a"])


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"train": (1, 0)}, "sorted and unique"),
        ({"train": (0, 1), "test": (1,)}, "also in an earlier part"),
        ({"val": (-1,)}, "non-negative"),
        ({"leaky": True}, "contradicts"),
    ],
)
def test_split_rejects_inconsistent_parts(fields, message):
    base = {"method": "patient", "leaky": False, "train": (0,), "val": (), "test": (), "seed": 0}
    with pytest.raises(ValueError, match=message):
        Split(**{**base, **fields})


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"train": 0.7}, "must be 1"),
        ({"train": 0.0, "val": 0.5, "test": 0.5}, r"train: fraction must be in \(0, 1\)"),
        ({"train": 1.2, "val": -0.4, "test": 0.2}, "fraction must be in"),
        ({"train": 0.1, "val": 0.1, "test": 0.8}, "fewer than 2 patient folds"),
        ({"train": 0.2, "val": 0.7, "test": 0.1}, "val: 0.7 leaves fewer than 2"),
        ({"method": "image"}, "is not one of"),
        ({"method": "cv", "folds": 1}, r"folds: expected an integer >= 2, got 1"),
        ({"method": "cv", "repeats": 0}, r"repeats: expected an integer >= 1, got 0"),
        ({"method": "patient", "train": 0.8, "val": 0.2, "test": 0.0}, "test: fraction"),
        ({"seed": 1.5}, "expected an integer"),
    ],
)
def test_bad_split_config_is_a_config_error(data, message):
    with pytest.raises(ConfigError, match=message):
        from_dict(SplitConfig, data, where="split")


def test_paper_method_accepts_fractions_the_patient_method_cannot_fold():
    cfg = from_dict(SplitConfig, {"method": "paper", "train": 0.1, "val": 0.1, "test": 0.8})
    assert cfg.test == 0.8


# --- cross-validation (split.method: cv) -------------------------------------------------------


CV = SplitConfig(method="cv")


@pytest.mark.parametrize("test", [0.2, 0.0])
def test_cv_folds_keep_patients_apart_and_predict_every_image_once(test):
    labels, patients, _ = _mias_like()
    cfg = SplitConfig(method="cv", train=0.8 * (1 - test), val=0.2 * (1 - test), test=test)
    cv = cross_validation(labels, patients, cfg)
    assert len(cv.folds) == 5 and all(f.method == "cv" and not f.leaky for f in cv.folds)
    outer = {patients[i] for i in cv.test}
    assert (len(cv.test) > 0) == (test > 0)
    held_out = [{patients[i] for i in fold.test} for fold in cv.folds]
    for k, fold in enumerate(cv.folds):
        train, val, own = _patients_by_part(fold, patients)
        assert not (train & val or train & own or val & own), "a patient on two sides of a fold"
        assert not (outer & (train | val | own)), "an outer test patient inside the folds"
        assert all(not (held_out[k] & held_out[j]) for j in range(5) if j != k)
    oof = cv.out_of_fold()
    assert sorted(oof + cv.test) == list(range(len(labels))), "every image once, in or out"
    assert len(set(oof)) == len(oof)


def test_cv_folds_are_stratified_within_one_image_per_abnormal_class():
    """StratifiedGroupKFold keeps each abnormal class within one image across folds; normal
    films, moving with their patient's other film, vary a little more."""
    labels, patients, _ = _mias_like()
    cv = cross_validation(labels, patients, CV)
    counts = np.array(
        [[sum(labels[i] == c for i in fold.test) for c in ("mass", "calc", "normal")]
         for fold in cv.folds]
    )  # fmt: skip
    spread = counts.max(axis=0) - counts.min(axis=0)
    assert spread[0] <= 1 and spread[1] <= 1 and spread[2] <= 6, counts


def test_cv_repeats_reshuffle_the_folds_but_keep_the_outer_test_part():
    labels, patients, _ = _mias_like()
    cv = cross_validation(labels, patients, SplitConfig(method="cv", folds=3, repeats=2))
    assert len(cv.folds) == 6 and cv.out_of_fold(0) == cv.out_of_fold(1)
    first = [frozenset(f.test) for f in cv.folds[:3]]
    second = [frozenset(f.test) for f in cv.folds[3:]]
    assert set(first) != set(second)
    assert cross_validation(labels, patients, CV) == cross_validation(labels, patients, CV)
    assert (
        cross_validation(labels, patients, CV).test
        == make_split(labels, patients, SplitConfig()).test
    ), "the outer test part is the patient split's test part"


def test_cv_config_cannot_make_one_split_and_needs_enough_patients():
    labels, patients, _ = _mias_like()
    with pytest.raises(ValueError, match="method cv makes folds, not one split"):
        make_split(labels, patients, CV)
    with pytest.raises(ValueError, match="needs split.method=cv"):
        cross_validation(labels, patients, SplitConfig())
    few = ["calc"] * 4 + ["normal"] * 16
    with pytest.raises(ValueError, match="class 'calc' has films of only 2 patient"):
        cross_validation(
            few, [i // 2 for i in range(20)], SplitConfig(method="cv", test=0.0, train=0.8, val=0.2)
        )
