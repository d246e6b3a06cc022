"""Property-based fuzzing of every reader of untrusted input (issue 8): Info.txt text, PGM
headers and rasters, tar and zip member tables and bytes, YAML search spaces and checkpoint
bytes. Every generated case must end in success or the project's one-line error (a
:class:`~mammo_ray.errors.MammoRayError` whose message is one line), never another exception;
each case runs under Hypothesis's deadline, so a reader that spins fails the test.

Derandomized: the same cases run on every machine, so a failure is reproducible. With
``MAMMO_RAY_FUZZ_EXPLORE=1`` the cases are drawn afresh each run (``--hypothesis-seed=N`` to
repeat one), to look for new failures. Case counts (``FUZZ_CASES``) are in the README's
reliability section.
"""

from __future__ import annotations

import io
import os
import tarfile
import tempfile
import zipfile
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from mammo_ray.data.archive import ArchiveLimits, list_members, read_members
from mammo_ray.data.mias_info import build_records, parse_info
from mammo_ray.data.pgm import decode_pgm, encode_pgm
from mammo_ray.errors import MammoRayError
from mammo_ray.learn.checkpoint import load_checkpoint, save_checkpoint
from mammo_ray.search.space import load_search_space
from tests.data.mias_factory import DEFAULT_ROWS, info_text

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:Duplicate name:UserWarning"),
]

FUZZ_CASES = {
    "info": 5000,
    "pgm": 5000,
    "archive_table": 3000,
    "archive_bytes": 4000,
    "yaml_space": 3000,
    "checkpoint": 4000,
}
"""Generated cases per reader, 24,000 in all (about 40 s on a 2-core CPU)."""


def fuzz(name: str) -> Callable:
    """Hypothesis settings of one fuzz target: its case count, a 2 s deadline per case,
    derandomized, no example database."""
    return settings(
        max_examples=FUZZ_CASES[name],
        deadline=timedelta(seconds=2),
        derandomize=not os.environ.get("MAMMO_RAY_FUZZ_EXPLORE"),
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


def ends_cleanly(read: Callable[[], Any]) -> None:
    """Run ``read``: success, or a MammoRayError on one line; anything else fails the test."""
    try:
        read()
    except MammoRayError as exc:
        assert "\n" not in str(exc), f"a multi-line error: {exc}"


def _mutations(data: bytes) -> st.SearchStrategy[bytes]:
    """``data`` truncated, or with up to 8 bytes overwritten, or with bytes inserted."""
    n = len(data)
    truncated = st.integers(0, n).map(lambda k: data[:k])
    flipped = st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, 255)), max_size=8).map(
        lambda edits: _apply(data, edits)
    )
    inserted = st.tuples(st.integers(0, n), st.binary(max_size=64)).map(
        lambda edit: data[: edit[0]] + edit[1] + data[edit[0] :]
    )
    return st.one_of(truncated, flipped, inserted)


def _apply(data: bytes, edits: list[tuple[int, int]]) -> bytes:
    mutable = bytearray(data)
    for position, value in edits:
        mutable[position] = value
    return bytes(mutable)


# --- Info.txt ------------------------------------------------------------------------------

_TOKENS = st.sampled_from(
    ["mdb001", "mdb002", "mdb322", "mdb999", "mdbXYZ", "G", "F", "D", "Q", "NORM", "CIRC",
     "CALC", "SPIC", "MISC", "ARCH", "ASYM", "NORX", "B", "M", "*NOTE", "3*", "0", "535", "-4",
     "1023", "1024", "99999999999", "1e400", "nan", "inf", "12.5", "", "\t", "\u00e9"]
)  # fmt: skip
_INFO_LINES = st.one_of(
    st.lists(_TOKENS, max_size=9).map(" ".join),
    st.sampled_from(DEFAULT_ROWS),
    st.text(max_size=40),
)


@fuzz("info")
@given(st.lists(_INFO_LINES, max_size=12))
@example(["mdb003 D NORM", "mdb003 D CIRC B 14 40 4"])
@example(["mdb001 G CIRC B 535 425 1e999"])
def test_info_txt_text(lines):
    text = info_text(lines)

    def read() -> None:
        rows = parse_info(text, "Info.txt")
        for scheme in ("paper", "abnormal"):
            build_records(rows, scheme, (1024, 1024), "Info.txt")

    ends_cleanly(read)


