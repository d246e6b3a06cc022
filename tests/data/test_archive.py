from __future__ import annotations

import tarfile
import zipfile

import pytest

from mammo_ray.data.archive import (
    Member,
    list_members,
    member_source,
    read_members,
    storage_format,
)
from mammo_ray.data.mias import load_mias
from mammo_ray.errors import ArchiveError
from tests.data.mias_factory import mias_files, write_archive

FILES = {"Info.txt": b"info", "b.pgm": b"bb", "sub/c.pgm": b"ccc"}


@pytest.mark.parametrize(
    ("name", "fmt"),
    [("a.tar.gz", "tar"), ("A.TGZ", "tar"), ("a.tar", "tar"), ("a.zip", "zip")],
)
def test_storage_format_follows_the_suffix(tmp_path, name, fmt):
    (tmp_path / name).write_bytes(b"")
    assert storage_format(tmp_path / name) == fmt
    assert storage_format(tmp_path) == "directory"


def test_storage_format_override_is_for_files_with_other_names(tmp_path):
    part = tmp_path / "all-mias.tar.gz.part"
    part.write_bytes(b"")
    assert storage_format(part, "tar") == "tar"
    with pytest.raises(ValueError, match="archive_format must be 'tar' or 'zip', got 'rar'"):
        storage_format(part, "rar")


def test_missing_path_is_an_error(tmp_path):
    with pytest.raises(ArchiveError, match=r"nothing\.tar\.gz: no such file or directory"):
        storage_format(tmp_path / "nothing.tar.gz")


def test_unsupported_file_type_is_an_error(tmp_path):
    (tmp_path / "mias.rar").write_bytes(b"Rar!")
    with pytest.raises(ArchiveError, match=r"mias\.rar: unsupported file type"):
        storage_format(tmp_path / "mias.rar")


@pytest.mark.parametrize("suffix", [".tar.gz", ".tar", ".zip"])
def test_members_are_listed_and_read_in_memory_in_storage_order(tmp_path, suffix):
    members = {"./Info.txt": b"info", "b.pgm": b"bb", "sub//c.pgm": b"ccc"}
    path = write_archive(tmp_path / f"a{suffix}", members)
    fmt = storage_format(path)
    assert list_members(path, fmt) == (
        Member("Info.txt", 4),
        Member("b.pgm", 2),
        Member("sub/c.pgm", 3),
    )
    assert list(read_members(path, fmt, ["sub/c.pgm", "Info.txt"])) == [
        ("Info.txt", b"info"),
        ("sub/c.pgm", b"ccc"),
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"a{suffix}"]


def test_directory_members_include_one_folder_level(tmp_path):
    for name, data in FILES.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(data)
    (tmp_path / "sub" / "deeper").mkdir()
    (tmp_path / "sub" / "deeper" / "d.pgm").write_bytes(b"d")
    assert [m.name for m in list_members(tmp_path, "directory")] == [
        "Info.txt",
        "b.pgm",
        "sub/c.pgm",
    ]
    assert dict(read_members(tmp_path, "directory", ["b.pgm"])) == {"b.pgm": b"bb"}


def test_reading_a_missing_member_is_an_error(tmp_path):
    path = write_archive(tmp_path / "a.tar.gz", FILES)
    with pytest.raises(ArchiveError, match=r"a\.tar\.gz: member 'zz\.pgm' not found"):
        list(read_members(path, "tar", ["zz.pgm", "b.pgm"]))


def test_member_source_names_the_file_or_the_archive_and_member(tmp_path):
    assert member_source(tmp_path, "directory", "a/b.pgm") == str(tmp_path / "a" / "b.pgm")
    assert member_source(tmp_path / "x.zip", "zip", "b.pgm") == f"{tmp_path / 'x.zip'}:b.pgm"


@pytest.mark.parametrize("suffix", [".tar.gz", ".zip"])
@pytest.mark.parametrize("member", ["../evil.pgm", "/abs.pgm", "sub/../../evil.pgm"])
def test_unsafe_member_is_rejected_naming_archive_and_member(tmp_path, suffix, member):
    path = write_archive(tmp_path / f"evil{suffix}", {**mias_files(), member: b"P5"})
    expected = rf"evil{suffix.replace('.', '[.]')}: unsafe member '{member}' would escape"
    with pytest.raises(ArchiveError, match=expected):
        load_mias(path, image_shape=(64, 64))


@pytest.mark.parametrize("member", ["..\\evil.pgm", "C:/evil.pgm"])
def test_windows_style_escaping_zip_member_is_rejected(tmp_path, member):
    path = write_archive(tmp_path / "evil.zip", {"Info.txt": b"", member: b"P5"})
    with pytest.raises(ArchiveError, match="unsafe member"):
        list_members(path, "zip")


@pytest.mark.parametrize("suffix", [".tar.gz", ".tar", ".zip"])
def test_empty_archive_is_an_error(tmp_path, suffix):
    path = write_archive(tmp_path / f"empty{suffix}", {})
    with pytest.raises(ArchiveError, match=rf"empty{suffix.replace('.', '[.]')}: archive is empty"):
        load_mias(path)


def test_archive_of_only_folders_is_empty(tmp_path):
    path = tmp_path / "dirs.tar"
    with tarfile.open(path, "w") as archive:
        info = tarfile.TarInfo("all-mias")
        info.type = tarfile.DIRTYPE
        archive.addfile(info)
    with pytest.raises(ArchiveError, match="archive is empty"):
        list_members(path, "tar")


@pytest.mark.parametrize(("suffix", "kind"), [(".tar.gz", "tar"), (".zip", "zip")])
def test_file_that_is_not_an_archive_is_an_error(tmp_path, suffix, kind):
    path = tmp_path / f"fake{suffix}"
    path.write_bytes(b"<html>not found</html>")
    with pytest.raises(
        ArchiveError, match=rf"fake{suffix.replace('.', '[.]')}: cannot read {kind}"
    ):
        load_mias(path)


def test_truncated_tar_gz_is_an_error(tmp_path):
    path = write_archive(tmp_path / "a.tar.gz", mias_files())
    path.write_bytes(path.read_bytes()[:-200])
    with pytest.raises(ArchiveError, match=r"a\.tar\.gz: cannot read tar archive"):
        list_members(path, "tar")


def test_member_stored_twice_is_an_error(tmp_path):
    path = tmp_path / "twice.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("Info.txt", b"a")
        archive.writestr("./Info.txt", b"b")
    with pytest.raises(ArchiveError, match=r"twice\.zip: member 'Info\.txt' is stored twice"):
        list_members(path, "zip")
