"""Wan's encoders for data preparation: the video VAE (diffusers ``AutoencoderKLWan``) and umT5 (transformers).

Both load from local folders in the published formats: a component folder (``vae/``, ``text_encoder/``) or a diffusers
pipeline root such as ``Wan-AI/Wan2.1-T2V-1.3B-Diffusers`` holding ``vae/``, ``text_encoder/`` and ``tokenizer/``.
diffusers and transformers are imported inside the loaders, so the rest of the repository works without them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .prompts import clean_prompt

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "spiece.model")
"""Any of these marks a folder as holding a tokenizer."""


def _require(module: str) -> None:
    """Fail with the install hint when an optional dependency of data preparation is missing."""
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise ImportError(f"data preparation needs {module}: pip install -e '.[train]' (or -r requirements-dev.txt)")


def component_dir(path: str | Path, name: str) -> Path:
    """``path/name`` when ``path`` is a pipeline root with that component, else ``path`` itself.

    Raises:
        FileNotFoundError: Neither folder holds a ``config.json``.

    """
    path = Path(path)
    for candidate in (path / name, path):
        if (candidate / "config.json").is_file():
            return candidate
    raise FileNotFoundError(f"no {name} found at {path}: expected {path}/config.json or {path}/{name}/config.json")


def tokenizer_dir(text_encoder_dir: Path) -> Path:
    """Tokenizer folder of a text encoder: its own folder if it holds tokenizer files, else the sibling ``tokenizer/``.

    Raises:
        FileNotFoundError: Neither holds tokenizer files.

    """
    for candidate in (text_encoder_dir, text_encoder_dir.parent / "tokenizer"):
        if any((candidate / f).is_file() for f in TOKENIZER_FILES):
            return candidate
    raise FileNotFoundError(f"no tokenizer in {text_encoder_dir} or {text_encoder_dir.parent / 'tokenizer'} "
                            f"(looked for {', '.join(TOKENIZER_FILES)}); pass the tokenizer folder explicitly")


class WanVideoEncoder:
    """Pixels -> normalised Wan latents with the posterior mean (deterministic), (mu - mean) / std per channel.

    Args:
        vae: A diffusers ``AutoencoderKLWan``; its config's ``latents_mean`` / ``latents_std`` normalise.
        device: Where the VAE runs.
        dtype: VAE weight and input dtype (Wan's VAE is usually run in float32).

    """

    def __init__(self, vae: Any, *, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> None:
        if vae.dtype != dtype:
            vae = vae.to(dtype=dtype)
        self.vae = vae.to(device).eval().requires_grad_(False)
        self.device, self.dtype = torch.device(device), dtype
        cfg = vae.config
        self.mean = torch.tensor(cfg.latents_mean, dtype=torch.float32).view(1, -1, 1, 1, 1)  # (1, C, 1, 1, 1)
        self.std = torch.tensor(cfg.latents_std, dtype=torch.float32).view(1, -1, 1, 1, 1)  # (1, C, 1, 1, 1)
        self.temporal_stride = int(cfg.scale_factor_temporal or 4)
        self.spatial_stride = int(cfg.scale_factor_spatial or 8)
        if self.mean.shape[1] != cfg.z_dim or self.std.shape[1] != cfg.z_dim:
            raise ValueError(f"VAE config has {self.mean.shape[1]} means and {self.std.shape[1]} stds for z_dim "
                             f"{cfg.z_dim}")

    @classmethod
    def from_pretrained(cls, path: str | Path, *, device: str | torch.device = "cpu",
                        dtype: torch.dtype = torch.float32) -> WanVideoEncoder:
        """Load ``AutoencoderKLWan`` from a ``vae/`` folder or a pipeline root holding one."""
        _require("diffusers")
        from diffusers import AutoencoderKLWan

        # the VAE is small: a plain load needs no accelerate (and says nothing about it)
        vae = AutoencoderKLWan.from_pretrained(component_dir(path, "vae"), torch_dtype=dtype, low_cpu_mem_usage=False)
        return cls(vae, device=device, dtype=dtype)

    @property
    def latent_channels(self) -> int:
        """Latent channels C (16 for Wan2.1)."""
        return int(self.mean.shape[1])

    def __call__(self, video: Tensor) -> Tensor:
        """Encode a batch of clips.

        Args:
            video: (B, 3, T, H, W) pixels in [-1, 1]; T = 4k + 1, H and W multiples of the spatial stride (8).

        Returns:
            (B, C, (T - 1) / 4 + 1, H / 8, W / 8) float32 normalised latents on the encoder's device.

        """
        b, c, t, h, w = video.shape
        if c != 3 or (t - 1) % self.temporal_stride or h % self.spatial_stride or w % self.spatial_stride:
            raise ValueError(f"video must be (B, 3, {self.temporal_stride}k + 1, H, W) with H, W multiples of "
                             f"{self.spatial_stride}, got {tuple(video.shape)}")
        with torch.no_grad():
            mu = self.vae.encode(video.to(self.device, self.dtype)).latent_dist.mean  # (B, C, F, h, w)
        mean, std = self.mean.to(self.device), self.std.to(self.device)
        return (mu.float() - mean) / std  # W wan/modules/vae.py: (mu - mean) / std, what the DiT sees


@dataclass(kw_only=True, slots=True, frozen=True)
class TextEncoding:
    """umT5 states of a batch of prompts."""

    states: Tensor
    """(B, max_tokens, D) last hidden states with the rows past each prompt's length zeroed."""
    lengths: Tensor
    """(B,) int64 token counts (end-of-sequence token included)."""


class UMT5TextEncoder:
    """Prompts -> umT5 encoder states zero-padded to ``max_tokens`` rows, as Wan feeds its DiT.

    Wan (W wan/modules/t5.py) cleans whitespace, tokenizes to 512 tokens with an end-of-sequence token, runs the encoder
    with the attention mask, keeps each prompt's true length and zero-pads back to 512 rows (Self-Forcing and the
    diffusers pipeline zero the padded rows the same way).

    Args:
        model: A transformers ``UMT5EncoderModel`` (or any encoder returning ``last_hidden_state``).
        tokenizer: Its tokenizer.
        max_tokens: Rows of the output (Wan: 512); longer prompts are truncated.
        device: Where the encoder runs.
        dtype: Encoder weight dtype (bfloat16 for umT5-XXL on GPU; float16 overflows in T5).

    """

    def __init__(self, model: Any, tokenizer: Any, *, max_tokens: int = 512, device: str | torch.device = "cpu",
                 dtype: torch.dtype = torch.float32) -> None:
        if max_tokens < 1:
            raise ValueError(f"max_tokens must be positive, got {max_tokens}")
        self.model = model.to(device=device, dtype=dtype).eval().requires_grad_(False)
        self.tokenizer, self.max_tokens, self.device = tokenizer, max_tokens, torch.device(device)
        self.tokenizer.padding_side = "right"  # the kept rows must be a prefix

    @classmethod
    def from_pretrained(cls, path: str | Path, *, tokenizer_path: str | Path | None = None, max_tokens: int = 512,
                        device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> UMT5TextEncoder:
        """Load ``UMT5EncoderModel`` and its tokenizer from a ``text_encoder/`` folder or a pipeline root.

        The tokenizer comes from ``tokenizer_path``, else the encoder's folder, else its sibling ``tokenizer/``.
        """
        _require("transformers")
        from transformers import AutoTokenizer, UMT5EncoderModel

        model_dir = component_dir(path, "text_encoder")
        tok_dir = Path(tokenizer_path) if tokenizer_path is not None else tokenizer_dir(model_dir)
        model = UMT5EncoderModel.from_pretrained(model_dir, dtype=dtype)
        return cls(model, AutoTokenizer.from_pretrained(tok_dir), max_tokens=max_tokens, device=device, dtype=dtype)

    @property
    def width(self) -> int:
        """State width D (4096 for umT5-XXL)."""
        return int(self.model.config.d_model)

    def encode(self, texts: list[str]) -> TextEncoding:
        """Encode prompts (cleaned as Wan does: HTML entities unescaped, whitespace collapsed)."""
        tokens = self.tokenizer([clean_prompt(t) for t in texts], padding="max_length", max_length=self.max_tokens,
                                truncation=True, add_special_tokens=True, return_attention_mask=True,
                                return_tensors="pt")
        ids, mask = tokens["input_ids"].to(self.device), tokens["attention_mask"].to(self.device)  # (B, L), (B, L)
        with torch.no_grad():
            states = self.model(input_ids=ids, attention_mask=mask).last_hidden_state  # (B, L, D)
        lengths = mask.sum(dim=1).long()  # (B,)
        keep = torch.arange(states.shape[1], device=states.device)[None] < lengths[:, None]  # (B, L) true prefix
        return TextEncoding(states=states * keep[..., None].to(states.dtype), lengths=lengths.cpu())

    def __call__(self, texts: list[str]) -> Tensor:
        """(B, max_tokens, D) states with padding rows zeroed."""
        return self.encode(texts).states
