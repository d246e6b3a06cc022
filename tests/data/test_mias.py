from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pickle
import tarfile

import numpy as np
import pytest

from mammo_ray.data import archive
from mammo_ray.data.mias import load_mias
from mammo_ray.data.mias_info import (
    CLASS_CODES,
    EXCLUDE,
    LABEL_SCHEMES,
    LABELS,
    InfoRow,
    MiasRecord,
    RoiCircle,
    image_label,
    parse_info,
    patient_id,
)
from mammo_ray.data.pgm import encode_pgm, read_pgm_header
from mammo_ray.errors import ConfigError, MiasFormatError
from tests.data.mias_factory import (
    DEFAULT_LABELS,
    DEFAULT_ROWS,
    DEFAULT_SHAPE,
    info_text,
    mias_files,
    synthetic_image,
    write_mias,
)

SHAPE = DEFAULT_SHAPE


def _load(path, **kwargs):
    return load_mias(path, image_shape=kwargs.pop("image_shape", SHAPE), **kwargs)


def _with_rows(tmp_path, rows, name="mias"):
    """A directory dataset whose Info.txt has ``rows``, with one image per film they name."""
    return write_mias(tmp_path / name, mias_files(rows))


# Info.txt


def test_parse_info_skips_the_header_and_keeps_every_row():
    text = info_text()
    rows = parse_info(text, "Info.txt")
    assert len(rows) == len(DEFAULT_ROWS)
    first_line = text.splitlines().index(DEFAULT_ROWS[0]) + 1
    assert rows[0] == InfoRow("mdb001", first_line, "G", "CIRC", "B", 20.0, 45.0, 8.0)


def test_parse_info_handles_every_kind_of_row():
    text = (
        "prose\n"
        "mdb002 G NORM \n"
        "mdb059 F CIRC B\n"
        "mdb233 G CALC M *NOTE 3*\n"
        "  mdb239 D CALC M 645 755 40   \n"
        "mdb239 D CALC M 567 808 25\n"
    )
    rows = parse_info(text, "Info.txt")
    assert rows == (
        InfoRow("mdb002", 2, "G", "NORM", None),
        InfoRow("mdb059", 3, "F", "CIRC", "B"),
        InfoRow("mdb233", 4, "G", "CALC", "M"),
        InfoRow("mdb239", 5, "D", "CALC", "M", 645.0, 755.0, 40.0),
        InfoRow("mdb239", 6, "D", "CALC", "M", 567.0, 808.0, 25.0),
    )


@pytest.mark.parametrize(
    ("row", "problem"),
    [
        ("mdb001 X CIRC B 1 2 3", "unknown background tissue 'X'"),
        ("mdb001 G BLOB B 1 2 3", "unknown class 'BLOB'"),
        ("mdb001 G CIRC Q 1 2 3", "unknown severity 'Q'"),
        ("mdb001 G CIRC", "CIRC row has no severity"),
        ("mdb001 G", "expected at least 3 columns, got 2"),
        ("mdbX01 G NORM", "reference 'mdbX01' is not mdbNNN"),
        ("mdb001 G NORM B", "a NORM row has 3 columns"),
        ("mdb001 G CIRC B 12 40", "expected 'x y radius' or '\\*NOTE 3\\*'"),
        ("mdb001 G CIRC B 12 4a 3", "expected 'x y radius'"),
        ("mdb001 G CIRC B *NOTE 4*", "expected 'x y radius'"),
        ("mdb001 G CIRC B 12 40 0", "radius must be positive, got 0"),
    ],
)
def test_bad_info_row_names_the_file_and_line(row, problem):
    with pytest.raises(MiasFormatError, match=rf"^x/Info\.txt: line 3: .*{problem}"):
        parse_info(f"header\n\n{row}\n", "x/Info.txt")


