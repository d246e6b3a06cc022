"""Backbones, pretrained weights and checkpoints: a thin layer over timm.

The paper compares five ImageNet-pretrained families (its Table 3) and keeps ResNet-18.
:data:`BACKBONES` maps the name a config uses to a timm model, the way timm's registry maps
names to builders; :func:`build_model` is the one entry point, and :func:`resolve_pretrained`
turns ``model.pretrained`` into :func:`timm.create_model` arguments or a one-line
:class:`~mammo_ray.errors.ModelError`.

NASNet: timm has no NASNet-Mobile (the 5.3M-parameter, 224 px network of Zoph et al.), only
``nasnetalarge`` (85M parameters at 331 px, far too heavy for the CPU this project must run
on). The table uses ``mnasnet_100`` instead: MnasNet-B1 from the mobile branch of the same
neural-architecture-search line, 224 px, about 3M parameters, ImageNet weights in timm.
Numbers for the "NasNet" row are therefore a stand-in, and reports say so.

Grayscale input: mammograms have one channel, so every model is built with ``in_chans=1``
and takes ``(B, 1, H, W)``. With pretrained weights timm folds the first convolution by
summing its RGB kernels, ``w_gray = w_R + w_G + w_B``, so that a gray image ``x`` gives the
same response as the RGB image ``(x, x, x)`` gave the original network; normalise with
:data:`GRAY_MEAN` and :data:`GRAY_STD`, the means of ImageNet's per-channel statistics. This
keeps the pretrained filters, unlike a new random first layer, and costs a third of the
first-layer compute of repeating the gray channel three times.

Checkpoints are plain dicts saved with :func:`torch.save` and read with
``weights_only=True``: state dict, training config, label names, preprocessing key, package
version and metrics (see :func:`save_checkpoint`).

References
----------
He, Zhang, Ren, Sun, "Deep Residual Learning for Image Recognition", CVPR 2016.
Zoph, Vasudevan, Shlens, Le, "Learning Transferable Architectures for Scalable Image
Recognition", CVPR 2018 (NASNet).
Tan, Chen, Pang, Vasudevan, Sandler, Howard, Le, "MnasNet: Platform-Aware Neural Architecture
Search for Mobile", CVPR 2019.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import tempfile
import threading
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import timm
import torch
from huggingface_hub import constants as hf_constants
from huggingface_hub import try_to_load_from_cache
from safetensors import SafetensorError
from timm.models import get_pretrained_cfg, load_state_dict
from torch import nn

import mammo_ray
from mammo_ray.config import from_dict
from mammo_ray.errors import CheckpointError, ConfigError, ModelError

__all__ = [
    "GRAY_MEAN",
    "GRAY_STD",
    "BackboneSpec",
    "BACKBONES",
    "ModelConfig",
    "resolve_pretrained",
    "build_model",
    "Checkpoint",
    "save_checkpoint",
    "load_checkpoint",
    "model_from_checkpoint",
]

GRAY_MEAN = 0.449
"""Mean of ImageNet's RGB means, (0.485 + 0.456 + 0.406) / 3, for one-channel input."""

GRAY_STD = 0.226
"""Mean of ImageNet's RGB standard deviations, (0.229 + 0.224 + 0.225) / 3."""

_PROBE_TIMEOUT_S = 3.0
_HF_DEFAULT_ENDPOINT = "https://huggingface.co"
_READ_ERRORS = (
    OSError,
    RuntimeError,
    EOFError,
    KeyError,
    ValueError,
    pickle.UnpicklingError,
    SafetensorError,
)


@dataclasses.dataclass(frozen=True)
class BackboneSpec:
    """One supported backbone.

    Attributes
    ----------
    timm_name : the name :func:`timm.create_model` knows; its default pretrained tag gives
        the ``imagenet`` weights.
    paper_name : the row of the paper's Table 3 this backbone reproduces.
    input_size : native (pretraining) input side in pixels.
    params_m : parameters in millions of the model as built here (1 input channel, 3 classes).
    notes : why this timm variant was chosen.
    """

    timm_name: str
    paper_name: str
    input_size: int
    params_m: float
    notes: str