# --- PGM -----------------------------------------------------------------------------------

_NUMBERS = st.one_of(
    st.integers(-2, 70000).map(str), st.sampled_from(["", "1e3", "9" * 30, "0x10", "+5"])
)
_SPACE = st.sampled_from([" ", "\n", "\t", "\r\n", "  ", "", "#c\n", "# x"])


@st.composite
def _pgm_files(draw: st.DrawFn) -> bytes:
    magic = draw(st.sampled_from([b"P5", b"P2", b"P6", b"", b"P"]))
    header = magic + b"".join(
        (draw(_SPACE) + draw(_NUMBERS)).encode() for _ in range(draw(st.integers(0, 4)))
    )
    header += draw(_SPACE).encode()
    return header + draw(st.binary(max_size=300))


@fuzz("pgm")
@given(st.one_of(_pgm_files(), _mutations(encode_pgm(np.arange(64).reshape(8, 8) % 5, 4))))
@example(b"P5\n2 1\n4\n\x02\x09")
@example(b"P5 999999999 999999999 255 ")
def test_pgm_bytes(data):
    ends_cleanly(lambda: decode_pgm(data, "x.pgm"))


# --- tar and zip archives ------------------------------------------------------------------

_NAMES = st.one_of(
    st.sampled_from(["Info.txt", "mdb001.pgm", "all-mias/Info.txt", "../evil", "/abs",
                     "C:\\win", "a\\..\\b", "./x", "dir/", "", "a//b", "\u00e9.pgm"]),
    st.text(min_size=1, max_size=20),
)  # fmt: skip
LIMITS = ArchiveLimits(max_member_mb=1, max_members=20, max_total_gb=4 / 1024)


def _tar_bytes(members: list[tuple[str, int]]) -> bytes:
    """A tar whose headers carry ``(name, claimed size)``; contents shorter than claimed."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as archive:
        for name, size in members:
            info = tarfile.TarInfo(name)
            data = bytes(min(size, 1024))
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    raw = bytearray(buffer.getvalue())
    _claim_sizes(raw, [size for _, size in members])
    return bytes(raw)


def _claim_sizes(raw: bytearray, sizes: list[int]) -> None:
    """Rewrite each header's size field (GNU base-256 for large values) and its checksum."""
    offset = 0
    for size in sizes:
        header = raw[offset : offset + 512]
        if len(header) < 512 or header[:100].strip(b"\0") == b"":
            return
        real = int(header[124:136].rstrip(b"\0 ") or b"0", 8)
        field = size.to_bytes(11, "big") if size >= 8**11 else f"{size:011o}".encode() + b"\0"
        raw[offset + 124 : offset + 136] = (b"\x80" + field)[:12] if size >= 8**11 else field
        raw[offset + 148 : offset + 156] = b" " * 8
        checksum = sum(raw[offset : offset + 512])
        raw[offset + 148 : offset + 156] = f"{checksum:06o}\0 ".encode()
        offset += 512 + -(-real // 512) * 512


def _zip_bytes(members: list[tuple[str, int]]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, size in members:
            info = zipfile.ZipInfo(name or "x")
            archive.writestr(info, bytes(min(size, 1024)))
    return buffer.getvalue()


def _read_archive(data: bytes, suffix: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"fuzz{suffix}"
        path.write_bytes(data)
        fmt = "zip" if suffix == ".zip" else "tar"
        members = list_members(path, fmt, LIMITS)
        for _ in read_members(path, fmt, [m.name for m in members], LIMITS):
            pass


_TABLES = st.lists(
    st.tuples(_NAMES, st.one_of(st.integers(0, 2048), st.integers(0, 1 << 60))), max_size=25
)


@fuzz("archive_table")
@given(_TABLES, st.sampled_from([".tar", ".zip"]))
@example([("Info.txt", 1 << 40)], ".tar")
@example([("a", 10)] * 21, ".zip")
@example([(".", 1 << 60)], ".tar")
def test_archive_member_tables(members, suffix):
    maker = _zip_bytes if suffix == ".zip" else _tar_bytes
    try:
        data = maker(members)
    except (ValueError, UnicodeEncodeError, OverflowError):
        return  # the library will not write such a member: nothing to read
    ends_cleanly(lambda: _read_archive(data, suffix))


_VALID_TAR = _tar_bytes([("Info.txt", 40), ("mdb001.pgm", 300)])
_VALID_ZIP = _zip_bytes([("Info.txt", 40), ("mdb001.pgm", 300)])


@fuzz("archive_bytes")
@given(
    st.one_of(
        st.tuples(_mutations(_VALID_TAR), st.just(".tar")),
        st.tuples(_mutations(_VALID_ZIP), st.just(".zip")),
        st.tuples(st.binary(max_size=2048), st.sampled_from([".tar", ".tar.gz", ".zip"])),
    )
)
def test_archive_bytes(case):
    data, suffix = case
    ends_cleanly(lambda: _read_archive(data, suffix))


# --- YAML search spaces --------------------------------------------------------------------

_KEYS = st.sampled_from(
    ["base", "fixed", "params", "grid", "search", "enqueue_published", "model.backbone",
     "optim.lr", "choice", "loguniform", "uniform", "int", "when", "metric", "mode",
     "num_samples", "max_epochs", "time_budget_s", "max_failures", "grace_period", "epochs",
     "input_size", "model.pretrained", "unknown", "published.yaml"]
)  # fmt: skip
_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 10**6), st.floats(allow_nan=True),
    st.sampled_from(["resnet18", "none", "max", "min", "asha", "tpe", "smoke.yaml", ""]),
    st.text(max_size=10),
)  # fmt: skip
_YAML_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(_KEYS, inner, max_size=5)),
    max_leaves=20,
)