def test_bad_info_row_fails_loading_and_names_the_member(tmp_path):
    rows = [*DEFAULT_ROWS]
    rows[4] = "mdb004 D NORX "
    path = write_mias(tmp_path / "m.zip", {**mias_files(), "Info.txt": info_text(rows).encode()})
    line = info_text(rows).splitlines().index(rows[4]) + 1
    with pytest.raises(MiasFormatError, match=rf"m\.zip:Info\.txt: line {line}: unknown class"):
        _load(path)


def test_rows_of_one_film_must_agree_on_tissue(tmp_path):
    path = _with_rows(tmp_path, ["mdb003 D CALC M 14 40 4", "mdb003 F CALC M 22 22 5"])
    with pytest.raises(MiasFormatError, match=r"Info\.txt: line \d+: mdb003 has tissue 'F' here"):
        _load(path)


@pytest.mark.parametrize(
    ("rows", "other"),
    [
        (["mdb003 D NORM", "mdb003 D CIRC B 14 40 4"], "CIRC"),
        (["mdb003 D CALC M 14 40 4", "mdb003 D NORM"], "CALC"),
        (["mdb003 D NORM", "mdb003 D NORM"], "NORM"),
    ],
)
def test_a_film_listed_as_normal_and_as_something_else_is_rejected(tmp_path, rows, other):
    path = _with_rows(tmp_path, rows)
    with pytest.raises(
        MiasFormatError,
        match=rf"Info\.txt: line \d+: mdb003 is listed as NORM here but as {other} on line \d+",
    ):
        _load(path)


def test_centre_outside_the_image_is_an_error(tmp_path):
    path = _with_rows(tmp_path, ["mdb001 G CIRC B 20 64 8"])
    with pytest.raises(MiasFormatError, match=r"centre \(20, 64\) lies outside the 64x64 image"):
        _load(path)


# records and labels


def test_records_under_the_paper_scheme(tmp_path):
    dataset = _load(write_mias(tmp_path / "mias"))
    assert {r.image_id: r.label for r in dataset.records} == DEFAULT_LABELS["paper"]
    assert [r.image_id for r in dataset.records] == sorted(DEFAULT_LABELS["paper"])
    assert dataset.excluded == ()
    by_id = {r.image_id: r for r in dataset.records}
    assert by_id["mdb011"].classes == ("SPIC", "CALC")
    assert by_id["mdb011"].severity == "M"
    assert by_id["mdb005"] == MiasRecord("mdb005", 3, "mass", "F", "B", ("CIRC",), ())
    assert by_id["mdb007"].rois == () and by_id["mdb007"].severity == "M"
    assert by_id["mdb002"].severity is None and by_id["mdb002"].rois == ()
    assert len(by_id["mdb003"].rois) == 2


def test_strict_mass_excludes_films_whose_only_findings_are_arch_or_asym(tmp_path):
    dataset = _load(write_mias(tmp_path / "mias"), scheme="strict_mass")
    assert {r.image_id: r.label for r in dataset.records} == DEFAULT_LABELS["strict_mass"]
    assert dataset.excluded == ("mdb009", "mdb010")
    assert "mdb009" not in dataset.members
    with pytest.raises(KeyError, match="'mdb009' is excluded by the scheme"):
        dataset.read_image("mdb009")


@pytest.mark.parametrize(
    ("classes", "scheme", "label"),
    [
        (["NORM"], "paper", "normal"),
        (["CIRC", "CALC"], "paper", "calc"),
        (["CALC", "SPIC"], "strict_mass", "calc"),
        (["ARCH"], "paper", "mass"),
        (["ASYM"], "strict_mass", None),
        (["ARCH", "ASYM"], "strict_mass", None),
        (["ARCH", "MISC"], "strict_mass", "mass"),
        (["NORM", "CIRC"], "paper", "mass"),
    ],
)
def test_label_precedence_is_calc_then_mass_then_normal(classes, scheme, label):
    assert image_label(classes, scheme) == label