BACKBONES: dict[str, BackboneSpec] = {
    "resnet18": BackboneSpec(
        timm_name="resnet18",
        paper_name="ResNet-18",
        input_size=224,
        params_m=11.17,
        notes="the paper's chosen model (He et al. 2016); timm's resnet18.a1_in1k weights",
    ),
    "densenet121": BackboneSpec(
        timm_name="densenet121",
        paper_name="DenseNet",
        input_size=224,
        params_m=6.95,
        notes="the paper does not name the depth; DenseNet-121 is the common default",
    ),
    "vgg16_bn": BackboneSpec(
        timm_name="vgg16_bn",
        paper_name="VGG",
        input_size=224,
        params_m=134.28,
        notes="VGG-16 with batch norm (torchvision weights); the heaviest backbone by far",
    ),
    "mobilenetv2_100": BackboneSpec(
        timm_name="mobilenetv2_100",
        paper_name="MobileNet-V2",
        input_size=224,
        params_m=2.23,
        notes="MobileNet-V2 at width 1.0",
    ),
    "mnasnet_100": BackboneSpec(
        timm_name="mnasnet_100",
        paper_name="NasNet",
        input_size=224,
        params_m=3.11,
        notes=(
            "stand-in for NASNet-Mobile, which timm lacks: MnasNet-B1 (Tan et al. 2019), a "
            "mobile NAS network of the same size class at 224 px; nasnetalarge is 85M "
            "parameters at 331 px"
        ),
    ),
}


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Which backbone to build and where its starting weights come from.

    Attributes
    ----------
    backbone : a key of :data:`BACKBONES`.
    pretrained : ``imagenet`` (timm's weights: downloaded when online, else the local
        Hugging Face or torch hub cache), ``file:PATH`` (a state dict or timm checkpoint on
        disk, in timm's key layout) or ``none`` (random initialisation).
    drop_rate : dropout before the classifier, in [0, 1).
    """

    backbone: str = "resnet18"
    pretrained: str = "imagenet"
    drop_rate: float = 0.0

    def __post_init__(self) -> None:
        if self.backbone not in BACKBONES:
            known = ", ".join(BACKBONES)
            raise ValueError(f"backbone {self.backbone!r} is not one of {known}")
        if self.pretrained not in ("imagenet", "none") and not (
            self.pretrained.startswith("file:") and self.pretrained[len("file:") :].strip()
        ):
            raise ValueError(
                f"pretrained {self.pretrained!r} must be 'imagenet', 'none' or 'file:PATH'"
            )
        if not 0.0 <= self.drop_rate < 1.0:
            raise ValueError(f"drop_rate must be in [0, 1), got {self.drop_rate}")


def resolve_pretrained(cfg: ModelConfig) -> dict[str, Any]:
    """Turn ``cfg.pretrained`` into keyword arguments of :func:`timm.create_model`.

    * ``none`` gives ``{"pretrained": False}``.
    * ``file:PATH`` reads the file, checks that every tensor but the classifier's fits the
      backbone (the first convolution may have 1 or 3 input channels), and gives
      ``{"pretrained": True, "pretrained_cfg_overlay": {"file": PATH}}``.
    * ``imagenet`` looks for timm's weight file in the Hugging Face cache (the hub id of the
      model's pretrained config, ``model.safetensors`` before ``pytorch_model.bin`` as
      timm's ``load_state_dict_from_hf`` does) and the torch hub cache (the config's URL).
      A cached file is passed as ``file``, so loading needs no network. Otherwise, when the
      download host answers within a few seconds, timm downloads as usual
      (``{"pretrained": True, "cache_dir": ...}``).

    Raises
    ------
    ModelError
        One line naming the problem: a missing, unreadable or misfitting file; or ImageNet
        weights that are neither cached nor downloadable (host unreachable, or
        ``HF_HUB_OFFLINE`` set), with the ``file:PATH`` and ``none`` alternatives.
    """
    if cfg.pretrained == "none":
        return {"pretrained": False}
    if cfg.pretrained == "imagenet":
        return _imagenet_kwargs(cfg.backbone)
    path = Path(cfg.pretrained[len("file:") :].strip()).expanduser()
    _check_weights_file(path, cfg.backbone)
    return {"pretrained": True, "pretrained_cfg_overlay": {"file": str(path)}}


def build_model(cfg: ModelConfig, num_classes: int = 3) -> nn.Module:
    """Build ``cfg.backbone`` with one input channel and a new ``num_classes``-way head.

    The classifier is always freshly initialised (its size differs from the 1000 ImageNet
    classes); pretrained first-convolution weights are folded to one channel by summing the
    RGB kernels (see the module docstring). The model expects ``(B, 1, H, W)`` input
    normalised with :data:`GRAY_MEAN` and :data:`GRAY_STD` and returns ``(B, num_classes)``
    logits.

    Raises
    ------
    ModelError
        When the weights cannot be had (see :func:`resolve_pretrained`) or a download fails.
    ValueError
        When ``num_classes`` is not a positive integer.
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
    spec = BACKBONES[cfg.backbone]
    kwargs = resolve_pretrained(cfg)
    try:
        return timm.create_model(
            spec.timm_name,
            num_classes=num_classes,
            in_chans=1,
            drop_rate=cfg.drop_rate,
            **kwargs,
        )
    except OSError as exc:
        raise ModelError(
            f"model.pretrained={cfg.pretrained}: loading weights for {cfg.backbone} failed "
            f"({_one_line(exc)}); use --set model.pretrained=file:PATH or "
            "--set model.pretrained=none"
        ) from None


