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
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import timm
import torch
from timm.models import get_pretrained_cfg, load_state_dict
from torch import nn

from mammo_ray.errors import ModelError
from mammo_ray.learn.weights import (
    HF_DEFAULT_ENDPOINT,
    READ_ERRORS,
    cached_weights,
    first_line,
    first_mismatch,
    hf_hub_cache,
    hf_offline_mode,
    param_names,
    reachable,
)

__all__ = [
    "GRAY_MEAN",
    "GRAY_STD",
    "BackboneSpec",
    "BACKBONES",
    "ModelConfig",
    "resolve_pretrained",
    "build_model",
]


GRAY_MEAN = 0.449
"""Mean of ImageNet's RGB means, (0.485 + 0.456 + 0.406) / 3, for one-channel input."""


GRAY_STD = 0.226
"""Mean of ImageNet's RGB standard deviations, (0.229 + 0.224 + 0.225) / 3."""


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
            f"({first_line(exc)}); use --set model.pretrained=file:PATH or "
            "--set model.pretrained=none"
        ) from None


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
    cached = cached_weights(hub_id, pretrained_cfg.hf_hub_filename, url)
    if cached is not None:
        return {"pretrained": True, "pretrained_cfg_overlay": {"file": cached}}
    if hub_id:
        # timm prefers the hub whenever a hub id exists (timm/models/_builder.py).
        endpoint = os.environ.get("HF_ENDPOINT", HF_DEFAULT_ENDPOINT).rstrip("/")
        cache_dir, source = hf_hub_cache(), f"Hugging Face hub {hub_id}"
        online = not hf_offline_mode() and reachable(endpoint)
    else:
        parts = urlparse(url)
        endpoint = f"{parts.scheme}://{parts.netloc}"
        cache_dir, source = Path(torch.hub.get_dir()) / "checkpoints", url
        online = reachable(endpoint)
    if online:
        return {"pretrained": True, "cache_dir": str(cache_dir)}
    raise ModelError(
        f"model.pretrained=imagenet: the ImageNet weights of {backbone} ({source}) are not in "
        f"the local cache ({cache_dir}) and {endpoint} cannot be reached; supply a weights file "
        "with --set model.pretrained=file:PATH or train from random weights with "
        "--set model.pretrained=none"
    )


def _check_weights_file(path: Path, backbone: str) -> None:
    """Raise ModelError unless ``path`` holds a state dict that fits ``backbone`` (head aside)."""
    where = f"model.pretrained=file:{path}"
    if not path.is_file():
        raise ModelError(f"{where}: no such file")
    try:
        state_dict = load_state_dict(str(path))
    except READ_ERRORS as exc:
        raise ModelError(
            f"{where}: not a readable PyTorch or safetensors weights file "
            f"({type(exc).__name__}: {first_line(exc)})"
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
    mismatch = first_mismatch(
        expected,
        state_dict,
        ignore=param_names(pretrained_cfg.classifier),
        first_convs=param_names(pretrained_cfg.first_conv),
    )
    if mismatch is not None:
        raise ModelError(f"{where}: does not fit {backbone}: {mismatch}")
