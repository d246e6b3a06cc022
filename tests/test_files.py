"""Tests of mammo_ray.files (whole-or-absent writes) and of the doctests of the shared modules."""

from __future__ import annotations

import doctest

import numpy as np
import pytest

import mammo_ray.cli
import mammo_ray.config
import mammo_ray.files
import mammo_ray.process
from mammo_ray.files import atomic_path, write_json_atomic, write_text_atomic


def test_write_replaces_the_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "deep" / "out.txt"
    write_text_atomic(path, "old")
    assert write_text_atomic(path, "new") == path
    assert path.read_text() == "new"
    assert [p.name for p in path.parent.iterdir()] == ["out.txt"]


def test_a_failing_block_keeps_the_old_file_and_removes_the_temporary(tmp_path):
    path = tmp_path / "out.txt"
    path.write_text("old")
    with pytest.raises(RuntimeError, match="crash"), atomic_path(path) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_json_that_cannot_be_serialised_writes_nothing(tmp_path):
    path = tmp_path / "out.json"
    with pytest.raises(TypeError):
        write_json_atomic(path, {"n": np.int64(3)})
    assert list(tmp_path.iterdir()) == []
    write_json_atomic(path, {"n": 3})
    assert path.read_text() == '{\n  "n": 3\n}'


@pytest.mark.parametrize(
    "module", [mammo_ray.cli, mammo_ray.config, mammo_ray.files, mammo_ray.process]
)
def test_doctests(module):
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0