@dataclasses.dataclass(frozen=True)
class Checkpoint:
    """The contents of a checkpoint file written by :func:`save_checkpoint`.

    Attributes
    ----------
    state_dict : tensors of the model, on the CPU.
    config : the full training config as plain data; ``config["model"]`` rebuilds the model.
    labels : class names in logit order.
    preprocess_key : key of the preprocessing cache the model was trained on.
    package_version : ``mammo_ray.__version__`` of the writer.
    metrics : plain-data metrics at save time, or None.
    """

    state_dict: dict[str, torch.Tensor]
    config: dict[str, Any]
    labels: list[str]
    preprocess_key: str
    package_version: str
    metrics: dict[str, Any] | None


def save_checkpoint(
    path: str | Path,
    model: nn.Module,
    *,
    config: Mapping[str, Any],
    labels: Sequence[str],
    preprocess_key: str,
    metrics: Mapping[str, Any] | None = None,
) -> Path:
    """Write a checkpoint atomically: a temporary file in the same folder, then ``os.replace``.

    ``config`` and ``metrics`` are stored as plain JSON data (tuples become lists), so the
    file loads with ``torch.load(..., weights_only=True)``; a ``torch.compile`` wrapper is
    unwrapped so the keys match :func:`build_model`. Returns the path written.

    Raises
    ------
    TypeError
        When ``config`` or ``metrics`` holds something that is not plain data (numpy
        arrays and numpy integers included), or ``labels`` are not strings.
    CheckpointError
        When the file cannot be written.
    """
    path = Path(path)
    if isinstance(labels, str) or not all(isinstance(label, str) for label in labels):
        raise TypeError(f"save_checkpoint: labels must be a list of strings, got {labels!r}")
    model = getattr(model, "_orig_mod", model)
    payload = {
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "config": _plain_data(config, "config"),
        "labels": list(labels),
        "preprocess_key": str(preprocess_key),
        "package_version": mammo_ray.__version__,
        "metrics": None if metrics is None else _plain_data(metrics, "metrics"),
    }
    tmp_name = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as handle:
            torch.save(payload, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot write checkpoint ({_one_line(exc)})") from None
    finally:
        if tmp_name is not None and os.path.exists(tmp_name):
            os.unlink(tmp_name)
    return path


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read a checkpoint with ``torch.load(path, weights_only=True, map_location="cpu")``.

    Raises
    ------
    CheckpointError
        Naming ``path``: the file is missing, unreadable or corrupt, or lacks a field of
        :class:`Checkpoint` or has one of the wrong type.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        data = torch.load(path, weights_only=True, map_location="cpu")
    except _READ_ERRORS as exc:
        raise CheckpointError(
            f"{path}: cannot read checkpoint ({type(exc).__name__}: {_one_line(exc)})"
        ) from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: not a mammo_ray checkpoint (holds a {type(data).__name__})")
    checks = {
        "state_dict": lambda v: (
            isinstance(v, dict) and all(isinstance(t, torch.Tensor) for t in v.values())
        ),
        "config": lambda v: isinstance(v, dict),
        "labels": lambda v: isinstance(v, list) and all(isinstance(s, str) for s in v),
        "preprocess_key": lambda v: isinstance(v, str),
        "package_version": lambda v: isinstance(v, str),
        "metrics": lambda v: v is None or isinstance(v, dict),
    }
    for key, check in checks.items():
        if key not in data:
            raise CheckpointError(f"{path}: not a mammo_ray checkpoint (no {key!r})")
        if not check(data[key]):
            raise CheckpointError(f"{path}: checkpoint field {key!r} has the wrong type")
    return Checkpoint(**{key: data[key] for key in checks})


def model_from_checkpoint(ckpt: Checkpoint) -> nn.Module:
    """Rebuild the model of ``ckpt`` and load its weights strictly; returned in eval mode.

    The architecture comes from ``ckpt.config["model"]`` with ``pretrained`` forced to
    ``none`` (the checkpoint holds every weight) and ``len(ckpt.labels)`` classes.

    Raises
    ------
    CheckpointError
        When the config has no valid ``model`` section or the state dict does not fit,
        naming the first mismatching key.
    """
    section = ckpt.config.get("model")
    if not isinstance(section, dict):
        raise CheckpointError("checkpoint config has no 'model' section")
    try:
        cfg = from_dict(ModelConfig, {**section, "pretrained": "none"}, where="checkpoint model")
    except ConfigError as exc:
        raise CheckpointError(str(exc)) from None
    model = build_model(cfg, num_classes=len(ckpt.labels))
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    mismatch = _first_mismatch(expected, ckpt.state_dict)
    if mismatch is not None:
        raise CheckpointError(
            f"checkpoint state dict does not fit {cfg.backbone} with "
            f"{len(ckpt.labels)} classes: {mismatch}"
        )
    model.load_state_dict(ckpt.state_dict, strict=True)
    return model.eval()


def _imagenet_kwargs(backbone: str) -> dict[str, Any]:
    """create_model arguments for timm's default weights of ``backbone`` (cache, then network)."""
    spec = BACKBONES[backbone]
    pretrained_cfg = get_pretrained_cfg(spec.timm_name)
    hub_id = pretrained_cfg.hf_hub_id if pretrained_cfg is not None else None
    url = pretrained_cfg.url if pretrained_cfg is not None else None
    if not hub_id and not url:
        raise ModelError(
            f"model.backbone={backbone}: timm has no ImageNet weights for {spec.timm_name}; "
            "use --set model.pretrained=file:PATH or --set model.pretrained=none"
        )
    cached = _cached_weights(hub_id, pretrained_cfg.hf_hub_filename, url)
    if cached is not None:
        return {"pretrained": True, "pretrained_cfg_overlay": {"file": cached}}
    if hub_id:
        # timm prefers the hub whenever a hub id exists (timm/models/_builder.py).
        endpoint = os.environ.get("HF_ENDPOINT", _HF_DEFAULT_ENDPOINT).rstrip("/")
        cache_dir, source = _hf_hub_cache(), f"Hugging Face hub {hub_id}"
        online = not _hf_offline_mode() and _reachable(endpoint)
    else:
        parts = urlparse(url)
        endpoint = f"{parts.scheme}://{parts.netloc}"
        cache_dir, source = Path(torch.hub.get_dir()) / "checkpoints", url
        online = _reachable(endpoint)
    if online:
        return {"pretrained": True, "cache_dir": str(cache_dir)}
    raise ModelError(
        f"model.pretrained=imagenet: the ImageNet weights of {backbone} ({source}) are not in "
        f"the local cache ({cache_dir}) and {endpoint} cannot be reached; supply a weights file "
        "with --set model.pretrained=file:PATH or train from random weights with "
        "--set model.pretrained=none"
    )


def _cached_weights(hub_id: str | None, hub_filename: str | None, url: str | None) -> str | None:
    """Path of timm's weight file for a model in the Hugging Face or torch hub cache, or None."""
    if hub_id:
        repo_id, _, revision = hub_id.partition("@")
        for filename in _hf_filenames(hub_filename):
            found = try_to_load_from_cache(
                repo_id, filename, cache_dir=_hf_hub_cache(), revision=revision or None
            )
            if isinstance(found, str) and os.path.isfile(found):
                return found
    if url:
        candidate = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path)
        if candidate.is_file():
            return str(candidate)
    return None


