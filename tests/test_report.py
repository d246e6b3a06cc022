from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pandas as pd
import pytest

from mammo_ray.cli import run_cli
from mammo_ray.errors import ConfigError
from mammo_ray.report.cells import validation_accuracy_series
from mammo_ray.report.document import main, write_report
from mammo_ray.report.figures import CONFUSION_MATRIX_NAME, FIGURE6_NAME, MAX_LIME_FIGURES
from mammo_ray.report.inputs import load_inputs
from mammo_ray.report.paper import PAPER_BACKBONES, PAPER_TABLE2, PAPER_TABLE3, PAPER_TABLE4
from mammo_ray.report.sections import build_report
from mammo_ray.report.selection import SELECTION_FIGURE
from tests.report_fixtures import LIME_IMAGES, make_trial, write_search_dir

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
IMAGE_LINK = re.compile(r"!\[[^\]]*\]\(([^)]+)\)")


def _section(markdown: str, heading: str) -> str:
    """Text from the ``## `` heading that starts with ``heading`` to the next one."""
    match = re.search(rf"^## {re.escape(heading)}.*?(?=^## |\Z)", markdown, re.M | re.S)
    assert match, f"no section {heading!r}"
    return match.group(0)


def _rows(section: str) -> dict[str, list[str]]:
    """First Markdown table of a section: first cell -> the other cells (unescaped)."""
    lines: list[str] = []
    for line in section.splitlines():
        if line.startswith("|"):
            lines.append(line)
        elif lines:
            break
    table: dict[str, list[str]] = {}
    for line in lines[2:]:
        cells = [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line)[1:-1]]
        table[cells[0]] = cells[1:]
    return table


@pytest.fixture
def report(tmp_path) -> tuple[Path, str]:
    storage = write_search_dir(tmp_path / "search")
    out = write_report(storage, tmp_path / "out" / "report.md")
    return out, out.read_text(encoding="utf-8")


def test_table3_uses_best_trial_by_search_metric_and_validation_numbers(report):
    _, text = report
    rows = _rows(_section(text, "Table 3"))
    # t_res_a wins on balanced accuracy (0.85) though t_res_b has the higher accuracy (0.95)
    assert rows["resnet18 (ResNet-18)"] == [
        "t_res_a", "89.00", "88.00", "87.00", "90.00", "98.89", "98.89", "98.9", "98.91",
    ]  # fmt: skip
    assert rows["densenet121 (DenseNet)"][:5] == ["t_dense", "74.00", "73.00", "72.00", "75.00"]
    assert rows["mnasnet_100 (NasNet, stand-in)"][4:] == [
        "55.00",
        "94.78",
        "94.78",
        "94.78",
        "94.87",
    ]
    assert rows["mobilenetv2_100 (MobileNet-V2)"][:5] == ["not run", "—", "—", "—", "—"]
    assert rows["vgg16_bn (VGG)"][0] == "not run (1 failed)"
    # the best model's TEST row: cm [[5,1,0],[0,3,0],[1,0,1]]
    test = rows["resnet18: best model, TEST split"]
    precision = 100 * (5 / 6 + 3 / 4 + 1 / 1) / 3
    recall = 100 * (5 / 6 + 3 / 3 + 1 / 2) / 3
    assert test[0] == "t_res_a"
    assert test[1:5] == [f"{precision:.2f}", f"{recall:.2f}", test[3], f"{100 * 9 / 11:.2f}"]
    assert "VALIDATION" in _section(text, "Table 3")


def test_table4_holds_the_best_validation_accuracy_per_cell(report):
    _, text = report
    rows = _rows(_section(text, "Table 4"))
    resnet = rows["resnet18 (ResNet-18)"]
    # NSNA, paper, NSWA, paper, WSNA, paper, WSWA, paper
    assert resnet == ["70.00", "96.83", "—", "97.78", "85.00", "98.2", "95.00", "98.91"]
    assert rows["densenet121 (DenseNet)"][6] == "75.00"  # augment.mode online counts as aug
    assert rows["mnasnet_100 (NasNet, stand-in)"][2] == "55.00"
    assert rows["vgg16_bn (VGG)"] == ["—", "93.13", "—", "93.9", "—", "94.34", "—", "95.69"]
    assert "Ablation not run" not in text


