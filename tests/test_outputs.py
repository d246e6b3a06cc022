"""Output paths are checked before any work (issue 8, item 5): one line, exit 2."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from mammo_ray.__main__ import main
from mammo_ray.errors import ConfigError
from mammo_ray.files import check_writable_dir, check_writable_file

# Every command with an output option, its argv before that option. --data names nothing:
# the output check must come first, before the data, a config or Ray is looked at.
COMMANDS = [
    (["train"], "--out"),
    (["train", "audit"], "--out"),
    (["train"], "--cache"),
    (["evaluate", "--checkpoint", "none.pt"], "--out"),
    (["explain", "--checkpoint", "none.pt"], "--out"),
    (["search"], "--out"),
    (["search"], "--storage"),
    (["preprocess", "run"], "--out"),
    (["data", "fetch"], "--dest"),
]
FILE_COMMANDS = [
    (["preprocess", "quality"], "--out"),
    (["report", "--storage", "nowhere"], "--out"),
]


def _unwritable() -> Path:
    """A folder even root cannot write in (sysfs), or skip."""
    try:
        fd, probe = tempfile.mkstemp(dir="/sys")
    except OSError:
        return Path("/sys/mammo-ray-out")
    os.close(fd)
    os.unlink(probe)
    pytest.skip("/sys is writable here")


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    return err


@pytest.mark.parametrize(("argv", "option"), COMMANDS)
def test_an_output_folder_that_is_a_file_is_one_line_before_any_work(
    tmp_path, capsys, argv, option
):
    """Before: FileExistsError after preprocessing, or NotADirectoryError, with a traceback."""
    existing = tmp_path / "taken.txt"
    existing.write_text("mine")
    data = ["--data", str(tmp_path / "no-data")] if argv[0] != "data" else []
    assert main([*argv, *data, option, str(existing)]) == 2
    assert f"{option} {existing}: exists and is not a directory" in _one_line(capsys)
    assert existing.read_text() == "mine"


@pytest.mark.parametrize(("argv", "option"), COMMANDS + FILE_COMMANDS)
def test_an_unwritable_output_is_one_line_before_any_work(tmp_path, capsys, argv, option):
    """Before: PermissionError, for preprocessing only after all its work."""
    target = _unwritable() / "out"
    data = ["--data", str(tmp_path / "no-data")] if argv[0] not in ("data", "report") else []
    assert main([*argv, *data, option, str(target)]) == 2
    assert f"{option} {target}: cannot write in /sys (Permission denied)" in _one_line(capsys)


@pytest.mark.parametrize(("argv", "option"), FILE_COMMANDS)
def test_an_output_file_that_is_a_folder_is_one_line(tmp_path, capsys, argv, option):
    data = ["--data", str(tmp_path / "no-data")] if argv[0] != "report" else []
    assert main([*argv, *data, option, str(tmp_path)]) == 2
    assert f"{option} {tmp_path}: is a directory; give a file name" in _one_line(capsys)


def test_writable_checks_create_nothing_and_accept_new_nested_folders(tmp_path):
    assert check_writable_dir(tmp_path / "a" / "b", "--out") == tmp_path / "a" / "b"
    assert check_writable_file(tmp_path / "c" / "r.md", "--out") == tmp_path / "c" / "r.md"
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "f").write_text("")
    with pytest.raises(ConfigError, match=rf"--out {tmp_path}/f/sub: {tmp_path}/f is a file"):
        check_writable_dir(tmp_path / "f" / "sub", "--out")


@pytest.mark.parametrize(
    ("argv", "option"),
    [(["search"], "--space"), (["train"], "--config"), (["preprocess", "run"], "--config")],
)
def test_a_space_or_config_that_is_not_utf8_is_one_line(tmp_path, capsys, argv, option):
    """Before: a UnicodeDecodeError traceback."""
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(b"name: \xff\xfe\n")
    argv = [*argv, "--data", str(tmp_path / "no-data"), "--out", str(tmp_path / "o")]
    assert main([*argv, option, str(bad)]) == 2
    assert f"{bad}: not UTF-8 text (byte 0xff at offset 6)" in _one_line(capsys)