def _hf_filenames(hub_filename: str | None) -> tuple[str, ...]:
    """Files timm tries on the hub, in its order: safetensors alternatives first."""
    name = hub_filename or "pytorch_model.bin"
    if name.endswith(".safetensors"):
        return (name,)
    if name == "pytorch_model.bin":
        return ("model.safetensors", name)
    if name.endswith(".bin"):
        return (name[: -len(".bin")] + ".safetensors", name)
    return (name,)


def _hf_hub_cache() -> Path:
    """The Hugging Face hub cache, from the environment as huggingface_hub resolves it.

    Read at call time (huggingface_hub reads it once, at import) so that a caller's
    ``HF_HOME`` or ``HF_HUB_CACHE`` is honoured and passed on to timm as ``cache_dir``.
    """
    hub = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE")
    if hub:
        return Path(os.path.expandvars(hub)).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME", os.path.join("~", ".cache"))
    home = os.environ.get("HF_HOME") or os.path.join(xdg, "huggingface")
    return Path(os.path.expandvars(home)).expanduser() / "hub"


def _hf_offline_mode() -> bool:
    """True when the user declared the hub offline (HF_HUB_OFFLINE, now or at import)."""
    declared = os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in {"1", "ON", "YES", "TRUE"}
    return declared or bool(hf_constants.HF_HUB_OFFLINE)