def test_search_without_ablation_factors_says_not_run(tmp_path):
    storage = write_search_dir(tmp_path / "s", ablation=False)
    text = write_report(storage).read_text(encoding="utf-8")
    table4 = _section(text, "Table 4")
    assert "Ablation not run" in table4
    assert _rows(table4)["resnet18 (ResNet-18)"][0::2] == ["—"] * 4


def test_every_image_link_resolves_to_a_png(report):
    out, text = report
    links = [unquote(link) for link in IMAGE_LINK.findall(text)]
    assert f"report_figures/{FIGURE6_NAME}" in links
    assert f"report_figures/{CONFUSION_MATRIX_NAME}" in links
    lime = [link for link in links if "/lime/" in link]
    assert len(lime) == MAX_LIME_FIGURES < len(LIME_IMAGES)
    for link in links:
        path = out.parent / link
        assert path.read_bytes()[:8] == PNG_SIGNATURE, link


def test_confusion_matrix_is_drawn_when_the_search_left_no_png(tmp_path):
    storage = write_search_dir(tmp_path / "s", confusion_png=False)
    out = write_report(storage, tmp_path / "r.md")
    png = tmp_path / "r_figures" / CONFUSION_MATRIX_NAME
    assert png.read_bytes()[:8] == PNG_SIGNATURE
    assert png.stat().st_size > 1000  # a real plot, not the fixture's 4x4 image
    assert f"r_figures/{CONFUSION_MATRIX_NAME}" in out.read_text(encoding="utf-8")


def test_missing_lime_png_is_reported_not_linked(tmp_path):
    storage = write_search_dir(tmp_path / "s")
    (storage / "explain" / "lime_mdb002.png").unlink()
    text = write_report(storage).read_text(encoding="utf-8")
    figure8 = _section(text, "Figure 8")
    assert _rows(figure8)["mdb002"][-1] == "PNG missing"
    assert "lime_mdb002.png" not in figure8
    assert len(IMAGE_LINK.findall(figure8)) == MAX_LIME_FIGURES  # mdb005 takes its place


def test_figure7_per_class_table_in_the_layout_of_table2(report):
    _, text = report
    figure7 = _section(text, "Figure 7")
    rows = _rows(figure7)
    assert rows["normal"] == ["5", "1", "0"]
    assert rows["calc"] == ["1", "0", "1"]
    assert "11 test images, 2 misclassified" in figure7
    table2 = _rows(figure7[figure7.index("| Measure") :])
    # columns: normal, paper normal, mass, paper mass, calc, paper calc
    assert table2["TP"] == ["5", "192", "3", "89", "1", "24"]
    assert table2["FN"] == ["1", "1", "0", "8", "1", "8"]
    assert table2["Recall"][4:] == ["0.500", "0.750"]
    assert table2["DSC"] == ["0.833", "0.652", "0.857", "0.484", "0.667", "0.457"]
    assert "92 test images" in figure7


def test_headline_puts_test_metrics_with_ci_next_to_the_paper(report):
    _, text = report
    headline = _section(text, "Headline")
    assert "Best trial `t_res_a`" in headline
    assert "val_balanced_accuracy` = 85.00 % at epoch 3" in headline
    rows = _rows(headline[headline.index("| Measure") :])
    accuracy = rows["accuracy"]
    assert accuracy[0] == f"{100 * 9 / 11:.2f}"
    lo, hi = (float(v) for v in accuracy[1].split("–"))
    assert lo <= 100 * 9 / 11 <= hi
    assert accuracy[2] == "98.91"
    assert rows["test images"] == ["11", "—", "92"]
    assert "test part of its patient-level split" in headline
    assert "patient bootstrap" in headline


def test_header_names_mlflow_command_and_trial_counts(report):
    _, text = report
    assert "7 (6 finished, 1 failed)" in text
    assert re.search(r"`mlflow ui --backend-store-uri sqlite:////\S+/mlflow\.db`", text)


def test_a_trial_cut_by_the_time_budget_is_counted_and_ignored(tmp_path):
    storage = write_search_dir(tmp_path / "s")
    search = json.loads((storage / "search.json").read_text())
    search["trials"].append(make_trial("t_cut", "densenet121", [], [], status="CUT"))
    (storage / "search.json").write_text(json.dumps(search))
    text = write_report(storage).read_text()
    assert "8 (6 finished, 1 failed, 1 cut by the time budget before their first result)" in text
    assert "t_cut" not in text