def test_every_scheme_maps_every_class_code():
    for mapping in LABEL_SCHEMES.values():
        assert set(mapping) == set(CLASS_CODES)
        assert set(mapping.values()) <= {*LABELS, EXCLUDE}
    assert LABELS == ("normal", "mass", "calc")


def test_unknown_scheme_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="unknown label scheme 'loose'"):
        _load(write_mias(tmp_path / "mias"), scheme="loose")


def test_patient_ids_pair_left_and_right_films():
    assert [patient_id(f"mdb{n:03d}") for n in (1, 2, 3, 4, 321, 322)] == [1, 1, 2, 2, 161, 161]


def test_roi_centres_are_flipped_from_the_bottom_left_origin(tmp_path):
    dataset = _load(write_mias(tmp_path / "mias"))
    record = next(r for r in dataset.records if r.image_id == "mdb001")
    assert record.rois == (RoiCircle(row=63 - 45, col=20, radius=8),)
    image = dataset.read_image("mdb001")
    assert image[18, 20] >= 230 and image[63 - 18, 20] < 230


def test_roi_flip_uses_the_mias_height_when_the_shape_is_not_checked(tmp_path):
    path = _with_rows(tmp_path, ["mdb001 G CIRC B 535 425 197"])
    dataset = load_mias(path, image_shape=None)
    assert dataset.records[0].rois == (RoiCircle(row=598, col=535, radius=197),)
    assert dataset.read_image("mdb001").shape == SHAPE


def test_record_round_trips_through_json(tmp_path):
    dataset = _load(write_mias(tmp_path / "mias"))
    for record in dataset.records:
        assert MiasRecord.from_dict(json.loads(json.dumps(record.to_dict()))) == record


def test_record_from_dict_rejects_bad_data():
    good = MiasRecord("mdb001", 1, "mass", "G", "B", ("CIRC",), (RoiCircle(1, 2, 3),)).to_dict()
    with pytest.raises(ValueError, match="record keys"):
        MiasRecord.from_dict({**good, "extra": 1})
    with pytest.raises(ValueError, match="label 'tumour' is not one of"):
        MiasRecord.from_dict({**good, "label": "tumour"})
    with pytest.raises(ValueError, match="tissue 'Z'"):
        MiasRecord.from_dict({**good, "tissue": "Z"})
    with pytest.raises(ValueError, match="severity 'X'"):
        MiasRecord.from_dict({**good, "severity": "X"})
    with pytest.raises(ValueError, match="class codes"):
        MiasRecord.from_dict({**good, "classes": []})


# storage


@pytest.mark.parametrize(
    ("name", "folder"),
    [("copy", "all-mias"), ("a.tar.gz", ""), ("a.tgz", "all-mias"), ("a.tar", ""), ("a.zip", "")],
)
def test_every_storage_gives_identical_records_and_pixels(tmp_path, name, folder):
    reference = _load(write_mias(tmp_path / "mias"))
    dataset = _load(write_mias(tmp_path / name, folder=folder))
    assert dataset.records == reference.records
    images = {r.image_id: image for r, image in dataset.iter_images()}
    assert list(images) == [r.image_id for r in reference.records]
    for record, image in reference.iter_images():
        assert image.dtype == np.uint8 and image.shape == SHAPE
        np.testing.assert_array_equal(images[record.image_id], image)
        np.testing.assert_array_equal(image, synthetic_image(record.image_id))


def test_16bit_films_decode_like_their_8bit_originals(tmp_path):
    dataset = _load(write_mias(tmp_path / "m16.tar.gz", mias_files(maxval=65535)))
    for record, image in dataset.iter_images():
        np.testing.assert_array_equal(image, synthetic_image(record.image_id))


