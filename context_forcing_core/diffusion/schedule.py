"""Flow-matching maths of Wan2.1 as pure functions.

Convention (docs/wan21.md section 8): x_t = (1 - sigma) x0 + sigma eps, the model predicts v = eps - x0,
t = 1000 sigma, hence x0 = x_t - sigma v.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import Tensor

NUM_TRAIN_TIMESTEPS = 1000
DEFAULT_STEPS = (1000, 750, 500, 250)
"""Few-step students' ``denoising_step_list`` (Self-Forcing, LongLive, Context Forcing)."""
DEFAULT_SHIFT = 5.0


def shift_sigma(sigma: float | Tensor, shift: float) -> float | Tensor:
    """Timestep shift sigma' = s sigma / (1 + (s - 1) sigma)."""
    return shift * sigma / (1 + (shift - 1) * sigma)


def warp_timesteps(steps: Sequence[float] = DEFAULT_STEPS, shift: float = DEFAULT_SHIFT) -> list[float]:
    """Map a step list onto the shifted training table: step i -> 1000 * shift(i / 1000).

    With shift 5, (1000, 750, 500, 250) becomes (1000, 937.5, 833.33, 625).
    """
    for s in steps:
        if not 0 < s <= NUM_TRAIN_TIMESTEPS:
            raise ValueError(f"denoising steps must lie in (0, {NUM_TRAIN_TIMESTEPS}], got {list(steps)}")
    if list(steps) != sorted(steps, reverse=True):
        raise ValueError(f"denoising steps must be decreasing, got {list(steps)}")
    if not (math.isfinite(shift) and shift > 0):
        raise ValueError(f"shift must be a positive finite number, got {shift}")
    return [NUM_TRAIN_TIMESTEPS * shift_sigma(s / NUM_TRAIN_TIMESTEPS, shift) for s in steps]


def per_frame(value: float | Tensor, x: Tensor) -> float | Tensor:
    """Broadcast a scalar, (B,) or (B, F) sigma or timestep against x (B, C, F, H, W); other shapes raise."""
    if not isinstance(value, Tensor) or value.ndim == 0:
        return value
    b, f = x.shape[0], x.shape[2]
    if value.shape == (b,):
        return value.reshape(b, 1, 1, 1, 1).to(x.dtype)
    if value.shape == (b, f):
        return value.reshape(b, 1, f, 1, 1).to(x.dtype)
    raise ValueError(f"expected a scalar, (B,) or (B, F) = {(b, f)} per-frame value, got {tuple(value.shape)}")


def add_noise(x0: Tensor, noise: Tensor, sigma: float | Tensor) -> Tensor:
    """x_t = (1 - sigma) x0 + sigma eps; also the re-noising step between few-step passes (with fresh eps)."""
    s = per_frame(sigma, x0)
    return (1 - s) * x0 + s * noise


def x0_from_flow(x_t: Tensor, flow: Tensor, sigma: float | Tensor) -> Tensor:
    """x0 = x_t - sigma v."""
    return x_t - per_frame(sigma, x_t) * flow


def flow_target(x0: Tensor, noise: Tensor) -> Tensor:
    """Regression target of flow matching: v = eps - x0."""
    return noise - x0