def test_a_planned_search_states_its_plan_against_the_measured_trial_times(tmp_path):
    storage = write_search_dir(tmp_path / "s")
    search = json.loads((storage / "search.json").read_text())
    for trial, seconds in zip(search["trials"], [150.0, 300.0, 420.0], strict=False):
        trial["seconds"] = seconds
    search["plan"] = {
        "max_epochs": 2,
        "num_samples": 5,
        "budget_s": 1500.0,
        "expected_trial_s": 390.0,
        "published_s": 156.0,
        "trials_fit": 4.5,
    }
    (storage / "search.json").write_text(json.dumps(search))
    text = write_report(storage).read_text()
    assert (
        "- Plan: up to 5 trials of 2 epochs in the 25-minute budget, from throughput measured "
        "on the machine (a trial 6.5 min on average under ASHA); plan against measured: the "
        "published trial took 2.5 min (planned 2.6); the other 2 trials 6.0 min on average "
        "(planned 6.5 under ASHA)"
    ) in text


@pytest.mark.parametrize("leaky", [False, True])
def test_leaky_warning_only_for_leaky_searches(tmp_path, leaky):
    storage = write_search_dir(tmp_path / "s", leaky=leaky)
    text = write_report(storage).read_text(encoding="utf-8")
    assert ("**Warning: leaky split.**" in text) is leaky
    assert ("Split protocol: `paper`" in text) is leaky


def test_missing_optional_parts_say_not_run(tmp_path):
    storage = write_search_dir(
        tmp_path / "s", best=False, explain=False, audit=False, quality=False
    )
    out = write_report(storage)
    text = out.read_text(encoding="utf-8")
    assert "Test evaluation of the best model: not run." in _section(text, "Headline")
    assert "Test evaluation not run." in _section(text, "Figure 7")
    assert "LIME not run." in _section(text, "Figure 8")
    assert "Leakage audit not run." in _section(text, "Leakage audit")
    assert "Quality table not run." in _section(text, "Enhancement quality")
    assert "TEST split" not in "".join(_rows(_section(text, "Table 3")))
    links = [unquote(link) for link in IMAGE_LINK.findall(text)]
    assert links == [f"report_figures/{SELECTION_FIGURE}", f"report_figures/{FIGURE6_NAME}"]
    assert all((out.parent / link).is_file() for link in links)


def test_failed_trials_are_listed_with_their_error(report):
    _, text = report
    failed = _section(text, "Failed trials")
    assert "`t_vgg` (vgg16_bn)" in failed
    assert "  CUDA out of memory | tried to allocate 2 GiB" in failed
    assert "```text" in failed


def test_audit_and_quality_tables(report):
    _, text = report
    audit = _rows(_section(text, "Leakage audit"))
    assert audit["paper"] == [
        "paper", "yes", "52", "87.50 [75.00–95.00]", "80.00 [70.00–90.00]", "75.00", "21",
        "21", "0",
    ]  # fmt: skip
    assert audit["patient"][1] == "no" and audit["patient"][6] == "0"
    section = _section(text, "Leakage audit")
    folds = _rows(section[section.index("| Folds") :])
    assert folds == {
        "paper (image-level folds)": ["2/3", "2/3", "4"],
        "patient (grouped folds)": ["0/3", "0/3", "0"],
    }
    quality = _section(text, "Enhancement quality")
    enhancement = _rows(quality)
    assert enhancement["none"][0] == "inf (identity)"
    assert enhancement["paper"][:3] == ["30.125 ± 2.500", "0.875 ± 0.030", "5.000 ± 0.250"]
    dice = _rows(quality[quality.index("| Class") :])
    assert dice["mass"] == ["0.250 ± 0.100", "3", "0.484"]
    assert dice["calc"][-1] == "0.457"
    assert "capped well below 1" in quality