@fuzz("yaml_space")
@given(
    st.one_of(
        st.dictionaries(_KEYS, _YAML_VALUES, max_size=6).map(yaml.safe_dump),
        st.text(max_size=200),
        st.binary(max_size=100).map(lambda b: b.decode("latin-1")),
    )
)
@example("params: {optim.lr: {loguniform: [1, 0]}}")
@example("search: {time_budget_s: -1, max_failures: -1}")
@example("a: [1, 2\nb: 3")
@example("base: null\nfixed:\n  input_size: []\n")
def test_yaml_search_spaces(text):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "space.yaml"
        path.write_text(text, encoding="utf-8", errors="surrogateescape")
        ends_cleanly(lambda: load_search_space(path))


# --- checkpoint bytes ----------------------------------------------------------------------


def _checkpoint_bytes() -> bytes:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.pt"
        save_checkpoint(
            path, torch.nn.Linear(2, 3), config={"model": {}}, labels=["a"], preprocess_key="k"
        )
        return path.read_bytes()


_VALID_CHECKPOINT = _checkpoint_bytes()


@fuzz("checkpoint")
@given(st.one_of(_mutations(_VALID_CHECKPOINT), st.binary(max_size=512)))
@example(b"ab")
@example(b"hello")
@example(_apply(_VALID_CHECKPOINT, [(198, 75)]))
def test_checkpoint_bytes(data):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.pt"
        path.write_bytes(data)
        ends_cleanly(lambda: load_checkpoint(path))


def test_the_fuzz_targets_read_valid_input():
    """The seeds the mutations start from are valid: a fuzz test that only ever saw garbage
    would prove nothing about the success path."""
    assert len(parse_info(info_text(DEFAULT_ROWS), "Info.txt")) == len(DEFAULT_ROWS)
    assert decode_pgm(encode_pgm(np.full((2, 2), 3), 4), "x.pgm").tolist() == [[191, 191]] * 2
    for data, suffix in ((_VALID_TAR, ".tar"), (_VALID_ZIP, ".zip")):
        _read_archive(data, suffix)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.pt"
        path.write_bytes(_VALID_CHECKPOINT)
        assert load_checkpoint(path).labels == ["a"]
    with pytest.raises(MammoRayError):
        _read_archive(_tar_bytes([("Info.txt", 1 << 40)]), ".tar")