def test_iter_pgm_bytes_reads_a_tar_gz_in_one_pass(tmp_path, monkeypatch):
    path = write_mias(tmp_path / "a.tar.gz")
    dataset = _load(path)
    opened = []
    real_open = tarfile.open

    def counting_open(*args, **kwargs):
        opened.append(args)
        return real_open(*args, **kwargs)

    monkeypatch.setattr(archive.tarfile, "open", counting_open)
    pairs = list(dataset.iter_pgm_bytes())
    assert len(opened) == 1
    assert [r.image_id for r, _ in pairs] == [r.image_id for r in dataset.records]
    assert pairs[0][1] == mias_files()["mdb001.pgm"]


def test_iter_pgm_bytes_yields_the_requested_films_once(tmp_path):
    dataset = _load(write_mias(tmp_path / "a.zip"))
    ids = [r.image_id for r, _ in dataset.iter_pgm_bytes(["mdb007", "mdb002", "mdb007"])]
    assert ids == ["mdb002", "mdb007"]
    with pytest.raises(KeyError, match="'mdb099' is not an image of"):
        list(dataset.iter_pgm_bytes(["mdb099"]))


def test_no_ids_read_nothing(tmp_path, monkeypatch):
    dataset = _load(write_mias(tmp_path / "a.tar.gz"))
    monkeypatch.setattr(archive.tarfile, "open", None)
    assert list(dataset.iter_images([])) == []


def test_dataset_pickles_for_worker_processes(tmp_path):
    dataset = _load(write_mias(tmp_path / "a.tar.gz"))
    copy = pickle.loads(pickle.dumps(dataset))
    assert copy == dataset
    np.testing.assert_array_equal(copy.read_image("mdb003"), dataset.read_image("mdb003"))


def test_loading_does_not_decode_images(tmp_path):
    files = mias_files()
    files["mdb004.pgm"] = b"garbage"
    dataset = _load(write_mias(tmp_path / "a.tar.gz", files))
    assert len(dataset.records) == 12
    assert dataset.read_image("mdb002").shape == SHAPE


def test_truncated_pgm_fails_when_read_naming_the_member(tmp_path):
    files = mias_files()
    files["mdb004.pgm"] = files["mdb004.pgm"][:-10]
    dataset = _load(write_mias(tmp_path / "a.tar.gz", files))
    with pytest.raises(MiasFormatError, match=r"a\.tar\.gz:mdb004\.pgm: truncated PGM raster"):
        list(dataset.iter_images())


def test_malformed_pgm_fails_when_read_naming_the_file(tmp_path):
    files = {**mias_files(), "mdb004.pgm": b"P6\n64 64\n255\n" + bytes(64 * 64 * 3)}
    dataset = _load(write_mias(tmp_path / "mias", files))
    with pytest.raises(MiasFormatError, match=r"mias/mdb004\.pgm: not a binary PGM image"):
        list(dataset.iter_pgm_bytes())


def test_wrong_image_size_is_an_error_naming_the_member(tmp_path):
    files = {**mias_files(), "mdb006.pgm": encode_pgm(np.zeros((32, 48), np.uint8))}
    dataset = _load(write_mias(tmp_path / "a.zip", files))
    with pytest.raises(
        MiasFormatError, match=r"a\.zip:mdb006\.pgm: image is 48x32 pixels, expected 64x64"
    ):
        dataset.read_image("mdb006")


def test_image_shape_none_skips_the_size_check(tmp_path):
    files = {**mias_files(), "mdb006.pgm": encode_pgm(np.zeros((32, 48), np.uint8))}
    dataset = load_mias(write_mias(tmp_path / "a.zip", files), image_shape=None)
    assert dataset.read_image("mdb006").shape == (32, 48)


@pytest.mark.parametrize("shape", [(64,), (64, 0), (64.0, 64)])
def test_bad_image_shape_is_rejected(tmp_path, shape):
    with pytest.raises(ValueError, match="image_shape must be"):
        load_mias(write_mias(tmp_path / "mias"), image_shape=shape)


def test_missing_info_txt_is_an_error(tmp_path):
    files = mias_files()
    del files["Info.txt"]
    path = write_mias(tmp_path / "noinfo.tar.gz", files)
    with pytest.raises(MiasFormatError, match=r"noinfo\.tar\.gz: no Info\.txt at the top level"):
        _load(path)


