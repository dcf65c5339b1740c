"""Small building blocks of the Wan2.1 DiT: norms, timestep sinusoid, feed-forward."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

import torch
from torch import Tensor, nn


class RMSNorm(nn.Module):
    """RMS norm over the last dim with a learned scale, computed in float32 (Wan's q/k norm)."""

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        """Normalise (..., dim) and return it in the input dtype."""
        xf = x.float()
        y = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return (y * self.weight.float()).to(x.dtype)


def layer_norm_fp32(x: Tensor, eps: float) -> Tensor:
    """LayerNorm without affine parameters over the last dim, in float32 (Wan's norm1, norm2, head norm)."""
    return nn.functional.layer_norm(x.float(), x.shape[-1:], eps=eps)


def autocast_off(device: torch.device) -> AbstractContextManager:
    """Suspend autocast on ``device`` for Wan's float32 parts (time embedding, head); a no-op when autocast is off.

    Upstream Wan runs these under ``amp.autocast(dtype=torch.float32)``, so with float32 parameters under a bfloat16
    autocast they stay in float32; with bfloat16 parameters they run in bfloat16 as before.
    """
    try:
        active = torch.is_autocast_enabled(device.type)
    except RuntimeError:  # a device type autocast does not know (e.g. meta)
        active = False
    return torch.autocast(device.type, enabled=False) if active else nullcontext()


def timestep_sinusoid(t: Tensor, dim: int) -> Tensor:
    """Wan's sinusoidal timestep embedding: cos half first, then sin, frequencies 10000^(-i / (dim/2)).

    Args:
        t: (...) timesteps in [0, 1000].
        dim: embedding width (even).

    Returns:
        (..., dim) float32, computed in float64 as upstream.

    """
    half = dim // 2
    freqs = torch.pow(10000.0, -torch.arange(half, dtype=torch.float64, device=t.device) / half)
    args = t.to(torch.float64)[..., None] * freqs
    return torch.cat([args.cos(), args.sin()], dim=-1).float()


class FeedForward(nn.Sequential):
    """Linear, GELU(tanh), Linear; indices 0 and 2 match the checkpoint keys ``ffn.0`` and ``ffn.2``."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__(nn.Linear(dim, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, dim))