def test_validation_accuracy_series_follows_the_best_trial_of_each_backbone(tmp_path):
    search = json.loads((write_search_dir(tmp_path / "s") / "search.json").read_text())
    series = validation_accuracy_series(search)
    assert list(series) == [
        "resnet18 (ResNet-18)",
        "mnasnet_100 (NasNet, stand-in)",
        "densenet121 (DenseNet)",
    ]
    assert series["resnet18 (ResNet-18)"] == [(1, 50.0), (2, 80.0), (3, 90.0)]


def test_metric_mode_min_picks_the_lowest(tmp_path):
    search = {
        "name": "loss-search",
        "metric": "val_loss",
        "mode": "min",
        "trials": [
            make_trial("a", "resnet18", [0.6], [0.6]),  # val_loss 1.1
            {**make_trial("b", "resnet18", [0.5, 0.7], [0.5, 0.6])},
        ],
        "best_trial": "b",
    }
    search["trials"][1]["best"] = search["trials"][1]["history"][1]  # val_loss 0.55
    text = build_report(search, None, None, None, None, "figs")
    assert _rows(_section(text, "Table 3"))["resnet18 (ResNet-18)"][0] == "b"
    assert "`val_loss` = 0.5500 at epoch 2" in text


def test_build_report_of_a_search_with_no_trials_does_not_crash():
    search = {"name": "empty", "metric": "val_balanced_accuracy", "trials": []}
    text = build_report(search, None, None, None, None, "figs")
    assert "Best trial: not run" in text
    assert "0 (0 finished, 0 failed)" in text
    assert "MLflow: not run" in text
    assert "not run: no finished trial" in _section(text, "Figure 6")
    assert IMAGE_LINK.findall(text) == []


def test_unknown_backbone_gets_its_own_row(tmp_path):
    search = {
        "name": "x",
        "metric": "val_balanced_accuracy",
        "trials": [make_trial("e", "efficientnet_b0", [0.5], [0.4])],
        "best_trial": "e",
    }
    rows = _rows(_section(build_report(search, None, None, None, None, "f"), "Table 3"))
    assert rows["efficientnet_b0"][:5] == ["e", "49.00", "48.00", "47.00", "50.00"]
    assert rows["efficientnet_b0"][5:] == ["—"] * 4


def test_report_is_replaced_atomically(tmp_path):
    storage = write_search_dir(tmp_path / "s")
    out = tmp_path / "r.md"
    out.write_text("old", encoding="utf-8")
    write_report(storage, out)
    assert out.read_text(encoding="utf-8").startswith("# Search report: synthetic-search")
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_load_inputs_reads_every_part(tmp_path):
    inputs = load_inputs(write_search_dir(tmp_path / "s"))
    assert inputs.search["best_trial"] == "t_res_a"
    assert inputs.best_metrics["n"] == 11
    assert len(inputs.lime["images"]) == len(LIME_IMAGES)
    assert [row["arm"] for row in inputs.audit] == ["patient", "paper"]
    assert isinstance(inputs.quality, pd.DataFrame)


def test_paper_constants_cover_the_project_backbones():
    from mammo_ray.learn.models import BACKBONES

    assert set(PAPER_BACKBONES) == set(BACKBONES)
    for key, name in PAPER_BACKBONES.items():
        assert BACKBONES[key].paper_name == name
    assert set(PAPER_TABLE3) == set(PAPER_TABLE4) == set(PAPER_BACKBONES)
    assert PAPER_TABLE3["resnet18"]["accuracy"] == PAPER_TABLE4["resnet18"]["WSWA"] == 98.91
    assert {k: v["dsc"] for k, v in PAPER_TABLE2.items()} == {
        "normal": 0.652,
        "calc": 0.457,
        "mass": 0.484,
    }


def test_cli_writes_report_and_exits_0(tmp_path, capsys):
    storage = write_search_dir(tmp_path / "s")
    out = tmp_path / "o" / "report.md"
    assert run_cli(main, ["--storage", str(storage), "--out", str(out)]) == 0
    assert out.is_file()
    assert str(out) in capsys.readouterr().out


def _break(storage: Path, relative: str, change: str | Callable[[Any], Any] | None) -> Path:
    """Delete the file (None), replace its text (a string) or edit its JSON (a function)."""
    path = storage / relative
    if change is None:
        path.unlink()
    elif isinstance(change, str):
        path.write_text(change, encoding="utf-8")
    else:
        path.write_text(json.dumps(change(json.loads(path.read_text()))), encoding="utf-8")
    return path


