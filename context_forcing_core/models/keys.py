"""Checkpoint key layouts of Wan2.1 T2V weights: pure functions, no I/O.

Handles the layouts in circulation (see docs/wan21.md sections 4-5): official Wan names, ComfyUI's
``model.diffusion_model.`` prefix, diffusers ``WanTransformer3DModel`` names, and the training dicts of Self-Forcing,
LongLive and Context Forcing (``generator`` / ``generator_ema`` with ``model.`` and ``_fsdp_wrapped_module.``).
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

from torch import Tensor

from .config import WanConfig

WAN_HEAD_DIM = 128
"""Head width of every Wan2.1 size; used to infer ``num_heads`` when no config says it."""

_PREFIXES = ("model.diffusion_model.", "model.")  # longest first
_WRAPPERS = ("_fsdp_wrapped_module.", "_orig_mod.")  # FSDP1 and torch.compile insert these anywhere
_BLOCK_KEY = re.compile(r"^blocks\.(\d+)\.(.+)$")
_I2V_KEY = re.compile(
    r"(^|\.)(img_emb|k_img|v_img|norm_k_img|add_k_proj|add_v_proj|norm_added_k|image_embedder)(\.|$)"
)

# (official, diffusers) module paths, from diffusers convert_wan_transformer_to_diffusers. A key maps when it equals
# the path or continues it with ".": "head.head.weight" -> "proj_out.weight".
_DIFFUSERS_TOP: tuple[tuple[str, str], ...] = (
    ("time_embedding.0", "condition_embedder.time_embedder.linear_1"),
    ("time_embedding.2", "condition_embedder.time_embedder.linear_2"),
    ("text_embedding.0", "condition_embedder.text_embedder.linear_1"),
    ("text_embedding.2", "condition_embedder.text_embedder.linear_2"),
    ("time_projection.1", "condition_embedder.time_proj"),
    ("head.modulation", "scale_shift_table"),
    ("head.head", "proj_out"),
    ("patch_embedding", "patch_embedding"),
)
# The same inside ``blocks.{i}.``; diffusers renumbers the norms, so its affine ``norm2`` is the official ``norm3``.
_DIFFUSERS_BLOCK: tuple[tuple[str, str], ...] = (
    ("modulation", "scale_shift_table"),
    ("norm3", "norm2"),
    ("ffn.0", "ffn.net.0.proj"),
    ("ffn.2", "ffn.net.2"),
    *(
        (f"{official}.{proj}", f"{diffusers}.{renamed}")
        for official, diffusers in (("self_attn", "attn1"), ("cross_attn", "attn2"))
        for proj, renamed in (("q", "to_q"), ("k", "to_k"), ("v", "to_v"), ("o", "to_out.0"),
                              ("norm_q", "norm_q"), ("norm_k", "norm_k"))
    ),
)


def _describe_keys(obj: Mapping[Any, Any], limit: int = 10) -> str:
    keys = [repr(k) for k in list(obj)[:limit]]
    more = f", ... ({len(obj)} in all)" if len(obj) > limit else ""
    return "[" + ", ".join(keys) + more + "]"


def _is_tensor_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and len(obj) > 0 and all(
        isinstance(k, str) and isinstance(v, Tensor) for k, v in obj.items()
    )


def select_state_dict(obj: Any, *, use_ema: bool | None = None) -> dict[str, Tensor]:
    """Pick the model weights out of a loaded checkpoint object.

    Args:
        obj: what ``torch.load`` / ``safetensors`` returned: a training dict with ``generator`` and/or
            ``generator_ema`` (Self-Forcing, LongLive, Context Forcing), a dict with a ``model`` state dict,
            or a state dict itself.
        use_ema: True takes ``generator_ema``, False takes ``generator``, None takes ``generator_ema`` when
            present and ``generator`` otherwise.

    Returns:
        The chosen state dict (a new dict; tensors are not copied). Keys are still in the file's layout.

    Raises:
        ValueError: nothing fits; the message lists the available top-level keys.

    """
    if not isinstance(obj, Mapping):
        raise ValueError(f"expected a state dict or a checkpoint dict, got {type(obj).__name__}")
    if "generator" in obj or "generator_ema" in obj:
        if use_ema is None:
            name = "generator_ema" if "generator_ema" in obj else "generator"
        else:
            name = "generator_ema" if use_ema else "generator"
        if name not in obj:
            raise ValueError(f"use_ema={use_ema} asks for {name!r}, but the checkpoint's top-level keys are "
                             f"{_describe_keys(obj)}")
        if not _is_tensor_dict(obj[name]):
            raise ValueError(f"checkpoint entry {name!r} is not a dict of tensors")
        return dict(obj[name])
    if use_ema:
        raise ValueError(f"use_ema=True asks for 'generator_ema', but the checkpoint has no EMA weights; its top-level "
                         f"keys are {_describe_keys(obj)}")
    if "model" in obj and _is_tensor_dict(obj["model"]):
        return dict(obj["model"])
    if _is_tensor_dict(obj):
        return dict(obj)
    raise ValueError("no model weights found: expected 'generator_ema' / 'generator', 'model', or a dict of tensors; "
                     f"top-level keys are {_describe_keys(obj)}")


def _strip(key: str) -> str:
    for wrapper in _WRAPPERS:
        key = key.replace(wrapper, "")
    for prefix in _PREFIXES:
        if key.startswith(prefix):
            return key[len(prefix):]
    return key


def official_module_name(path: str) -> str:
    """One module path of any layout (prefixes, FSDP / compile wrappers, diffusers names) -> the official name.

    Unlike :func:`official_key_map`, which renames diffusers keys only when the whole dict is in that layout, this
    maps every diffusers name back: for lone paths such as a LoRA's targets (the only official / diffusers clash,
    diffusers' ``norm2`` = official ``norm3``, concerns norms, which take no LoRA).
    """
    return _rename(_strip(path), to_diffusers=False)


def _rename(key: str, *, to_diffusers: bool) -> str:
    """Map one key between the official and diffusers layouts; keys outside the table are returned unchanged."""
    src, dst = (0, 1) if to_diffusers else (1, 0)
    match = _BLOCK_KEY.match(key)
    table, prefix, rest = (_DIFFUSERS_BLOCK, f"blocks.{match[1]}.", match[2]) if match else (_DIFFUSERS_TOP, "", key)
    for pair in table:
        old = pair[src]
        if rest == old or rest.startswith(old + "."):
            return prefix + pair[dst] + rest[len(old):]
    return key


def official_key_map(keys: Iterable[str]) -> dict[str, str]:
    """Map each key of a checkpoint to its official Wan2.1 name (see :func:`to_official_keys`).

    Args:
        keys: state-dict keys in any supported layout.

    Returns:
        ``{original key: official key}`` in the input order.

    Raises:
        ValueError: image-to-video keys, or two keys that map to the same name.

    """
    names = {key: _strip(key) for key in keys}
    i2v = [key for key, name in names.items() if _I2V_KEY.search(name)]
    if i2v:
        raise ValueError(f"this is an image-to-video checkpoint (key {i2v[0]!r}); this loader takes Wan2.1 "
                         "text-to-video weights")
    if any(name.startswith("condition_embedder.") for name in names.values()):
        names = {key: _rename(name, to_diffusers=False) for key, name in names.items()}
    seen: dict[str, str] = {}
    for key, name in names.items():
        if name in seen:
            raise ValueError(f"keys {seen[name]!r} and {key!r} both map to {name!r}")
        seen[name] = key
    return names


def to_official_keys(sd: Mapping[str, Any]) -> dict[str, Any]:
    """Rename a state dict to the official Wan2.1 key names.

    Strips a leading ``model.diffusion_model.`` (ComfyUI) or ``model.`` (training wrappers), removes
    ``_fsdp_wrapped_module.`` and ``_orig_mod.`` anywhere, and maps the diffusers layout back when any key starts
    with ``condition_embedder.``. Values are passed through untouched.

    Args:
        sd: state dict in any supported layout.

    Returns:
        A new dict with official keys.

    Raises:
        ValueError: image-to-video keys, or two keys that map to the same name.

    """
    names = official_key_map(sd)
    return {names[key]: value for key, value in sd.items()}


def to_diffusers_keys(sd: Mapping[str, Any]) -> dict[str, Any]:
    """Rename a state dict (any supported layout) to diffusers ``WanTransformer3DModel`` key names.

    Args:
        sd: state dict; normalised with :func:`to_official_keys` first.

    Returns:
        A new dict with diffusers keys.

    """
    return {_rename(key, to_diffusers=True): value for key, value in to_official_keys(sd).items()}


def infer_config(sd: Mapping[str, Any], *, hint: Mapping[str, Any] | None = None) -> WanConfig:
    """Infer the architecture from the tensor shapes of an official-key state dict.

    Shapes give dim, patch_size and in_channels (``patch_embedding.weight``), text_dim, freq_dim, ffn_dim,
    num_layers (distinct block indices), out_channels and position_grid (``pos_embedding``, when present).
    ``num_heads`` is in no shape: it comes from ``hint``, else ``dim // 128`` when ``dim`` is a multiple of 128
    (every Wan2.1 size has head width 128). text_len, eps and rope_theta come from ``hint`` or the
    :class:`WanConfig` defaults.

    Args:
        sd: official-key state dict; only ``.shape`` of the values is read, so meta tensors do.
        hint: :class:`WanConfig` fields from file metadata (e.g. a parsed ``WanConfig.to_json()``).

    Returns:
        The config.

    Raises:
        ValueError: a needed key is missing, the hint contradicts the shapes or has unknown fields, or num_heads
            cannot be inferred.

    """

    def shape(key: str) -> tuple[int, ...]:
        if key not in sd:
            raise ValueError(f"cannot infer the architecture: key {key!r} is missing (keys start with "
                             f"{_describe_keys(sd, 5)})")
        return tuple(sd[key].shape)

    pe = shape("patch_embedding.weight")  # (dim, in_channels, pt, ph, pw)
    if len(pe) != 5:
        raise ValueError(f"patch_embedding.weight must be 5-D (dim, in, pt, ph, pw), found shape {pe}")
    patch = pe[2:]
    head_rows = shape("head.head.weight")[0]  # out_channels * pt * ph * pw
    if head_rows % math.prod(patch):
        raise ValueError(f"head.head.weight has {head_rows} rows, not a multiple of the patch volume {patch}")
    found: dict[str, Any] = {
        "dim": pe[0], "in_channels": pe[1], "patch_size": patch, "out_channels": head_rows // math.prod(patch),
        "text_dim": shape("text_embedding.0.weight")[1], "freq_dim": shape("time_embedding.0.weight")[1],
        "ffn_dim": shape("blocks.0.ffn.0.weight")[0],
        "num_layers": len({m[1] for key in sd if (m := _BLOCK_KEY.match(key))}),
        "position_grid": tuple(sd["pos_embedding"].shape[:2]) if "pos_embedding" in sd else None,
    }
    fields = dict(hint or {})
    unknown = set(fields) - {f.name for f in dataclasses.fields(WanConfig)}
    if unknown:
        raise ValueError(f"unknown WanConfig fields in the config hint: {sorted(unknown)}")
    for name, value in found.items():
        if name in fields:
            given = tuple(fields[name]) if name in ("patch_size", "position_grid") and fields[name] else fields[name]
            if given != value:
                raise ValueError(f"the stored config says {name}={given!r} but the tensor shapes give {value!r}")
    fields.update(found)
    if "num_heads" not in fields:
        if found["dim"] % WAN_HEAD_DIM:
            raise ValueError(f"cannot infer num_heads: no config is stored with the weights and dim={found['dim']} "
                             f"is not a multiple of Wan's head width {WAN_HEAD_DIM}; pass config=WanConfig(...)")
        fields["num_heads"] = found["dim"] // WAN_HEAD_DIM
    return WanConfig(**fields)
