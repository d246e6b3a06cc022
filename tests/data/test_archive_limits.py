"""Bounded archives (issue 8, items 3 and 4): limits checked from member headers."""

from __future__ import annotations

import gzip
import io
import subprocess
import sys
import tarfile
import zipfile

import pytest

from mammo_ray.data.archive import (
    LIMITS_ENV,
    ArchiveLimits,
    list_members,
    read_members,
    storage_format,
)
from mammo_ray.data.mias import load_mias
from mammo_ray.errors import ArchiveError
from tests.data.mias_factory import mias_files, write_archive, write_mias


def _tar_claiming(path, claimed: int):
    """A .tar.gz of a few KB whose one header, Info.txt's, claims ``claimed`` bytes (GNU
    base-256 size field)."""
    info = tarfile.TarInfo("Info.txt")
    info.size = claimed
    header = info.tobuf(format=tarfile.GNU_FORMAT, encoding="utf-8", errors="surrogateescape")
    path.write_bytes(gzip.compress(header + b"\0" * 4096))
    return path


@pytest.mark.timeout(30)
def test_a_header_claiming_a_terabyte_fails_at_once_naming_archive_and_member(tmp_path):
    """Before the limits, the tar stream seeked ~0.7 s per claimed GB: 1 TB spun for minutes."""
    path = _tar_claiming(tmp_path / "bomb.tar.gz", 1 << 40)
    with pytest.raises(
        ArchiveError,
        match=r"bomb\.tar\.gz: member 'Info\.txt' is 1,048,576\.0 MB, over the 128 MB limit",
    ):
        list_members(path, "tar")
    with pytest.raises(ArchiveError, match="over the 128 MB limit"):
        load_mias(path)


@pytest.mark.parametrize("suffix", [".tar.gz", ".zip"])
def test_a_member_over_the_size_limit_is_refused_before_it_is_read(tmp_path, suffix):
    path = write_archive(tmp_path / f"a{suffix}", {"Info.txt": b"i", "big.pgm": bytes(3 << 20)})
    limits = ArchiveLimits(max_member_mb=2)
    with pytest.raises(
        ArchiveError,
        match=r"member 'big\.pgm' is 3\.0 MB, over the 2 MB limit per file "
        r"\(raise it with \$MAMMO_RAY_MAX_MEMBER_MB\)",
    ):
        list_members(path, storage_format(path), limits)
    with pytest.raises(ArchiveError, match="'big.pgm' is 3.0 MB"):
        list(read_members(path, storage_format(path), ["big.pgm"], limits))


def test_a_directory_file_over_the_limit_is_refused_when_read(tmp_path):
    (tmp_path / "big.pgm").write_bytes(bytes(3 << 20))
    (tmp_path / "Info.txt").write_bytes(b"info")
    limits = ArchiveLimits(max_member_mb=2)
    assert len(list_members(tmp_path, "directory", limits)) == 2
    assert list(read_members(tmp_path, "directory", ["Info.txt"], limits)) == [
        ("Info.txt", b"info")
    ]
    with pytest.raises(ArchiveError, match="'big.pgm' is 3.0 MB, over the 2 MB limit"):
        list(read_members(tmp_path, "directory", ["big.pgm"], limits))


@pytest.mark.parametrize("suffix", [".tar", ".zip"])
def test_member_count_and_total_size_are_bounded(tmp_path, suffix):
    members = {f"f{i}.pgm": bytes(600) for i in range(5)}
    path = write_archive(tmp_path / f"a{suffix}", members)
    fmt = storage_format(path)
    with pytest.raises(
        ArchiveError,
        match=r"more than 3 members \(at 'f3\.pgm'; raise the limit with \$MAMMO_RAY_MAX_MEMBERS\)",
    ):
        list_members(path, fmt, ArchiveLimits(max_members=3))
    with pytest.raises(
        ArchiveError, match=r"members add up to more than 1e-06 GB uncompressed \(at 'f1\.pgm'"
    ):
        list_members(path, fmt, ArchiveLimits(max_total_gb=1e-6))
    assert len(list_members(path, fmt, ArchiveLimits(max_members=5))) == 5


def test_limits_come_from_the_environment_and_bad_values_are_named():
    env = {LIMITS_ENV["max_member_mb"]: "0.5", LIMITS_ENV["max_members"]: "10"}
    assert ArchiveLimits.from_env(env) == ArchiveLimits(max_member_mb=0.5, max_members=10)
    assert ArchiveLimits.from_env({}) == ArchiveLimits()
    with pytest.raises(ArchiveError, match=r"\$MAMMO_RAY_MAX_MEMBERS: 'lots' is not a number"):
        ArchiveLimits.from_env({LIMITS_ENV["max_members"]: "lots"})
    with pytest.raises(ArchiveError, match="max_total_gb must be positive, got -1.0"):
        ArchiveLimits.from_env({LIMITS_ENV["max_total_gb"]: "-1"})


def test_the_default_limits_fit_mias_with_room_to_spare():
    limits = ArchiveLimits()
    assert limits.max_member_mb >= 20 * 1.0  # a MIAS film is 1 MB
    assert limits.max_members >= 100 * 323  # 322 films and Info.txt
    assert limits.max_total_gb >= 100 * 0.33  # MIAS uncompressed


def test_an_environment_limit_reaches_every_command(tmp_path, monkeypatch):
    path = write_mias(tmp_path / "mias.tar.gz", mias_files(shape=(1024, 1024)))
    monkeypatch.setenv(LIMITS_ENV["max_member_mb"], "0.5")
    result = subprocess.run(
        [sys.executable, "-m", "mammo_ray.data", "summary", "--data", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1, result.stderr
    assert "mias.tar.gz: member 'mdb001.pgm' is 1.0 MB, over the 0.5 MB limit" in result.stderr


@pytest.mark.timeout(120)
def test_a_gzip_bomb_member_is_refused_without_filling_memory(tmp_path):
    """A 300 MB member of zeros (a 1.4 MB .tar.gz) is refused from its header: the reading
    process grows by far less than the member (before the limits, by about 2.2x of it)."""
    member = 300 << 20
    path = tmp_path / "bomb.tar.gz"
    with tarfile.open(path, mode="w:gz", compresslevel=1) as archive:
        info = tarfile.TarInfo("mdb001.pgm")
        info.size = member
        archive.addfile(info, _Zeros(member))
    script = (
        "import resource, sys\n"
        "from pathlib import Path\n"
        "from mammo_ray.data.archive import read_members\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "try:\n"
        "    list(read_members(Path(sys.argv[1]), 'tar', ['mdb001.pgm']))\n"
        "except Exception as exc:\n"
        "    print(type(exc).__name__, exc)\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(path)], capture_output=True, text=True, timeout=110
    )
    message, grown_kb = result.stdout.strip().splitlines()
    assert message.startswith("ArchiveError") and "'mdb001.pgm' is 300.0 MB" in message
    assert int(grown_kb) * 1024 < member / 10


class _Zeros(io.RawIOBase):
    """``size`` zero bytes, read in chunks (the member is never held in memory whole)."""

    def __init__(self, size: int):
        self.left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        n = min(len(buffer), self.left)
        buffer[:n] = bytes(n)
        self.left -= n
        return n


def test_zip_directory_entries_do_not_count(tmp_path):
    path = tmp_path / "a.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("folder/", b"")
        archive.writestr("folder/a.pgm", b"a")
    assert [m.name for m in list_members(path, "zip", ArchiveLimits(max_members=1))] == [
        "folder/a.pgm"
    ]
