"""Wan2.1 VAE latent normalisation: raw VAE latents (what ComfyUI's LATENT holds) <-> the DiT's input space.

The DiT is trained on ``(z - mean) / std`` per latent channel, with the 16 channel statistics of the Wan2.1 VAE
(Wan-Video/Wan2.1 ``wan/modules/vae.py``; the same numbers are ``latents_mean`` / ``latents_std`` in the diffusers
``AutoencoderKLWan`` config). Core generation returns normalised latents; a LATENT handed to a VAE decoder must be
mapped back with :func:`wan_denormalize`.
"""

from __future__ import annotations

import torch
from torch import Tensor

WAN21_LATENT_MEAN = (
    -0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508,
    0.4134, -0.0715, 0.5517, -0.3632, -0.1922, -0.9497, 0.2503, -0.2921,
)
WAN21_LATENT_STD = (
    2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743,
    3.2687, 2.1526, 2.8652, 1.5579, 1.6382, 1.1253, 2.8251, 1.9160,
)


def _stats(latents: Tensor) -> tuple[Tensor, Tensor]:
    if latents.ndim != 5 or latents.shape[1] != len(WAN21_LATENT_MEAN):
        raise ValueError(f"Wan2.1 latents must be (B, 16, F, H, W), got {tuple(latents.shape)}")
    kw = {"device": latents.device, "dtype": latents.dtype}
    mean = torch.tensor(WAN21_LATENT_MEAN, **kw).view(1, -1, 1, 1, 1)  # (1, 16, 1, 1, 1)
    std = torch.tensor(WAN21_LATENT_STD, **kw).view(1, -1, 1, 1, 1)  # (1, 16, 1, 1, 1)
    return mean, std


def wan_normalize(raw: Tensor) -> Tensor:
    """Raw VAE latents (B, 16, F, H, W) -> the DiT's normalised space."""
    mean, std = _stats(raw)
    return (raw - mean) / std


def wan_denormalize(latents: Tensor) -> Tensor:
    """Normalised latents (B, 16, F, H, W) -> raw VAE latents (ComfyUI's LATENT convention)."""
    mean, std = _stats(latents)
    return latents * std + mean