def _reachable(url: str, timeout: float = _PROBE_TIMEOUT_S) -> bool:
    """True when an HTTP server answers a HEAD request for ``url`` within ``timeout`` seconds.

    Any status counts as an answer. The request runs in a daemon thread so a hanging DNS
    lookup (which socket timeouts do not cover) cannot hold the caller past ``timeout``.
    Proxies from the environment are used, as the downloads will use them.
    """
    done = threading.Event()
    answered: list[bool] = []

    def probe() -> None:
        try:
            with urllib.request.urlopen(
                urllib.request.Request(url, method="HEAD"), timeout=timeout
            ):
                answered.append(True)
        except urllib.error.HTTPError:
            answered.append(True)
        except (OSError, ValueError):
            answered.append(False)
        finally:
            done.set()

    threading.Thread(target=probe, daemon=True).start()
    return done.wait(timeout) and answered == [True]


def _check_weights_file(path: Path, backbone: str) -> None:
    """Raise ModelError unless ``path`` holds a state dict that fits ``backbone`` (head aside)."""
    where = f"model.pretrained=file:{path}"
    if not path.is_file():
        raise ModelError(f"{where}: no such file")
    try:
        state_dict = load_state_dict(str(path))
    except _READ_ERRORS as exc:
        raise ModelError(
            f"{where}: not a readable PyTorch or safetensors weights file "
            f"({type(exc).__name__}: {_one_line(exc)})"
        ) from None
    if not isinstance(state_dict, dict) or not state_dict:
        raise ModelError(f"{where}: holds no state dict")
    not_tensor = next((k for k, v in state_dict.items() if not isinstance(v, torch.Tensor)), None)
    if not_tensor is not None:
        raise ModelError(f"{where}: not a state dict (entry {not_tensor!r} is not a tensor)")
    spec = BACKBONES[backbone]
    pretrained_cfg = get_pretrained_cfg(spec.timm_name)
    with torch.device("meta"):
        reference = timm.create_model(spec.timm_name, pretrained=False, in_chans=1)
    expected = {k: tuple(v.shape) for k, v in reference.state_dict().items()}
    mismatch = _first_mismatch(
        expected,
        state_dict,
        ignore=_param_names(pretrained_cfg.classifier),
        first_convs=_param_names(pretrained_cfg.first_conv),
    )
    if mismatch is not None:
        raise ModelError(f"{where}: does not fit {backbone}: {mismatch}")


