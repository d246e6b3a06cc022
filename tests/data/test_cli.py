from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pytest

from mammo_ray.cli import run_cli
from mammo_ray.data.__main__ import main
from mammo_ray.data.mias import load_mias
from tests.data.mias_factory import write_mias


def _value(out: str, key: str) -> str:
    """The rest of the first line that starts with ``key`` followed by spaces."""
    match = re.search(rf"^{re.escape(key)} +(\S.*)$", out, flags=re.MULTILINE)
    assert match, f"no line for {key!r} in:\n{out}"
    return match.group(1)


def test_summary_counts_a_synthetic_dataset(tmp_path, capsys):
    path = write_mias(tmp_path / "mias.tar.gz")
    assert run_cli(main, ["summary", "--data", str(path)]) == 0
    out = capsys.readouterr().out
    assert _value(out, "images") == "12"
    assert _value(out, "patients") == "6"
    assert _value(out, "scheme") == "paper"
    assert _value(out, "data") == str(path)
    assert _value(out, "normal") == "5  41.7%"
    assert _value(out, "mass") == "4  33.3%"
    assert _value(out, "calc") == "3  25.0%"
    assert _value(out, "G fatty-glandular") == "4"
    assert _value(out, "M malignant") == "4"
    assert _value(out, "- none (normal)") == "5"
    assert _value(out, "CALC calcification") == "3"


def test_summary_tables_are_aligned(tmp_path, capsys):
    run_cli(main, ["summary", "--data", str(write_mias(tmp_path / "mias"))])
    table = capsys.readouterr().out.split("\n\n")[1].splitlines()
    assert table[0].split() == ["label", "images", "share"]
    assert len({len(line) for line in table}) == 1
    edge = table[0].index("images") + len("images")
    assert all(line[edge - 1].isdigit() and line[edge] == " " for line in table[1:])


def test_summary_with_the_strict_mass_scheme(tmp_path, capsys):
    path = write_mias(tmp_path / "mias.zip")
    assert run_cli(main, ["summary", "--data", str(path), "--scheme", "strict_mass"]) == 0
    out = capsys.readouterr().out
    assert _value(out, "images") == "10"
    assert _value(out, "patients") == "5"
    assert _value(out, "excluded") == "2"
    assert _value(out, "mass") == "2  20.0%"


def test_summary_reads_mammo_ray_data(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MAMMO_RAY_DATA", str(write_mias(tmp_path / "mias")))
    assert run_cli(main, ["summary"]) == 0
    assert _value(capsys.readouterr().out, "images") == "12"


def test_summary_without_data_says_how_to_get_mias(monkeypatch, capsys):
    monkeypatch.delenv("MAMMO_RAY_DATA", raising=False)
    assert run_cli(main, ["summary"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "--data PATH or set MAMMO_RAY_DATA" in err
    assert "python -m mammo_ray.data fetch" in err


def test_summary_of_a_missing_path_exits_2_naming_it(tmp_path, capsys):
    assert run_cli(main, ["summary", "--data", str(tmp_path / "gone.tar.gz")]) == 2
    assert (
        capsys.readouterr().err == f"error: {tmp_path / 'gone.tar.gz'}: no such file or directory\n"
    )


def test_summary_of_a_bad_info_txt_exits_2(tmp_path, capsys):
    files = {"Info.txt": b"mdb001 G CIRC Z 1 2 3\n", "mdb001.pgm": b""}
    path = write_mias(tmp_path / "bad.tar", files)
    assert run_cli(main, ["summary", "--data", str(path)]) == 2
    assert "bad.tar:Info.txt: line 1: unknown severity 'Z'" in capsys.readouterr().err


def test_warnings_are_printed_on_one_line(tmp_path, capsys):
    path = write_mias(tmp_path / "mias")
    (path / "extra.pgm").write_bytes(b"P5\n1 1\n255\n\x00")
    assert run_cli(main, ["summary", "--data", str(path)]) == 0
    assert (
        capsys.readouterr().err
        == f"warning: {path / 'extra.pgm'}: not a MIAS image name (mdbNNN.pgm); ignored\n"
    )


def test_unknown_scheme_is_refused_by_argparse(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["summary", "--data", str(tmp_path), "--scheme", "loose"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'loose'" in capsys.readouterr().err


def test_module_help_explains_both_commands():
    result = subprocess.run(
        [sys.executable, "-m", "mammo_ray.data", "--help"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert "fetch" in result.stdout and "summary" in result.stdout


def test_the_command_line_does_not_import_torch_or_ray():
    code = "import sys, mammo_ray.data.__main__; print(sorted({'torch', 'ray'} & set(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "[]"


@pytest.mark.integration
def test_summary_and_images_of_the_shared_mias_subset(mias_dev_path, capsys):
    assert run_cli(main, ["summary", "--data", str(mias_dev_path)]) == 0
    out = capsys.readouterr().out
    assert _value(out, "images") == "258"
    assert _value(out, "patients") == "129"
    assert _value(out, "normal").split()[0] == "165"
    assert _value(out, "mass").split()[0] == "72"
    assert _value(out, "calc").split()[0] == "21"
    dataset = load_mias(mias_dev_path)
    ids = [r.image_id for r in dataset.records[:3]]
    images = list(dataset.iter_images(ids))
    assert [r.image_id for r, _ in images] == ids
    for _, image in images:
        assert image.shape == (1024, 1024) and image.dtype == np.uint8
        assert 0 < image.mean() < 255
