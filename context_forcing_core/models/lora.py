"""LoRA files for Wan2.1 students, merged into the weights: W <- W + strength * (alpha / r) * B A.

Layouts read (keys are mapped to the model's official module names with :mod:`.keys`):
- PEFT: ``base_model.model.<module>.lora_A[.<adapter>].weight`` (A, r x in) and ``lora_B`` (B, out x r); alpha from an
  ``adapter_config.json`` beside the file (``lora_alpha``, ``r``), the file's ``lora_alpha`` metadata, or the caller;
  otherwise alpha = r (scale 1).
- LongLive's training dict: the PEFT state dict under ``generator_lora`` (rank 256, alpha 256: scale 1).
- ComfyUI / kohya-style Wan LoRAs: ``diffusion_model.<module>.lora_down.weight`` (A), ``lora_up.weight`` (B) and an
  optional ``.alpha`` scalar per module; diffusers module names (``transformer.blocks.0.attn1.to_q``) are mapped too.
Only Linear weights take a LoRA. Every key, pair and shape is validated before any weight changes.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import Tensor, nn

from ..memory.config import Bound
from .keys import official_module_name

_PEFT = re.compile(r"^(?:base_model\.model\.)?(.+?)\.lora_([AB])(?:\.[^.]+)?\.weight$")
_KOHYA = re.compile(r"^(.+?)\.(lora_down|lora_up)\.weight$")
_ALPHA = re.compile(r"^(.+?)\.alpha$")
_LORA_PREFIXES = ("diffusion_model.", "transformer.")
LoraSource = str | os.PathLike[str] | Mapping[str, Any]
LORA_STRENGTH = Bound(-10.0, 10.0, integer=False)
"""Range of the LoRA strength the loader node offers (the library refuses only non-finite strengths)."""


@dataclass(frozen=True, slots=True)
class LoraDelta:
    """One module's low-rank update: ``up @ down`` times ``alpha / rank``."""

    down: Tensor
    """(r, in): PEFT ``lora_A``, kohya ``lora_down``."""
    up: Tensor
    """(out, r): PEFT ``lora_B``, kohya ``lora_up``."""
    alpha: float
    """LoRA alpha; the update is scaled by alpha / r."""

    @property
    def rank(self) -> int:
        """Rank r of the update."""
        return self.down.shape[0]


def _module_name(raw: str) -> str:
    """A LoRA key's module path -> the model's official module name."""
    for prefix in _LORA_PREFIXES:
        if raw.startswith(prefix):
            raw = raw[len(prefix):]
    return official_module_name(raw)


def parse_lora(sd: Mapping[str, Any], *, name: str, alpha: float | None = None) -> dict[str, LoraDelta]:
    """Group a LoRA state dict into per-module updates.

    Args:
        sd: the file's tensors (any layout in the module docstring; a ``generator_lora`` dict is unwrapped).
        name: the file, for errors.
        alpha: LoRA alpha for layouts that do not store it (PEFT); None means alpha = r.

    Raises:
        ValueError: a key in no LoRA layout, an A without its B (or the reverse), ranks that disagree, non-matrix
            factors; the message names the file and the key.

    """
    if "generator_lora" in sd:
        sd = sd["generator_lora"]
    if not isinstance(sd, Mapping) or not sd:
        raise ValueError(f"{name}: not a LoRA state dict (expected a dict of tensors or 'generator_lora')")
    parts: dict[str, dict[str, Tensor]] = {}
    alphas: dict[str, float] = {}
    for key, value in sd.items():
        if not isinstance(key, str) or not isinstance(value, Tensor):
            raise ValueError(f"{name}: entry {key!r} is not a tensor")
        if m := _PEFT.match(key):
            parts.setdefault(_module_name(m[1]), {})["down" if m[2] == "A" else "up"] = value
        elif m := _KOHYA.match(key):
            parts.setdefault(_module_name(m[1]), {})["down" if m[2] == "lora_down" else "up"] = value
        elif m := _ALPHA.match(key):
            if value.numel() != 1 or not torch.isfinite(value).all():
                raise ValueError(f"{name}: key {key!r} must be one finite number, got shape {tuple(value.shape)}")
            alphas[_module_name(m[1])] = float(value)
        else:
            raise ValueError(f"{name}: key {key!r} is not a LoRA key (lora_A / lora_B, lora_down / lora_up, alpha)")
    deltas = {}
    for module, pair in parts.items():
        if set(pair) != {"down", "up"}:
            missing = "up (lora_B / lora_up)" if "up" not in pair else "down (lora_A / lora_down)"
            raise ValueError(f"{name}: module {module!r} has no {missing} factor")
        down, up = pair["down"], pair["up"]
        if down.ndim != 2 or up.ndim != 2 or up.shape[1] != down.shape[0]:
            raise ValueError(f"{name}: module {module!r}: factors of shapes {tuple(up.shape)} and {tuple(down.shape)} "
                             "are not (out, r) and (r, in)")
        rank = down.shape[0]
        deltas[module] = LoraDelta(down=down, up=up, alpha=alphas.get(module, rank if alpha is None else alpha))
    stray = sorted(set(alphas) - set(parts))
    if stray:
        raise ValueError(f"{name}: alpha for module {stray[0]!r}, which has no LoRA factors")
    return deltas


