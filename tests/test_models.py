from __future__ import annotations

import http.server
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import safetensors.torch
import timm
import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

import mammo_ray
from mammo_ray.config import from_dict, to_dict
from mammo_ray.errors import CheckpointError, ConfigError, ModelError
from mammo_ray.learn.checkpoint import (
    Checkpoint,
    load_checkpoint,
    load_trained,
    model_from_checkpoint,
    save_checkpoint,
)
from mammo_ray.learn.config import TrainConfig
from mammo_ray.learn.models import (
    BACKBONES,
    GRAY_MEAN,
    GRAY_STD,
    ModelConfig,
    build_model,
    resolve_pretrained,
)

LABELS = ["normal", "mass", "calc"]


@pytest.fixture(scope="module")
def rgb_resnet18_state(tmp_path_factory) -> tuple[Path, dict[str, torch.Tensor]]:
    """A random 3-channel, 1000-class timm resnet18 state dict saved to disk."""
    torch.manual_seed(0)
    state = timm.create_model("resnet18", pretrained=False).state_dict()
    path = tmp_path_factory.mktemp("weights") / "resnet18_rgb.pth"
    torch.save(state, path)
    return path, state


@pytest.fixture
def empty_caches(tmp_path, monkeypatch) -> Path:
    """Point the Hugging Face and torch hub caches at empty folders; clear offline flags."""
    for name in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HUB_OFFLINE", "HF_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path


