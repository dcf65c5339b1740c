"""Flow-matching training objective (teacher, context teacher, critic) and its timestep sampling and weighting.

Convention (docs/wan21.md section 8, :mod:`context_forcing_core.diffusion.schedule`): x_t = (1 - sigma) x0 + sigma eps,
the model regresses the flow v = eps - x0, t = 1000 sigma.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor

from ..diffusion.schedule import DEFAULT_SHIFT, NUM_TRAIN_TIMESTEPS, flow_target, per_frame, shift_sigma

Weighting = Literal["none", "bell"]

DMD_T_MIN = 20.0
"""Self-Forcing ``min_step`` = 0.02 * 1000: lower clamp of the DMD timestep."""
DMD_T_MAX = 980.0
"""Self-Forcing ``max_step`` = 0.98 * 1000: upper clamp of the DMD timestep."""

_BELL_FLOOR = math.exp(-0.5)
"""Bell value at t = 0 and t = 1000, subtracted so the weight vanishes at both ends (as DiffSynth)."""
_BELL_MEAN = sum(math.exp(-2 * ((k - 500) / 1000) ** 2) - _BELL_FLOOR for k in range(NUM_TRAIN_TIMESTEPS)) / 1000
"""Mean of the floored bell over the integer grid t = 0..999 (about 0.2491), the normaliser of the weight."""


def sample_timesteps(
    batch: int,
    *,
    generator: torch.Generator | None,
    shift: float = DEFAULT_SHIFT,
    t_min: float = 0.0,
    t_max: float = float(NUM_TRAIN_TIMESTEPS),
    device: torch.device | str | None = None,
) -> Tensor:
    """Draw one training timestep per sample: t = clamp(1000 * shift(u), t_min, t_max), u ~ U[0, 1).

    ``shift`` is the Wan timestep shift sigma' = s sigma / (1 + (s - 1) sigma); shift 1 is uniform. u is continuous
    (Self-Forcing draws an integer in 0..999 and divides by 1000, which differs by less than one timestep).

    Args:
        batch: number of samples B >= 1.
        generator: random generator for reproducibility (its device is used when ``device`` is None).
        shift: timestep shift s > 0.
        t_min: lower clamp in [0, 1000].
        t_max: upper clamp in [t_min, 1000].
        device: where to create the result.

    Returns:
        (B,) float32 timesteps in [t_min, t_max].

    """
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    if shift <= 0:
        raise ValueError(f"shift must be positive, got {shift}")
    if not 0 <= t_min <= t_max <= NUM_TRAIN_TIMESTEPS:
        raise ValueError(f"need 0 <= t_min <= t_max <= {NUM_TRAIN_TIMESTEPS}, got t_min={t_min}, t_max={t_max}")
    if device is None and generator is not None:
        device = generator.device
    u = torch.rand(batch, generator=generator, device=device, dtype=torch.float64)
    t = NUM_TRAIN_TIMESTEPS * shift_sigma(u, shift)
    return t.clamp(t_min, t_max).float()


def dmd_timesteps(batch: int, generator: torch.Generator | None, device: torch.device | str | None = None) -> Tensor:
    """DMD timesteps as Self-Forcing / Context Forcing: shift 5, clamped to [20, 980] (docs/method.md section 5).

    Returns:
        (B,) float32 timesteps, one per sample, shared by all frames of the sample.

    """
    return sample_timesteps(batch, generator=generator, shift=5.0, t_min=DMD_T_MIN, t_max=DMD_T_MAX, device=device)


def timestep_weight(t: Tensor, scheme: Weighting = "none") -> Tensor:
    """Per-timestep loss weight.

    - "none": 1 everywhere.
    - "bell": the Wan / DiffSynth training weight (``FlowMatchScheduler.training_weight``), a Gaussian bell
      centred on t = 500, floored so it vanishes at t = 0 and t = 1000, and normalised to mean 1 over the integer
      grid t = 0..999::

          w(t) = (exp(-2 ((t - 500) / 1000)^2) - exp(-0.5)) / Z
          Z = mean_{k=0..999} (exp(-2 ((k - 500) / 1000)^2) - exp(-0.5))

      Z ~ 0.2491, so w(500) ~ 1.580 and w(0) = w(1000) = 0. DiffSynth evaluates the same bell on its (shifted)
      timestep table; here it is a closed-form function of t, defined for t in [0, 1000] (negative outside).

    Args:
        t: timesteps of any shape, values in [0, 1000].
        scheme: "none" or "bell".

    Returns:
        Weights with the shape of ``t``, float32 (or t's dtype if it is float64).

    """
    t = t.float() if not t.is_floating_point() or t.dtype != torch.float64 else t
    if scheme == "none":
        return torch.ones_like(t)
    if scheme == "bell":
        return (torch.exp(-2 * ((t - 500) / 1000) ** 2) - _BELL_FLOOR) / _BELL_MEAN
    raise ValueError(f"unknown weighting {scheme!r}; allowed: 'none', 'bell'")


def check_frame_mask(frame_mask: Tensor, frames: int) -> Tensor:
    """Validate a (F,) boolean frame mask with at least one selected frame; return it."""
    if frame_mask.dtype != torch.bool or frame_mask.shape != (frames,):
        raise ValueError(
            f"frame_mask must be a bool tensor of shape ({frames},), got {frame_mask.dtype} {tuple(frame_mask.shape)}"
        )
    if not bool(frame_mask.any()):
        raise ValueError("frame_mask selects no frame")
    return frame_mask


def flow_matching_loss(
    flow_pred: Tensor,
    x0: Tensor,
    noise: Tensor,
    t: Tensor,
    *,
    weighting: Weighting = "none",
    frame_mask: Tensor | None = None,
) -> Tensor:
    """Flow-matching regression: mean over elements of w(t) (v_pred - (eps - x0))^2 (docs/wan21.md section 8).

    Used for the teacher, the context teacher (``frame_mask`` = target frames, the context is not regressed) and the
    DMD critic (on detached generator samples, see :func:`context_forcing_core.objectives.dmd.critic_loss`).
    The prediction must come from the model at x_t = add_noise(x0, noise, t / 1000).

    Args:
        flow_pred: (B, C, F, H, W) predicted flow.
        x0: (B, C, F, H, W) clean latents.
        noise: (B, C, F, H, W) the eps used to build x_t.
        t: (B,) timestep per sample or (B, F) per frame, in [0, 1000].
        weighting: :func:`timestep_weight` scheme.
        frame_mask: optional (F,) bool; the mean runs over the selected frames only.

    Returns:
        Scalar float32 loss (float64 if the inputs are float64).

    """
    if flow_pred.ndim != 5 or flow_pred.shape != x0.shape or noise.shape != x0.shape:
        raise ValueError(
            f"flow_pred, x0 and noise must share one (B, C, F, H, W) shape, got "
            f"{tuple(flow_pred.shape)}, {tuple(x0.shape)}, {tuple(noise.shape)}"
        )
    dtype = torch.promote_types(torch.promote_types(flow_pred.dtype, x0.dtype), torch.float32)
    w = per_frame(timestep_weight(t, weighting).to(device=flow_pred.device, dtype=dtype), flow_pred)
    err = w * (flow_pred.to(dtype) - flow_target(x0.to(dtype), noise.to(dtype))) ** 2
    if frame_mask is not None:
        err = err[:, :, check_frame_mask(frame_mask, flow_pred.shape[2]).to(err.device)]
    return err.mean()
