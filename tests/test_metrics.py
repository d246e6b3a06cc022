from __future__ import annotations

import collections
import json

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score, f1_score, roc_auc_score

from mammo_ray.errors import ConfigError
from mammo_ray.learn.metrics import (
    classification_metrics,
    patient_bootstrap_ci,
    per_class_metrics,
    predictions_table,
    read_predictions_csv,
    write_metrics_json,
    write_predictions_csv,
)

LABELS = ["normal", "mass", "calc"]

# cm = [[2, 1, 1], [1, 2, 0], [0, 0, 3]] (rows = true), N = 10
HAND_TRUE = [0, 0, 0, 0, 1, 1, 1, 2, 2, 2]
HAND_PRED = [0, 0, 1, 2, 1, 1, 0, 2, 2, 2]


def _from_matrix(cm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """y_true, y_pred holding cm[i, j] images of true class i predicted as j."""
    n = cm.shape[0]
    y_true = np.repeat(np.repeat(np.arange(n), n), cm.ravel())
    y_pred = np.repeat(np.tile(np.arange(n), n), cm.ravel())
    return y_true, y_pred


def _onehot(y: np.ndarray, n_classes: int = 3) -> np.ndarray:
    return np.eye(n_classes)[np.asarray(y)] * 0.8 + 0.2 / n_classes


def _noisy_predictions(n: int, accuracy: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, 3, n)
    wrong = rng.random(n) > accuracy
    y_pred = np.where(wrong, (y_true + rng.integers(1, 3, n)) % 3, y_true)
    return y_true, y_pred


def _assert_plain_json_types(value: object) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            assert type(key) is str
            _assert_plain_json_types(item)
    elif isinstance(value, list):
        for item in value:
            _assert_plain_json_types(item)
    else:
        assert value is None or type(value) in (str, int, float), type(value)


# --- per-class counts and measures -------------------------------------------------------


def test_per_class_metrics_of_hand_computed_example():
    report = classification_metrics(HAND_TRUE, HAND_PRED, _onehot(HAND_PRED), LABELS, n_boot=10)
    assert report["confusion_matrix"] == [[2, 1, 1], [1, 2, 0], [0, 0, 3]]
    normal, mass, calc = (report["per_class"][name] for name in LABELS)
    assert (normal["tp"], normal["tn"], normal["fp"], normal["fn"]) == (2, 5, 1, 2)
    assert (mass["tp"], mass["tn"], mass["fp"], mass["fn"]) == (2, 6, 1, 1)
    assert (calc["tp"], calc["tn"], calc["fp"], calc["fn"]) == (3, 6, 1, 0)
    assert normal["precision"] == pytest.approx(2 / 3)
    assert normal["recall"] == pytest.approx(1 / 2)
    assert normal["f1"] == pytest.approx(4 / 7)  # 2PR/(P+R) = (2/3)/(7/6)
    assert normal["dsc"] == pytest.approx(4 / 7)  # 2*2 / (2*2 + 1 + 2)
    assert normal["accuracy"] == pytest.approx(0.7)
    assert mass["precision"] == pytest.approx(2 / 3) and mass["recall"] == pytest.approx(2 / 3)
    assert mass["f1"] == pytest.approx(2 / 3) and mass["accuracy"] == pytest.approx(0.8)
    assert calc["precision"] == pytest.approx(3 / 4) and calc["recall"] == 1.0
    assert calc["dsc"] == pytest.approx(6 / 7) and calc["accuracy"] == pytest.approx(0.9)
    assert report["accuracy"] == pytest.approx(0.7)
    assert report["balanced_accuracy"] == pytest.approx((1 / 2 + 2 / 3 + 1) / 3)
    assert report["macro_f1"] == pytest.approx((4 / 7 + 2 / 3 + 6 / 7) / 3)


def test_paper_table2_matrix_recomputed():
    # The paper's Table 2 matrix, classes in its order (Normal, Micro-calc, Masses).
    paper = np.array([[192, 5, 7], [0, 24, 1], [1, 3, 89]])
    names = ["normal", "calc", "mass"]

    # Read with rows = true class (our convention): FP and FN swap against the paper's table.
    as_true_rows = per_class_metrics(paper, names)
    assert [as_true_rows[n]["tp"] for n in names] == [192, 24, 89]
    assert [as_true_rows[n]["tn"] for n in names] == [117, 289, 221]
    assert [as_true_rows[n]["fp"] for n in names] == [1, 8, 8]
    assert [as_true_rows[n]["fn"] for n in names] == [12, 1, 4]

    # The paper's FP 12/1/4 and FN 1/8/8 follow from rows = predicted, columns = true.
    y_true, y_pred = _from_matrix(paper.T)
    report = classification_metrics(y_true, y_pred, _onehot(y_pred), names, n_boot=10)
    assert report["n"] == 322
    rows = report["per_class"]
    assert [rows[n]["tp"] for n in names] == [192, 24, 89]
    assert [rows[n]["tn"] for n in names] == [117, 289, 221]
    assert [rows[n]["fp"] for n in names] == [12, 1, 4]
    assert [rows[n]["fn"] for n in names] == [1, 8, 8]
    # Matching the paper (3 decimals): precision, normal/calc recall and F1, all accuracies.
    assert [round(rows[n]["precision"], 3) for n in names] == [0.941, 0.960, 0.957]
    assert [round(rows[n]["recall"], 3) for n in names[:2]] == [0.995, 0.750]
    assert [round(rows[n]["f1"], 3) for n in names[:2]] == [0.967, 0.842]
    assert [round(rows[n]["accuracy"], 3) for n in names] == [0.960, 0.972, 0.963]
    # Inconsistent in the paper: masses recall is 89/97 = 0.918 and F1 178/190 = 0.937, not
    # 0.957 (the paper repeats the precision); its DSC row (0.652/0.457/0.484) cannot come
    # from these counts, where DSC = 2TP/(2TP+FP+FN) = F1.
    assert round(rows["mass"]["recall"], 3) == 0.918
    assert round(rows["mass"]["f1"], 3) == 0.937
    assert [round(rows[n]["dsc"], 3) for n in names] == [0.967, 0.842, 0.937]


def test_absent_class_gives_zero_ratios_not_errors():
    cm = np.array([[3, 1, 0], [0, 2, 0], [0, 0, 0]])
    calc = per_class_metrics(cm, LABELS)["calc"]
    assert calc == {
        "tp": 0,
        "tn": 6,
        "fp": 0,
        "fn": 0,
        "precision": 0.0,
        "recall": 0.0,
        "f1": 0.0,
        "accuracy": 1.0,
        "dsc": 0.0,
    }


def test_scores_agree_with_sklearn():
    y_true, y_pred = _noisy_predictions(300, 0.7, seed=1)
    proba = np.random.default_rng(2).dirichlet(np.ones(3), 300) + _onehot(y_pred)
    proba /= proba.sum(axis=1, keepdims=True)
    report = classification_metrics(y_true, y_pred, proba, LABELS, n_boot=10)
    assert report["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y_true, y_pred))
    assert report["macro_f1"] == pytest.approx(f1_score(y_true, y_pred, average="macro"))
    per_class_f1 = f1_score(y_true, y_pred, average=None)
    assert [report["per_class"][n]["f1"] for n in LABELS] == pytest.approx(per_class_f1)
    sklearn_macro_auc = roc_auc_score(y_true, proba, multi_class="ovr", average="macro")
    assert report["auc_ovr"]["macro"] == pytest.approx(sklearn_macro_auc)
    for k, name in enumerate(LABELS):
        assert report["auc_ovr"][name] == pytest.approx(roc_auc_score(y_true == k, proba[:, k]))


def test_auc_is_none_for_a_class_absent_from_y_true():
    y_true = [0, 0, 1, 1, 0, 1]
    y_pred = [0, 2, 1, 1, 0, 0]
    proba = np.array([[0.9, 0.05, 0.05], [0.2, 0.2, 0.6], [0.1, 0.8, 0.1]] * 2)
    with pytest.warns(UserWarning, match="y_pred contains classes not in y_true"):
        report = classification_metrics(y_true, y_pred, proba, LABELS, n_boot=10)
    assert report["auc_ovr"]["calc"] is None
    assert report["auc_ovr"]["normal"] is not None and report["auc_ovr"]["mass"] is not None
    defined = [report["auc_ovr"]["normal"], report["auc_ovr"]["mass"]]
    assert report["auc_ovr"]["macro"] == pytest.approx(np.mean(defined))


def test_auc_is_none_everywhere_when_y_true_holds_one_class():
    with pytest.warns(UserWarning, match="y_pred contains classes not in y_true"):
        report = classification_metrics([1, 1, 1], [1, 0, 1], _onehot([1, 0, 1]), LABELS, n_boot=10)
    assert report["auc_ovr"] == {"normal": None, "mass": None, "calc": None, "macro": None}


# --- bootstrap ----------------------------------------------------------------------------


def test_bootstrap_ci_contains_the_point_estimate():
    y_true, y_pred = _noisy_predictions(200, 0.8, seed=3)
    groups = np.arange(200) // 2
    report = classification_metrics(y_true, y_pred, _onehot(y_pred), LABELS, groups=groups)
    for key in ("accuracy", "balanced_accuracy"):
        low, high = report["ci95"][key]
        assert low < report[key] < high
    assert report["ci95"]["n_groups"] == 100
    assert report["ci95"]["method"] == "patient bootstrap, 1000 resamples, percentile"


def test_vectorised_bootstrap_matches_a_plain_resampling_loop():
    y_true, y_pred = _noisy_predictions(200, 0.75, seed=9)
    groups = np.arange(200) // 2
    members = [np.flatnonzero(groups == g) for g in range(100)]
    rng = np.random.default_rng(10)
    accuracy, balanced = [], []
    for _ in range(500):
        index = np.concatenate([members[g] for g in rng.integers(0, 100, 100)])
        accuracy.append(np.mean(y_true[index] == y_pred[index]))
        balanced.append(balanced_accuracy_score(y_true[index], y_pred[index]))
    ci = patient_bootstrap_ci(y_true, y_pred, groups, n_classes=3, n_boot=4000)
    assert ci["accuracy"] == pytest.approx(np.percentile(accuracy, [2.5, 97.5]), abs=0.02)
    assert ci["balanced_accuracy"] == pytest.approx(np.percentile(balanced, [2.5, 97.5]), abs=0.02)


def test_bootstrap_ci_narrows_with_more_patients():
    pattern_true = np.array([0, 0, 1, 1, 2, 2, 0, 1, 2, 0])
    pattern_pred = np.array([0, 0, 1, 1, 2, 2, 1, 2, 0, 0])

    def width(repeats: int) -> float:
        y_true, y_pred = np.tile(pattern_true, repeats), np.tile(pattern_pred, repeats)
        groups = np.arange(y_true.size) // 2
        ci = patient_bootstrap_ci(y_true, y_pred, groups, n_classes=3)
        return ci["accuracy"][1] - ci["accuracy"][0]

    assert width(20) < 0.5 * width(2)


def test_bootstrap_is_deterministic_for_a_seed():
    y_true, y_pred = _noisy_predictions(100, 0.7, seed=4)
    first = patient_bootstrap_ci(y_true, y_pred, n_classes=3, seed=7)
    assert patient_bootstrap_ci(y_true, y_pred, n_classes=np.int64(3), seed=7) == first
    assert patient_bootstrap_ci(y_true, y_pred, n_classes=3, seed=8) != first


def test_patient_bootstrap_is_wider_when_both_films_agree():
    n_patients = 60
    patient_correct = np.arange(n_patients) % 4 != 0
    y_true = np.repeat(np.arange(n_patients) % 3, 2)
    y_pred = np.where(np.repeat(patient_correct, 2), y_true, (y_true + 1) % 3)
    groups = np.repeat(np.arange(n_patients), 2)
    by_patient = patient_bootstrap_ci(y_true, y_pred, groups, n_classes=3, n_boot=2000)
    by_image = patient_bootstrap_ci(y_true, y_pred, None, n_classes=3, n_boot=2000)
    for key in ("accuracy", "balanced_accuracy"):
        patient_width = by_patient[key][1] - by_patient[key][0]
        image_width = by_image[key][1] - by_image[key][0]
        # perfectly correlated pairs: the standard error grows by about sqrt(2)
        assert patient_width > 1.2 * image_width


def test_perfect_predictions_give_a_degenerate_interval():
    y = np.array([0, 1, 2, 2, 1, 0, 0, 0])
    report = classification_metrics(y, y, _onehot(y), LABELS, groups=[0, 0, 1, 1, 2, 2, 3, 3])
    assert report["ci95"]["accuracy"] == [1.0, 1.0]
    assert report["ci95"]["balanced_accuracy"] == [1.0, 1.0]


def test_image_level_bootstrap_is_named_as_such():
    report = classification_metrics(HAND_TRUE, HAND_PRED, _onehot(HAND_PRED), LABELS, n_boot=50)
    assert report["ci95"]["n_groups"] == 10
    assert report["ci95"]["method"] == (
        "image (each image its own group) bootstrap, 50 resamples, percentile"
    )


# --- the report as JSON -------------------------------------------------------------------


def test_metrics_json_has_exactly_the_required_keys(tmp_path):
    groups = [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    report = classification_metrics(HAND_TRUE, HAND_PRED, _onehot(HAND_PRED), LABELS, groups)
    _assert_plain_json_types(report)
    path = write_metrics_json(tmp_path / "run" / "metrics.json", report)
    loaded = json.loads(path.read_text(encoding="utf-8"))
    assert loaded == report
    assert list(loaded) == [
        "labels",
        "n",
        "confusion_matrix",
        "accuracy",
        "balanced_accuracy",
        "macro_f1",
        "auc_ovr",
        "per_class",
        "ci95",
    ]
    assert loaded["labels"] == LABELS and loaded["n"] == 10
    assert set(loaded["auc_ovr"]) == {*LABELS, "macro"}
    assert set(loaded["per_class"]) == set(LABELS)
    for row in loaded["per_class"].values():
        assert set(row) == {"tp", "tn", "fp", "fn", "precision", "recall", "f1", "accuracy", "dsc"}
    assert set(loaded["ci95"]) == {"accuracy", "balanced_accuracy", "method", "n_groups"}
    assert loaded["ci95"]["n_groups"] == 5
    assert [p.name for p in path.parent.iterdir()] == ["metrics.json"]


def test_metrics_json_writes_none_as_null_and_replaces_old_file(tmp_path):
    path = tmp_path / "metrics.json"
    path.write_text("old", encoding="utf-8")
    metrics = classification_metrics(HAND_TRUE, HAND_PRED, _onehot(HAND_PRED), LABELS, n_boot=10)
    metrics["auc_ovr"]["calc"] = None
    write_metrics_json(path, metrics)
    assert json.loads(path.read_text(encoding="utf-8"))["auc_ovr"]["calc"] is None


def test_metrics_json_refuses_what_is_not_a_metrics_file_without_leaving_a_file(tmp_path):
    path = tmp_path / "metrics.json"
    metrics = classification_metrics(HAND_TRUE, HAND_PRED, _onehot(HAND_PRED), LABELS, n_boot=10)
    with pytest.raises(ConfigError, match="metrics.json: ci95: Field required"):
        write_metrics_json(path, {k: v for k, v in metrics.items() if k != "ci95"})
    with pytest.raises(ConfigError, match="metrics.json: typo: Extra inputs"):
        write_metrics_json(path, {**metrics, "typo": 1})
    assert list(tmp_path.iterdir()) == []


def test_metrics_json_refuses_numpy_scalars_and_nan_without_leaving_a_file(tmp_path):
    path = tmp_path / "metrics.json"
    with pytest.raises(TypeError, match="metrics.json.*not JSON-serialisable"):
        write_metrics_json(path, {"n": np.int64(3)})
    with pytest.raises(ValueError, match="metrics.json"):
        write_metrics_json(path, {"accuracy": float("nan")})
    assert list(tmp_path.iterdir()) == []


# --- predictions.csv ----------------------------------------------------------------------


def test_predictions_table_rows():
    proba = np.array([[0.1, 0.7, 0.2], [0.5, 0.25, 0.25]])
    rows = predictions_table(["mdb001", "mdb002"], [0, 2], [1, 0], proba, LABELS)
    assert rows == [
        {"image_id": "mdb001", "true": "normal", "pred": "mass", "p_normal": 0.1,
         "p_mass": 0.7, "p_calc": 0.2},
        {"image_id": "mdb002", "true": "calc", "pred": "normal", "p_normal": 0.5,
         "p_mass": 0.25, "p_calc": 0.25},
    ]  # fmt: skip


def test_predictions_csv_header_and_six_decimals(tmp_path):
    proba = np.array([[0.1, 0.7, 0.2], [1 / 3, 1 / 3, 1 / 3]])
    path = write_predictions_csv(
        tmp_path / "p.csv", ["mdb001", "mdb002"], [0, 2], [1, 0], proba, LABELS
    )
    assert path.read_text(encoding="utf-8").splitlines() == [
        "image_id,true,pred,p_normal,p_mass,p_calc",
        "mdb001,normal,mass,0.100000,0.700000,0.200000",
        "mdb002,calc,normal,0.333333,0.333333,0.333333",
    ]


def test_predictions_csv_round_trip(tmp_path):
    rng = np.random.default_rng(5)
    y_true, y_pred = _noisy_predictions(40, 0.6, seed=6)
    proba = rng.dirichlet(np.ones(3), 40)
    ids = [f"mdb{i:03d}" for i in range(1, 41)]
    path = write_predictions_csv(tmp_path / "predictions.csv", ids, y_true, y_pred, proba, LABELS)
    back = read_predictions_csv(path)
    assert back.labels == tuple(LABELS)
    assert back.image_ids == tuple(ids)
    np.testing.assert_array_equal(back.y_true, y_true)
    np.testing.assert_array_equal(back.y_pred, y_pred)
    np.testing.assert_allclose(back.proba, proba, atol=5e-7)


def test_json_confusion_matrix_agrees_with_csv_counts(tmp_path):
    y_true, y_pred = _noisy_predictions(60, 0.7, seed=8)
    proba = _onehot(y_pred)
    ids = [f"mdb{i:03d}" for i in range(60)]
    write_predictions_csv(tmp_path / "predictions.csv", ids, y_true, y_pred, proba, LABELS)
    report = classification_metrics(y_true, y_pred, proba, LABELS, groups=np.arange(60) // 2)
    write_metrics_json(tmp_path / "metrics.json", report)

    with open(tmp_path / "predictions.csv", encoding="utf-8") as handle:
        lines = [line.rstrip("\n").split(",") for line in handle][1:]
    pairs = collections.Counter((true, pred) for _, true, pred, *_ in lines)
    cm = json.loads((tmp_path / "metrics.json").read_text(encoding="utf-8"))["confusion_matrix"]
    for i, true in enumerate(LABELS):
        for j, pred in enumerate(LABELS):
            assert cm[i][j] == pairs[(true, pred)]
    back = read_predictions_csv(tmp_path / "predictions.csv")
    again = classification_metrics(back.y_true, back.y_pred, back.proba, back.labels, n_boot=10)
    assert again["confusion_matrix"] == cm


# --- bad inputs ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("y_true", "y_pred", "proba", "labels", "message"),
    [
        ([0, 1], [0, 1], np.ones((2, 1)), ["normal"], "at least 2 classes"),
        ([0, 1], [0, 1], np.ones((2, 2)), ["normal", "normal"], "unique"),
        ([0, 1], [0, 1], np.ones((2, 2)), ["normal", ""], "non-empty strings"),
        ([0.0, 1.0], [0, 1], np.ones((2, 3)), LABELS, "y_true must hold integer"),
        ([0, 3], [0, 1], np.ones((2, 3)), LABELS, "y_true holds class index 3"),
        ([0, 1], [0, -1], np.ones((2, 3)), LABELS, "y_pred holds class index -1"),
        ([[0, 1]], [0, 1], np.ones((2, 3)), LABELS, "one-dimensional"),
        ([], [], np.ones((0, 3)), LABELS, "empty"),
        ([0, 1], [0], np.ones((2, 3)), LABELS, "y_pred has 1 entries"),
        ([0, 1], [0, 1], np.ones((2, 2)), LABELS, r"shape \(N, C\) = \(2, 3\)"),
        ([0, 1], [0, 1], np.array([[0.5, np.nan, 0.5]] * 2), LABELS, "NaN"),
    ],
)
def test_report_rejects_bad_inputs(y_true, y_pred, proba, labels, message):
    with pytest.raises(ValueError, match=message):
        classification_metrics(y_true, y_pred, proba, labels, n_boot=10)


def test_report_rejects_groups_of_wrong_length():
    with pytest.raises(ValueError, match="one entry per image"):
        classification_metrics([0, 1], [0, 1], np.ones((2, 3)), LABELS, groups=[0])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_classes": 3, "n_boot": 0}, "n_boot"),
        ({"n_classes": 3, "n_boot": True}, "n_boot"),
        ({"n_classes": 3, "level": 1.0}, "level"),
        ({"n_classes": 0}, "n_classes"),
    ],
)
def test_bootstrap_rejects_bad_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        patient_bootstrap_ci([0, 1], [0, 1], **kwargs)


@pytest.mark.parametrize(
    ("cm", "message"),
    [
        (np.ones((2, 2), dtype=int), r"shape \(3, 3\)"),
        (np.array([[1, 0, 0], [0, -1, 0], [0, 0, 1]]), "non-negative integer"),
        (np.eye(3) * 0.5, "non-negative integer"),
    ],
)
def test_per_class_metrics_rejects_bad_matrices(cm, message):
    with pytest.raises(ValueError, match=message):
        per_class_metrics(cm, LABELS)


def test_predictions_table_rejects_wrong_number_of_ids():
    with pytest.raises(ValueError, match="image_ids has 1 entries"):
        predictions_table(["mdb001"], [0, 1], [0, 1], np.ones((2, 3)), LABELS)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty file"),
        ("id,true,pred,p_normal,p_mass\n", "header"),
        ("image_id,true,pred,p_normal\nmdb001,normal,normal,1.0\n", "header"),
        ("image_id,true,pred,p_normal,x_mass\n", "header"),
        ("image_id,true,pred,p_normal,p_mass\n", "no prediction rows"),
        ("image_id,true,pred,p_normal,p_mass\nmdb001,normal,mass,0.5\n", "line 2: 4 fields"),
        ("image_id,true,pred,p_normal,p_mass\nmdb001,calc,mass,0.5,0.5\n", "line 2: true 'calc'"),
        ("image_id,true,pred,p_normal,p_mass\nmdb001,mass,x,0.5,0.5\n", "line 2: pred 'x'"),
        ("image_id,true,pred,p_normal,p_mass\nmdb001,mass,mass,0.5,abc\n", "'abc' is not a number"),
        ("image_id,true,pred,p_normal,p_mass\nmdb001,mass,mass,0.5,inf\n", "'inf' is not finite"),
    ],
)
def test_read_predictions_csv_rejects_malformed_files(tmp_path, text, message):
    path = tmp_path / "predictions.csv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError, match=message) as info:
        read_predictions_csv(path)
    assert "predictions.csv" in str(info.value)


def test_read_predictions_csv_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_predictions_csv(tmp_path / "absent.csv")