def test_info_txt_in_several_folders_is_ambiguous(tmp_path):
    write_mias(tmp_path / "two", folder="a")
    write_mias(tmp_path / "two", folder="b")
    with pytest.raises(MiasFormatError, match=r"several folders hold Info\.txt: a/, b/"):
        _load(tmp_path / "two")


def test_info_row_without_its_image_is_an_error(tmp_path):
    files = mias_files()
    del files["mdb008.pgm"]
    path = write_mias(tmp_path / "a.tar", folder="all-mias", files=files)
    with pytest.raises(
        MiasFormatError,
        match=r"a\.tar:all-mias/Info\.txt: line \d+: mdb008 is listed but all-mias/mdb008\.pgm",
    ):
        _load(path)


def test_image_without_info_row_is_left_out_with_a_warning(tmp_path):
    files = {**mias_files(), "mdb013.pgm": encode_pgm(np.zeros(SHAPE, np.uint8))}
    path = write_mias(tmp_path / "a.zip", files)
    with pytest.warns(
        UserWarning, match=r"a\.zip:mdb013\.pgm: no row in Info\.txt; image left out"
    ):
        dataset = _load(path)
    assert "mdb013" not in {r.image_id for r in dataset.records}


def test_pgm_with_another_name_is_ignored_with_a_warning(tmp_path):
    files = {**mias_files(), "scan.pgm": encode_pgm(np.zeros(SHAPE, np.uint8))}
    with pytest.warns(UserWarning, match=r"scan\.pgm: not a MIAS image name"):
        dataset = _load(write_mias(tmp_path / "mias", files))
    assert len(dataset.records) == 12


# fingerprint


def test_archive_fingerprint_is_the_blake2b_of_its_bytes_and_stable(tmp_path):
    path = write_mias(tmp_path / "a.tar.gz")
    first, second = _load(path), _load(path, scheme="strict_mass")
    assert first.fingerprint == second.fingerprint
    assert first.fingerprint == hashlib.blake2b(path.read_bytes(), digest_size=16).hexdigest()


def test_archive_fingerprint_changes_when_one_byte_changes(tmp_path):
    path = write_mias(tmp_path / "a.tar")
    before = _load(path).fingerprint
    pgm = mias_files()["mdb005.pgm"]
    raster = read_pgm_header(pgm, "mdb005.pgm")[3]
    data = bytearray(path.read_bytes())
    data[data.index(pgm) + raster + 70] ^= 1
    path.write_bytes(bytes(data))
    after = _load(path)
    assert after.fingerprint != before
    changed = after.read_image("mdb005") != synthetic_image("mdb005")
    assert np.argwhere(changed).tolist() == [[1, 6]]


def test_directory_fingerprint_follows_info_and_image_size_and_mtime(tmp_path):
    path = write_mias(tmp_path / "mias")
    before = _load(path).fingerprint
    assert _load(path).fingerprint == before
    image = path / "mdb002.pgm"
    stat = image.stat()
    os.utime(image, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    touched = _load(path).fingerprint
    assert touched != before
    info = path / "Info.txt"
    info.write_bytes(info.read_bytes().replace(b"Synthetic", b"synthetic"))
    assert _load(path).fingerprint not in (before, touched)


def test_dataset_is_frozen(tmp_path):
    dataset = _load(write_mias(tmp_path / "mias"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        dataset.scheme = "strict_mass"


@pytest.mark.parametrize("name", ["mias.tar.gz", "mias.zip", "mias-dir"])
def test_dataset_fingerprint_matches_load_mias_without_reading_images(tmp_path, name):
    from mammo_ray.data.mias import dataset_fingerprint

    path = write_mias(tmp_path / name, mias_files())
    assert dataset_fingerprint(path) == load_mias(path, image_shape=DEFAULT_SHAPE).fingerprint