@pytest.fixture
def local_endpoint():
    """URL of an HTTP server on localhost that answers every request."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def test_gray_constants_are_the_mean_of_imagenet_rgb_statistics():
    assert abs(GRAY_MEAN - sum(IMAGENET_DEFAULT_MEAN) / 3) < 5e-4
    assert abs(GRAY_STD - sum(IMAGENET_DEFAULT_STD) / 3) < 5e-4


@pytest.mark.parametrize("name", list(BACKBONES))
def test_table_entries_match_timm(name):
    spec = BACKBONES[name]
    with torch.device("meta"):
        model = timm.create_model(spec.timm_name, num_classes=3, in_chans=1)
    params_m = sum(p.numel() for p in model.parameters()) / 1e6
    assert spec.params_m == pytest.approx(params_m, abs=0.005)
    assert spec.input_size == timm.models.get_pretrained_cfg(spec.timm_name).input_size[-1]


def test_table_covers_the_papers_five_families():
    assert {spec.paper_name for spec in BACKBONES.values()} == {
        "ResNet-18",
        "DenseNet",
        "VGG",
        "MobileNet-V2",
        "NasNet",
    }
    assert BACKBONES["mnasnet_100"].timm_name == "mnasnet_100"


@pytest.mark.parametrize("name", list(BACKBONES))
def test_every_backbone_maps_a_gray_batch_to_three_logits(name):
    torch.manual_seed(0)
    model = build_model(ModelConfig(backbone=name, pretrained="none")).eval()
    with torch.no_grad():
        logits = model(torch.rand(2, 1, 64, 64))
    assert logits.shape == (2, 3)
    assert torch.isfinite(logits).all()
    with pytest.raises(RuntimeError):
        model(torch.rand(2, 3, 64, 64))


def test_model_config_defaults_and_from_dict():
    assert ModelConfig() == ModelConfig(backbone="resnet18", pretrained="imagenet", drop_rate=0.0)
    cfg = from_dict(ModelConfig, {"backbone": "vgg16_bn", "pretrained": "file:/w.pth"})
    assert cfg.backbone == "vgg16_bn" and cfg.pretrained == "file:/w.pth"


def test_unknown_backbone_is_a_config_error_listing_the_names():
    with pytest.raises(ConfigError, match="'resnet50' is not one of") as info:
        from_dict(ModelConfig, {"backbone": "resnet50"}, where="train.yaml:model")
    message = str(info.value)
    assert message.startswith("train.yaml:model")
    assert all(name in message for name in BACKBONES)


@pytest.mark.parametrize("value", ["imagenet1k", "None", "file:", "file:   ", "File:w.pth", ""])
def test_bad_pretrained_is_a_config_error(value):
    with pytest.raises(ConfigError, match="must be 'imagenet', 'none' or 'file:PATH'"):
        from_dict(ModelConfig, {"pretrained": value})


@pytest.mark.parametrize("value", [-0.1, 1.0, 2])
def test_bad_drop_rate_is_a_config_error(value):
    with pytest.raises(ConfigError, match=r"drop_rate must be in \[0, 1\)"):
        from_dict(ModelConfig, {"drop_rate": value})


def test_drop_rate_reaches_the_model():
    model = build_model(ModelConfig(backbone="mobilenetv2_100", pretrained="none", drop_rate=0.3))
    assert model.drop_rate == 0.3


@pytest.mark.parametrize("num_classes", [0, -1, 2.5, True])
def test_build_model_rejects_bad_num_classes(num_classes):
    with pytest.raises(ValueError, match="num_classes must be a positive integer"):
        build_model(ModelConfig(pretrained="none"), num_classes=num_classes)


def test_none_means_random_weights():
    assert resolve_pretrained(ModelConfig(pretrained="none")) == {"pretrained": False}


def test_imagenet_offline_and_not_cached_fails_fast_with_alternatives(empty_caches, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", _closed_port_url())
    start = time.monotonic()
    with pytest.raises(ModelError) as info:
        build_model(ModelConfig(pretrained="imagenet"))
    assert time.monotonic() - start < 5
    message = str(info.value)
    assert "\n" not in message
    assert "--set model.pretrained=file:PATH" in message
    assert "--set model.pretrained=none" in message
    assert "timm/resnet18" in message and str(empty_caches / "hf" / "hub") in message


def test_imagenet_online_and_not_cached_lets_timm_download(
    empty_caches, monkeypatch, local_endpoint
):
    monkeypatch.setenv("HF_ENDPOINT", local_endpoint)
    kwargs = resolve_pretrained(ModelConfig(pretrained="imagenet"))
    assert kwargs == {"pretrained": True, "cache_dir": str(empty_caches / "hf" / "hub")}


def test_imagenet_with_hf_hub_offline_set_does_not_try_the_network(
    empty_caches, monkeypatch, local_endpoint
):
    monkeypatch.setenv("HF_ENDPOINT", local_endpoint)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelError, match="cannot be reached"):
        resolve_pretrained(ModelConfig(pretrained="imagenet"))


def _hf_cached_file(root: Path) -> Path:
    repo = root / "hf" / "hub" / "models--timm--resnet18.a1_in1k"
    commit = "0123456789abcdef0123456789abcdef01234567"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    return repo / "snapshots" / commit / "model.safetensors"


def _torch_cached_file(root: Path) -> Path:
    return root / "torch" / "hub" / "checkpoints" / "resnet18_a1_0-d63eafa0.pth"


@pytest.mark.parametrize("cached_file", [_hf_cached_file, _torch_cached_file])
def test_imagenet_weights_in_a_local_cache_load_without_network(
    empty_caches, monkeypatch, rgb_resnet18_state, cached_file
):
    monkeypatch.setenv("HF_ENDPOINT", _closed_port_url())
    _, state = rgb_resnet18_state
    path = cached_file(empty_caches)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".safetensors":
        safetensors.torch.save_file(state, str(path))
    else:
        torch.save(state, path)
    kwargs = resolve_pretrained(ModelConfig(pretrained="imagenet"))
    assert kwargs == {"pretrained": True, "pretrained_cfg_overlay": {"file": str(path)}}
    model = build_model(ModelConfig(pretrained="imagenet"))
    assert torch.allclose(model.conv1.weight, state["conv1.weight"].sum(dim=1, keepdim=True))


def test_file_weights_fold_rgb_into_gray_and_get_a_new_head(rgb_resnet18_state):
    path, state = rgb_resnet18_state
    model = build_model(ModelConfig(pretrained=f"file:{path}"))
    assert model.conv1.weight.shape == (64, 1, 7, 7)
    assert torch.allclose(model.conv1.weight, state["conv1.weight"].sum(dim=1, keepdim=True))
    assert torch.equal(model.layer4[1].conv2.weight, state["layer4.1.conv2.weight"])
    assert torch.equal(model.bn1.running_var, state["bn1.running_var"])
    assert model.fc.weight.shape == (3, 512)
    assert not torch.equal(model.fc.weight, state["fc.weight"][:3])


def test_file_weights_with_one_channel_load_unchanged(tmp_path):
    torch.manual_seed(1)
    source = build_model(ModelConfig(pretrained="none"))
    path = tmp_path / "gray.pth"
    torch.save({"state_dict": source.state_dict(), "epoch": 3}, path)
    model = build_model(ModelConfig(pretrained=f"file:{path}"))
    assert torch.equal(model.conv1.weight, source.conv1.weight)


def test_missing_weights_file_is_a_model_error(tmp_path):
    path = tmp_path / "nowhere.pth"
    with pytest.raises(ModelError, match=f"file:{path}: no such file"):
        build_model(ModelConfig(pretrained=f"file:{path}"))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "not a readable PyTorch or safetensors weights file"),
        (b"not a pickle at all" * 8, "not a readable PyTorch or safetensors weights file"),
    ],
)
def test_unreadable_weights_file_is_a_model_error(tmp_path, content, message):
    path = tmp_path / "broken.pth"
    path.write_bytes(content)
    with pytest.raises(ModelError, match=message) as info:
        resolve_pretrained(ModelConfig(pretrained=f"file:{path}"))
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_truncated_weights_file_is_a_model_error(tmp_path, rgb_resnet18_state):
    source, _ = rgb_resnet18_state
    path = tmp_path / "cut.pth"
    path.write_bytes(source.read_bytes()[:100_000])
    with pytest.raises(ModelError, match="cut.pth: not a readable"):
        resolve_pretrained(ModelConfig(pretrained=f"file:{path}"))


def test_weights_file_without_tensors_is_a_model_error(tmp_path):
    path = tmp_path / "meta.pth"
    torch.save({"epoch": 3, "lr": 0.1}, path)
    with pytest.raises(ModelError, match="entry 'epoch' is not a tensor"):
        resolve_pretrained(ModelConfig(pretrained=f"file:{path}"))


def test_densenet_weights_do_not_fit_resnet18(tmp_path):
    with torch.device("meta"):
        state = timm.create_model("densenet121").state_dict()
    path = tmp_path / "densenet121.pth"
    torch.save({k: torch.zeros(v.shape) for k, v in state.items()}, path)
    with pytest.raises(ModelError) as info:
        build_model(ModelConfig(backbone="resnet18", pretrained=f"file:{path}"))
    message = str(info.value)
    assert str(path) in message
    assert "does not fit resnet18: key 'conv1.weight' is missing" in message


def test_weights_with_a_wrong_shape_name_the_key(tmp_path, rgb_resnet18_state):
    _, state = rgb_resnet18_state
    path = tmp_path / "wrong_shape.pth"
    torch.save({**state, "layer2.0.conv1.weight": torch.zeros(128, 64, 5, 5)}, path)
    with pytest.raises(
        ModelError, match=r"key 'layer2.0.conv1.weight' has shape \(128, 64, 5, 5\)"
    ):
        resolve_pretrained(ModelConfig(pretrained=f"file:{path}"))


def test_weights_with_extra_keys_name_the_key(tmp_path, rgb_resnet18_state):
    _, state = rgb_resnet18_state
    path = tmp_path / "extra.pth"
    torch.save({**state, "projector.weight": torch.zeros(4, 4)}, path)
    with pytest.raises(ModelError, match="key 'projector.weight' is not in the model"):
        resolve_pretrained(ModelConfig(pretrained=f"file:{path}"))


def _trained_config(backbone: str = "resnet18") -> dict:
    model = to_dict(ModelConfig(backbone=backbone, pretrained="imagenet", drop_rate=0.1))
    return {"model": model, "train": {"lr": 1e-3, "epochs": 15, "sizes": (224, 224)}}


def test_checkpoint_round_trip_gives_identical_outputs(tmp_path):
    torch.manual_seed(2)
    model = build_model(ModelConfig(pretrained="none", drop_rate=0.1)).eval()
    path = tmp_path / "run" / "best.pt"
    written = save_checkpoint(
        path,
        model,
        config=_trained_config(),
        labels=LABELS,
        preprocess_key="abc123",
        metrics={"val_accuracy": np.float64(0.75), "epoch": 4},
    )
    assert written == path
    assert sorted(p.name for p in path.parent.iterdir()) == ["best.pt"]
    raw = torch.load(path, weights_only=True, map_location="cpu")
    assert raw["package_version"] == mammo_ray.__version__

    ckpt = load_checkpoint(path)
    assert isinstance(ckpt, Checkpoint)
    assert ckpt.labels == LABELS and ckpt.preprocess_key == "abc123"
    assert ckpt.config["train"]["sizes"] == [224, 224]
    assert ckpt.metrics == {"val_accuracy": 0.75, "epoch": 4}
    assert type(ckpt.metrics["val_accuracy"]) is float
    rebuilt = model_from_checkpoint(ckpt)
    assert not rebuilt.training
    x = torch.rand(2, 1, 64, 64)
    with torch.no_grad():
        assert torch.equal(rebuilt(x), model(x))


def test_save_checkpoint_replaces_an_existing_file(tmp_path):
    model = build_model(ModelConfig(backbone="mobilenetv2_100", pretrained="none"))
    path = tmp_path / "last.pt"
    config = _trained_config("mobilenetv2_100")
    save_checkpoint(path, model, config=config, labels=LABELS, preprocess_key="one")
    save_checkpoint(path, model, config=config, labels=LABELS, preprocess_key="two")
    assert load_checkpoint(path).preprocess_key == "two"
    assert load_checkpoint(path).metrics is None
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"metrics": {"confusion": np.zeros((3, 3))}}, "metrics must be plain JSON data"),
        ({"config": {"seed": np.int64(3)}}, "config must be plain JSON data"),
        ({"labels": "normal"}, "labels must be a list of strings"),
        ({"labels": ["normal", 1, "calc"]}, "labels must be a list of strings"),
    ],
)
def test_save_checkpoint_rejects_non_plain_data(tmp_path, kwargs, message):
    model = build_model(ModelConfig(backbone="mobilenetv2_100", pretrained="none"))
    arguments = {"config": _trained_config(), "labels": LABELS, "preprocess_key": "k"}
    with pytest.raises(TypeError, match=message):
        save_checkpoint(tmp_path / "bad.pt", model, **{**arguments, **kwargs})
    assert list(tmp_path.iterdir()) == []


def test_missing_checkpoint_is_a_checkpoint_error(tmp_path):
    path = tmp_path / "none.pt"
    with pytest.raises(CheckpointError, match=f"{path}: checkpoint not found"):
        load_checkpoint(path)


def test_truncated_checkpoint_is_a_checkpoint_error(tmp_path):
    model = build_model(ModelConfig(backbone="mobilenetv2_100", pretrained="none"))
    path = tmp_path / "best.pt"
    save_checkpoint(path, model, config=_trained_config(), labels=LABELS, preprocess_key="k")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match=f"{path}: cannot read checkpoint") as info:
        load_checkpoint(path)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "content",
    [b"ab", b"a\n", b"hello", b"\x80\x02]q\x00.", b"PK\x03\x04rest", bytes(range(256))],
)
def test_text_or_random_bytes_named_model_pt_are_one_line_checkpoint_errors(tmp_path, content):
    """Before, a text file such as ``ab`` ended in ``IndexError: pop from empty list``."""
    path = tmp_path / "model.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=f"{path}: ") as info:
        load_checkpoint(path)
    assert "\n" not in str(info.value)


def test_plain_state_dict_is_not_a_checkpoint(tmp_path, rgb_resnet18_state):
    path, _ = rgb_resnet18_state
    with pytest.raises(CheckpointError, match="not a mammo_ray checkpoint \\(no 'state_dict'\\)"):
        load_checkpoint(path)


def test_checkpoint_with_a_wrong_field_type_is_a_checkpoint_error(tmp_path):
    path = tmp_path / "odd.pt"
    fields = {"state_dict": {}, "config": {}, "preprocess_key": "k", "package_version": "0"}
    torch.save({**fields, "labels": "normal", "metrics": None}, path)
    with pytest.raises(CheckpointError, match="field 'labels' has the wrong type"):
        load_checkpoint(path)


def test_checkpoint_that_does_not_fit_names_the_key():
    state = build_model(ModelConfig(pretrained="none")).state_dict()
    ckpt = Checkpoint(
        state_dict=state,
        config=_trained_config(),
        labels=["normal", "abnormal"],
        preprocess_key="k",
        package_version=mammo_ray.__version__,
        metrics=None,
    )
    with pytest.raises(CheckpointError, match=r"key 'fc.weight' has shape \(3, 512\)"):
        model_from_checkpoint(ckpt)


def test_a_backbone_that_does_not_fit_the_weights_names_the_checkpoint(tmp_path):
    """Before, the message did not say which file was wrong."""
    model = build_model(ModelConfig(backbone="mobilenetv2_100", pretrained="none"))
    path = tmp_path / "best.pt"
    config = to_dict(TrainConfig(model=ModelConfig(backbone="resnet18", pretrained="none")))
    save_checkpoint(path, model, config=config, labels=LABELS, preprocess_key="k")
    with pytest.raises(CheckpointError, match=rf"^{path}: state dict does not fit resnet18 with 3"):
        load_trained(path)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"train": {}}, "no 'model' section"),
        ({"model": {"backbone": "alexnet"}}, "run/model.pt: model: backbone 'alexnet'"),
    ],
)
def test_checkpoint_without_a_valid_model_section_is_a_checkpoint_error(config, message):
    ckpt = Checkpoint({}, config, LABELS, "k", mammo_ray.__version__, None)
    with pytest.raises(CheckpointError, match=message):
        model_from_checkpoint(ckpt, "run/model.pt")