def _with(**changes: Any) -> Callable[[dict[str, Any]], dict[str, Any]]:
    return lambda data: {**data, **changes}


def _without(key: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    return lambda data: {k: v for k, v in data.items() if k != key}


def _negative_count(data: dict[str, Any]) -> dict[str, Any]:
    data["confusion_matrix"][1][0] = -1
    return data


@pytest.mark.parametrize(
    ("relative", "change", "message"),
    [
        ("search.json", None, "not found"),
        ("search.json", "{not json", "invalid JSON"),
        ("search.json", "[1, 2]", "Input should be a valid dictionary"),
        ("search.json", _without("metric"), "metric: Field required"),
        ("search.json", _with(trials={}), "trials: Input should be a valid list"),
        ("search.json", _with(trials=[{}]), "trials.0.trial_id: Field required"),
        ("search.json", _with(mode="up"), "mode: Input should be 'min' or 'max'"),
        ("search.json", _with(best_trial="zz"), "best_trial 'zz' is not one of the trials"),
        ("search.json", _with(typo=1), "typo: Extra inputs are not permitted"),
        ("best/metrics.json", "{", "invalid JSON"),
        ("best/metrics.json", _without("n"), "n: Field required"),
        ("best/metrics.json", _with(confusion_matrix=[[1, 0]]), "confusion_matrix must be 3 x 3"),
        ("best/metrics.json", _negative_count, "confusion_matrix.1.0: Input should be greater"),
        ("explain/lime.json", _with(images=3), "images: Input should be a valid list"),
        ("explain/lime.json", _with(images=[1]), "images.0: Input should be a valid dictionary"),
        ("audit.json", '{"arm": "x"}', "Input should be a valid list"),
        ("quality.csv", "a,b\n1,2\n", "missing column(s) name, table"),
    ],
)
def test_cli_bad_input_exits_2_naming_the_file(tmp_path, capsys, relative, change, message):
    storage = write_search_dir(tmp_path / "s")
    path = _break(storage, relative, change)
    assert run_cli(main, ["--storage", str(storage)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path}") and message in err
    assert len(err.strip().splitlines()) == 1
    assert not (storage / "report.md").exists()


def test_cli_storage_that_is_not_a_directory_exits_2(tmp_path, capsys):
    assert run_cli(main, ["--storage", str(tmp_path / "nope")]) == 2
    assert "not a directory" in capsys.readouterr().err


def test_load_inputs_raises_config_error_on_an_empty_quality_csv(tmp_path):
    storage = write_search_dir(tmp_path / "s")
    (storage / "quality.csv").write_text("", encoding="utf-8")
    with pytest.raises(ConfigError, match="quality.csv: cannot read as CSV"):
        load_inputs(storage)


def test_storage_without_optional_folders_still_reports(tmp_path):
    storage = write_search_dir(tmp_path / "s")
    shutil.rmtree(storage / "best")
    shutil.rmtree(storage / "explain")
    text = write_report(storage).read_text(encoding="utf-8")
    assert "LIME not run." in text
    assert "Test evaluation not run." in text


def test_selection_ranks_the_trials_and_plots_selection_against_test(report):
    _, text = report
    section = _section(text, "Selection: the top trials")
    rows = _rows(section)
    assert list(rows)[:3] == ["`t_res_a`", "`t_res_d`", "`t_dense`"]
    assert re.fullmatch(r"\d+\.\d\d \(\d+\.\d\d–\d+\.\d\d\)", rows["`t_res_a`"][-2])
    assert rows["`t_res_d`"][-2:] == ["40.00", "45.00"]
    assert "selection_vs_test.png" in section
    assert "Spearman's rank correlation" in section and "over these 6 trials: +0.43" in section


def _cv_trial(trial_id: str, folds: list[float], test: float) -> dict[str, Any]:
    history = [
        {
            "fold": k,
            "folds": 3,
            "val_balanced_accuracy": value,
            "val_balanced_accuracy_ci_low": value - 0.1,
            "val_balanced_accuracy_ci_high": value + 0.1,
            "val_accuracy": value,
            "cv_mean_balanced_accuracy": value,
            "cv_sd_balanced_accuracy": 0.05,
        }
        for k, value in enumerate(folds, start=1)
    ]
    trial = make_trial(trial_id, "resnet18", [], [], test=test)
    return trial | {"history": history, "best": history[-1]}


def test_a_cross_validated_search_ranks_trials_that_ran_every_fold_first(tmp_path):
    root = write_search_dir(tmp_path / "cv", explain=False, audit=False, quality=False)
    search = json.loads((root / "search.json").read_text())
    search |= {
        "split": "cv",
        "cv": {"folds": 3, "repeats": 1},
        "best_trial": "t_all",
        "trials": [_cv_trial("t_lucky", [0.9], 0.4), _cv_trial("t_all", [0.5, 0.55, 0.6], 0.5)],
    }
    (root / "search.json").write_text(json.dumps(search))
    text = write_report(root).read_text()
    rows = _rows(_section(text, "Selection: the top trials"))
    assert list(rows) == ["`t_all`", "`t_lucky`"]
    assert rows["`t_all`"][1:4] == ["3/3", "60.00 % (50.00–70.00)", "60.00 ± 5.00"]
    assert rows["`t_lucky`"][1] == "1/3"
    assert "out of fold over 3 folds" in _section(text, "Headline")
    assert "fold_<k>/val_accuracy" in _section(text, "Figure 6 analogue")
    assert "cross-validation of every trial" in text


def test_input_modes_and_the_radiomics_baseline_side_by_side(tmp_path):
    root = write_search_dir(tmp_path / "modes", explain=False, audit=False, quality=False)
    search = json.loads((root / "search.json").read_text())
    whole, patch, pair = (
        _cv_trial("t_whole", [0.4, 0.38, 0.36], 0.3),
        _cv_trial("t_patch", [0.45], 0.35),
        _cv_trial("t_pair", [0.5, 0.48, 0.47], 0.33),
    )
    for trial, mode in ((whole, "whole"), (patch, "patch"), (pair, "patch+bilateral")):
        trial["params"]["input.mode"] = mode
        trial["best"] = trial["best"] | {"val_auc_normal_vs_abnormal": 0.6}
    oof = {"n": 206, "balanced_accuracy": 0.41, "auc_normal_vs_abnormal": 0.576}
    search |= {
        "split": "cv",
        "cv": {"folds": 3, "repeats": 1},
        "best_trial": "t_pair",
        "trials": [whole, patch, pair],
        "baselines": {
            "radiomics": {
                "dir": "baseline_radiomics",
                "folds": 3,
                "out_of_fold": oof | {"ci95": {"balanced_accuracy": [0.34, 0.488]}},
                "test": {"balanced_accuracy": 0.29},
            }
        },
    }
    (root / "search.json").write_text(json.dumps(search))
    rows = _rows(_section(write_report(root).read_text(), "Input modes and baselines"))
    assert list(rows) == [
        "whole film (the paper's)",
        "patches, score maps",
        "patches, against the other breast",
        "radiomics (fixed baseline, `baseline_radiomics/`)",
    ]
    assert rows["patches, score maps"] == [
        "`t_patch`",
        "1/3",
        "45.00 (35.00–55.00)",
        "0.600",
        "35.00",
    ]
    assert rows["radiomics (fixed baseline, `baseline_radiomics/`)"] == [
        "—", "3/3", "41.00 (34.00–48.80)", "0.576", "29.00"
    ]  # fmt: skip


def test_a_search_of_whole_film_models_alone_has_no_modes_section(report):
    _, text = report
    assert "## Input modes" not in text


def test_a_search_of_one_fixed_patch_mode_files_its_trials_under_that_mode(tmp_path):
    root = write_search_dir(tmp_path / "fixed", explain=False, audit=False, quality=False)
    search = json.loads((root / "search.json").read_text())
    search |= {
        "split": "cv",
        "cv": {"folds": 3, "repeats": 1},
        "input_mode": "patch",
        "best_trial": "t_a",
        "trials": [_cv_trial("t_a", [0.4, 0.5, 0.45], 0.3)],
    }
    (root / "search.json").write_text(json.dumps(search))
    rows = _rows(_section(write_report(root).read_text(), "Input modes and baselines"))
    assert list(rows) == ["patches, score maps"]
