from __future__ import annotations

import dataclasses
from typing import Literal

import pytest

from mammo_ray.config import (
    apply_overrides,
    config_key,
    flatten_dotted,
    from_dict,
    load_config,
    set_dotted,
    to_dict,
)
from mammo_ray.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Inner:
    window: int = 3
    gain: float = 1.5


@dataclasses.dataclass(frozen=True)
class Outer:
    method: Literal["paper", "none"] = "paper"
    sizes: tuple[int, ...] = (224,)
    inner: Inner = Inner()
    seed: int | None = None

    def __post_init__(self):
        if any(s < 8 for s in self.sizes):
            raise ValueError(f"sizes must be >= 8, got {self.sizes}")


def test_from_dict_builds_nested_frozen_objects():
    cfg = from_dict(Outer, {"method": "none", "sizes": [64, 96], "inner": {"gain": 2}})
    assert cfg == Outer(method="none", sizes=(64, 96), inner=Inner(window=3, gain=2.0))
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.method = "paper"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"methd": "none"}, "unknown key 'methd'"),
        ({"inner": {"windw": 3}}, "config.inner: unknown key 'windw'"),
        ({"method": "fancy"}, "'fancy' is not one of 'paper', 'none'"),
        ({"inner": {"window": 2.5}}, "config.inner.window: expected an integer"),
        ({"inner": {"window": True}}, "expected an integer"),
        ({"sizes": 224}, "config.sizes: expected a list"),
        ({"sizes": [4]}, "sizes must be >= 8"),
    ],
)
def test_from_dict_names_the_bad_key(data, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        from_dict(Outer, data)


def test_overrides_and_yaml_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("method: none\ninner:\n  window: 5\n")
    cfg = load_config(Outer, path, ["inner.gain=0.5", "sizes=[32]", "seed=7"])
    assert cfg == Outer(method="none", sizes=(32,), inner=Inner(5, 0.5), seed=7)
    with pytest.raises(ConfigError, match=r"c.yaml.inner: unknown key 'nope'"):
        load_config(Outer, path, ["inner.nope=1"])
    with pytest.raises(ConfigError, match="expected key=value"):
        apply_overrides({}, ["novalue"])


def test_bad_yaml_files_name_the_file(tmp_path):
    with pytest.raises(ConfigError, match="missing.yaml: config file not found"):
        load_config(Outer, tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="bad.yaml: top level must be a mapping"):
        load_config(Outer, bad)


def test_a_yaml_syntax_error_is_one_line_with_its_position(tmp_path):
    """Before, the message carried PyYAML's seven-line report."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("method: none\ninner: {window: 5\nseed: 3\n")
    with pytest.raises(ConfigError) as error:
        load_config(Outer, bad)
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith(f"{bad}: line 3, column 5: not valid YAML (")


def test_a_config_that_is_not_utf8_is_named(tmp_path):
    """Before, a UnicodeDecodeError traceback."""
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes("method: m\xe9dian\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"latin1\.yaml: not UTF-8 text \(byte 0xe9 at offset 9"):
        load_config(Outer, bad)
    with pytest.raises(ConfigError, match=r": is a directory, not a config file"):
        load_config(Outer, tmp_path)


def test_config_key_is_stable_and_sensitive():
    a = Outer()
    assert config_key(a) == config_key(from_dict(Outer, to_dict(a)))
    assert config_key(a) != config_key(Outer(inner=Inner(window=5)))
    assert config_key(a, "fingerprint-1") != config_key(a, "fingerprint-2")
    assert len(config_key(a)) == 16


def test_flatten_dotted_inverts_set_dotted():
    data = {"a": {"b": 1, "c": {"d": [1, 2]}}, "e": "x"}
    flat = flatten_dotted(data)
    assert flat == {"a.b": 1, "a.c.d": [1, 2], "e": "x"}
    rebuilt: dict = {}
    for key, value in flat.items():
        set_dotted(rebuilt, key, value)
    assert rebuilt == data