def read_lora(source: LoraSource, *, alpha: float | None = None) -> dict[str, LoraDelta]:
    """Read a LoRA from a ``.safetensors`` / ``.pt`` file (``weights_only``) or an in-memory dict; see :func:`parse_lora`.

    PEFT alpha, when ``alpha`` is None: ``adapter_config.json`` beside the file (PEFT keeps one adapter per folder),
    else the safetensors metadata ``lora_alpha``, else r. A per-module ``.alpha`` tensor (kohya) always wins.
    """
    from .loading import PICKLE_SUFFIXES, _torch_load, read_safetensors_header

    if isinstance(source, Mapping):
        return parse_lora(source, name="LoRA state dict", alpha=alpha)
    path = Path(os.fspath(source))
    if not path.is_file():
        raise FileNotFoundError(f"no such LoRA file: {path}")
    if alpha is None and (path.parent / "adapter_config.json").is_file():
        try:
            alpha = float(json.loads((path.parent / "adapter_config.json").read_text())["lora_alpha"])
        except (ValueError, KeyError, TypeError) as err:
            raise ValueError(f"{path.parent / 'adapter_config.json'}: no readable lora_alpha ({err})") from err
    if path.suffix == ".safetensors":
        _, metadata = read_safetensors_header(path)  # capped header read: a crafted file fails here, fast
        if alpha is None and "lora_alpha" in metadata:
            try:
                alpha = float(metadata["lora_alpha"])
            except ValueError as err:
                raise ValueError(f"{path.name}: metadata lora_alpha {metadata['lora_alpha']!r} is not a number") from err
        sd = load_file(path)
    elif path.suffix in PICKLE_SUFFIXES:
        sd = _torch_load(path)
    else:
        raise ValueError(f"{path}: unsupported LoRA file type; expected .safetensors or one of {PICKLE_SUFFIXES}")
    return parse_lora(sd, name=path.name, alpha=alpha)


def merge_lora(model: nn.Module, deltas: Mapping[str, LoraDelta], strength: float, *, name: str) -> list[str]:
    """Add ``strength * alpha / r * up @ down`` to each targeted Linear weight, in its dtype, accumulating in float32.

    Every module and shape is checked before the first weight changes.

    Returns:
        The merged module names.

    Raises:
        ValueError: a module the model does not have or that is not a Linear, shapes that do not fit, a non-finite
            strength; the message names the LoRA and the first offending module.

    """
    if not isinstance(strength, (int, float)) or not math.isfinite(strength):
        raise ValueError(f"{name}: LoRA strength must be a finite number, got {strength!r}")
    modules = dict(model.named_modules())
    unknown = [m for m in deltas if m not in modules]
    if unknown:
        more = f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else ""
        raise ValueError(f"{name}: LoRA module {unknown[0]!r}{more} matches nothing in the model")
    for module, d in deltas.items():
        layer = modules[module]
        if not isinstance(layer, nn.Linear):
            raise ValueError(f"{name}: LoRA module {module!r} is a {type(layer).__name__}; only Linear layers take one")
        if (d.up.shape[0], d.down.shape[1]) != tuple(layer.weight.shape):
            raise ValueError(f"{name}: LoRA module {module!r} gives an update of shape "
                             f"{(d.up.shape[0], d.down.shape[1])}, the weight is {tuple(layer.weight.shape)}")
    with torch.no_grad():
        for module, d in deltas.items():
            weight = modules[module].weight
            scale = float(strength) * d.alpha / d.rank
            update = d.up.to(weight.device, torch.float32) @ d.down.to(weight.device, torch.float32)  # (out, in)
            weight.copy_((weight.float() + scale * update).to(weight.dtype))
    return list(deltas)


def apply_loras(model: nn.Module, loras: Sequence[tuple[LoraSource, float]]) -> None:
    """Read and merge several LoRAs in order."""
    for source, strength in loras:
        label = "LoRA state dict" if isinstance(source, Mapping) else Path(os.fspath(source)).name
        merge_lora(model, read_lora(source), strength, name=label)