def _param_names(modules: str | Sequence[str] | None) -> frozenset[str]:
    """``weight`` and ``bias`` keys of the named modules (timm names the head and stem so)."""
    if not modules:
        return frozenset()
    names = (modules,) if isinstance(modules, str) else tuple(modules)
    return frozenset(f"{name}.{p}" for name in names for p in ("weight", "bias"))


def _first_mismatch(
    expected: Mapping[str, tuple[int, ...]],
    state_dict: Mapping[str, torch.Tensor],
    *,
    ignore: frozenset[str] = frozenset(),
    first_convs: frozenset[str] = frozenset(),
) -> str | None:
    """Describe the first key where ``state_dict`` and the model's shapes disagree, or None.

    Model keys are checked in module order, then keys the model lacks. A missing
    ``num_batches_tracked`` is allowed (batch norm fills it in). A first convolution may have
    1 or 3 input channels: timm folds 3 into 1 by summing.
    """
    for key, shape in expected.items():
        if key in ignore:
            continue
        if key not in state_dict:
            if key.endswith("num_batches_tracked"):
                continue
            missing = [
                k
                for k in expected
                if k not in ignore and k not in state_dict and not k.endswith("num_batches_tracked")
            ]
            return f"key {key!r} is missing ({len(missing)} model keys are missing in all)"
        found = tuple(state_dict[key].shape)
        folds = (
            key in first_convs
            and len(found) == len(shape) == 4
            and found[1] in (1, 3)
            and found[:1] + found[2:] == shape[:1] + shape[2:]
        )
        if found != shape and not folds:
            return f"key {key!r} has shape {found}, the model expects {shape}"
    extra = next((k for k in state_dict if k not in expected and k not in ignore), None)
    if extra is not None:
        return f"key {extra!r} is not in the model"
    return None


def _plain_data(value: Mapping[str, Any], field: str) -> dict[str, Any]:
    """``value`` as JSON-round-tripped plain data; TypeError naming ``field`` if impossible."""
    if not isinstance(value, Mapping):
        raise TypeError(f"save_checkpoint: {field} must be a mapping, got {type(value).__name__}")
    try:
        return json.loads(json.dumps(value))
    except (TypeError, ValueError) as exc:
        raise TypeError(f"save_checkpoint: {field} must be plain JSON data ({exc})") from None


def _one_line(exc: BaseException) -> str:
    """First line of an exception's message (torch and hub errors run over several lines)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
