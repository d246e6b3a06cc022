"""Finding and checking pretrained weights without downloading them.

The Hugging Face and torch hub caches are searched the way timm searches them; a short HEAD
probe (in a daemon thread, so a hanging DNS lookup cannot hold the caller) says whether a
download could work; :func:`first_mismatch` compares a state dict's shapes with a model's.
"""

from __future__ import annotations

import os
import pickle
import struct
import threading
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from urllib.parse import urlparse

import torch
from huggingface_hub import constants as hf_constants
from huggingface_hub import try_to_load_from_cache
from safetensors import SafetensorError

__all__ = [
    "PROBE_TIMEOUT_S",
    "HF_DEFAULT_ENDPOINT",
    "READ_ERRORS",
    "cached_weights",
    "hf_filenames",
    "hf_hub_cache",
    "hf_offline_mode",
    "reachable",
    "param_names",
    "first_mismatch",
    "first_line",
]

PROBE_TIMEOUT_S = 3.0


HF_DEFAULT_ENDPOINT = "https://huggingface.co"


READ_ERRORS = (
    OSError,
    RuntimeError,
    EOFError,
    LookupError,
    ValueError,
    TypeError,
    AttributeError,
    ArithmeticError,
    AssertionError,
    struct.error,
    pickle.UnpicklingError,
    SafetensorError,
)
"""What ``torch.load(weights_only=True)`` and safetensors raise on bytes that are not a weights
file: torch's weights-only unpickler is a parser of untrusted input, and text or random bytes
end in any of these (``IndexError: pop from empty list`` for a text file, ``struct.error`` for
some random bytes, ``AssertionError`` for some corrupted checkpoints: found by fuzzing)."""


def cached_weights(hub_id: str | None, hub_filename: str | None, url: str | None) -> str | None:
    """Path of timm's weight file for a model in the Hugging Face or torch hub cache, or None."""
    if hub_id:
        repo_id, _, revision = hub_id.partition("@")
        for filename in hf_filenames(hub_filename):
            found = try_to_load_from_cache(
                repo_id, filename, cache_dir=hf_hub_cache(), revision=revision or None
            )
            if isinstance(found, str) and os.path.isfile(found):
                return found
    if url:
        candidate = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path)
        if candidate.is_file():
            return str(candidate)
    return None


def hf_filenames(hub_filename: str | None) -> tuple[str, ...]:
    """Files timm tries on the hub, in its order: safetensors alternatives first."""
    name = hub_filename or "pytorch_model.bin"
    if name.endswith(".safetensors"):
        return (name,)
    if name == "pytorch_model.bin":
        return ("model.safetensors", name)
    if name.endswith(".bin"):
        return (name[: -len(".bin")] + ".safetensors", name)
    return (name,)


def hf_hub_cache() -> Path:
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


def hf_offline_mode() -> bool:
    """True when the user declared the hub offline (HF_HUB_OFFLINE, now or at import)."""
    declared = os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in {"1", "ON", "YES", "TRUE"}
    return declared or bool(hf_constants.HF_HUB_OFFLINE)


def reachable(url: str, timeout: float = PROBE_TIMEOUT_S) -> bool:
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


def param_names(modules: str | Sequence[str] | None) -> frozenset[str]:
    """``weight`` and ``bias`` keys of the named modules (timm names the head and stem so)."""
    if not modules:
        return frozenset()
    names = (modules,) if isinstance(modules, str) else tuple(modules)
    return frozenset(f"{name}.{p}" for name in names for p in ("weight", "bias"))


def first_mismatch(
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


def first_line(exc: BaseException) -> str:
    """First line of an exception's message (torch and hub errors run over several lines)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
