from __future__ import annotations

import numpy as np
import pytest

from mammo_ray.data.pgm import decode_pgm, encode_pgm, read_pgm, read_pgm_header, validate_pgm
from mammo_ray.errors import MiasFormatError


def test_header_with_comments_and_mixed_whitespace():
    data = b"P5 # a comment\n3\t# another\r\n2\n# before maxval\n255\n" + bytes(6)
    width, height, maxval, offset = read_pgm_header(data, "x.pgm")
    assert (width, height, maxval) == (3, 2, 255)
    assert data[offset:] == bytes(6)


def test_header_of_a_mias_sized_file_is_17_bytes():
    assert read_pgm_header(b"P5\n1024 1024\n255\n", "mdb001.pgm") == (1024, 1024, 255, 17)


def test_decode_8bit_is_exact_and_writable():
    image = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    decoded = decode_pgm(encode_pgm(image), "x.pgm")
    assert decoded.dtype == np.uint8 and decoded.shape == (3, 4)
    np.testing.assert_array_equal(decoded, image)
    decoded[0, 0] = 7


def test_decode_16bit_maxval_65535_is_big_endian_and_scaled():
    samples = np.array([[0, 257, 65535], [32768, 256, 1000]], dtype=np.uint16)
    data = b"P5\n3 2\n65535\n" + samples.astype(">u2").tobytes()
    decoded = decode_pgm(data, "x.pgm")
    # round(v * 255 / 65535) = round(v / 257): 32768 / 257 = 127.5019..., 1000 / 257 = 3.89...
    np.testing.assert_array_equal(decoded, [[0, 1, 255], [128, 1, 4]])
    assert decoded.dtype == np.uint8


def test_decode_other_8bit_maxval_is_scaled_and_rounds_halves_up():
    data = b"P5\n4 1\n2\n" + bytes([0, 1, 2, 2])
    # 1 * 255 / 2 = 127.5 -> 128
    np.testing.assert_array_equal(decode_pgm(data, "x.pgm"), [[0, 128, 255, 255]])


def test_16bit_encoding_of_an_8bit_image_decodes_to_it():
    image = np.arange(256, dtype=np.int64).reshape(16, 16)
    stored = (image * 65535 * 2 + 255) // (2 * 255)
    np.testing.assert_array_equal(decode_pgm(encode_pgm(stored, maxval=65535), "x.pgm"), image)


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"P2\n1 1\n255\n\x00", "not a binary PGM image"),
        (b"", "not a binary PGM image"),
        (b"P5\nxx 1\n255\n\x00", "width is 'xx', not a number"),
        (b"P5\n1 -1\n255\n\x00", "height is '-1', not a number"),
        (b"P5\n1 1\n", "missing maxval"),
        (b"P5\n0 1\n255\n", "image size 0x1"),
        (b"P5\n1 1\n0\n\x00", "maxval 0 is outside 1..65535"),
        (b"P5\n1 1\n70000\n\x00\x00", "maxval 70000 is outside 1..65535"),
        (b"P5\n1 1\n255", "maxval must be followed by one whitespace byte"),
        (b"P5\n1 1\n255#c\n\x00", "maxval must be followed by one whitespace byte"),
    ],
)
def test_bad_header_names_the_source_and_the_problem(data, problem):
    with pytest.raises(MiasFormatError, match=rf"^bad\.pgm: .*{problem}"):
        read_pgm_header(data, "bad.pgm")


def test_truncated_raster_is_an_error():
    data = encode_pgm(np.zeros((4, 4), np.uint8))[:-3]
    with pytest.raises(MiasFormatError, match=r"^a\.tar\.gz:mdb001\.pgm: truncated PGM raster: 13"):
        decode_pgm(data, "a.tar.gz:mdb001.pgm")


def test_truncated_16bit_raster_counts_two_bytes_per_sample():
    data = b"P5\n2 2\n65535\n" + bytes(7)
    with pytest.raises(MiasFormatError, match="7 bytes, expected 8"):
        validate_pgm(data, "x.pgm")


def test_trailing_garbage_is_an_error_but_trailing_whitespace_is_not():
    data = encode_pgm(np.full((2, 2), 9, np.uint8))
    assert validate_pgm(data + b"\n \r\n", "x.pgm")[:3] == (2, 2, 255)
    with pytest.raises(MiasFormatError, match=r"^x\.pgm: 3 unexpected bytes after the PGM raster"):
        validate_pgm(data + b"\nP5", "x.pgm")


def test_sample_above_maxval_is_an_error():
    with pytest.raises(MiasFormatError, match="sample value 9 exceeds maxval 4"):
        decode_pgm(b"P5\n2 1\n4\n\x02\x09", "x.pgm")


def test_read_pgm_reads_a_file_and_names_a_missing_one(tmp_path):
    image = np.array([[1, 2], [3, 4]], np.uint8)
    (tmp_path / "a.pgm").write_bytes(encode_pgm(image))
    np.testing.assert_array_equal(read_pgm(tmp_path / "a.pgm"), image)
    with pytest.raises(MiasFormatError, match=r"nope\.pgm: cannot read PGM image"):
        read_pgm(tmp_path / "nope.pgm")


@pytest.mark.parametrize(
    ("image", "maxval", "problem"),
    [
        (np.zeros((2, 2, 3), np.uint8), 255, "non-empty 2-D integer array"),
        (np.zeros((0, 2), np.uint8), 255, "non-empty 2-D integer array"),
        (np.zeros((2, 2), np.float32), 255, "non-empty 2-D integer array"),
        (np.zeros((2, 2), np.uint8), 0, "maxval must be in 1..65535"),
        (np.full((2, 2), 300), 255, "samples must lie in 0..255"),
        (np.full((2, 2), -1), 255, "samples must lie in 0..255"),
    ],
)
def test_encode_rejects_bad_input(image, maxval, problem):
    with pytest.raises(ValueError, match=problem):
        encode_pgm(image, maxval=maxval)
