"""ODE-regression initialisation of the causal student (CausVid, Self-Forcing; docs/method.md section 5).

The bidirectional teacher integrates its probability-flow ODE from noise with Euler steps on the shifted sigma
grid; the states it passes at the student's few-step timesteps (1000, 937.5, 833.3, 625 for shift 5) and its end
point x0 form regression pairs. The student learns x_tk -> x0 chunk by chunk through its real Slow-Fast Memory,
teacher-forced: the memory holds the *clean* ODE end points of earlier chunks, as it holds committed clean chunks at
inference.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ..diffusion.schedule import DEFAULT_SHIFT, DEFAULT_STEPS, NUM_TRAIN_TIMESTEPS, shift_sigma, x0_from_flow
from ..memory.config import MemoryConfig
from ..memory.slow_fast import SlowFastMemory
from ..models.wan import TextContext, WanModel


@dataclass(kw_only=True, slots=True)
class OdeTrajectory:
    """Regression pairs of one batch of teacher ODE solves."""

    states: Tensor
    """(B, K, C, F, H, W) float32 ODE states at the student's K timesteps."""
    timesteps: tuple[float, ...]
    """(K,) the student's (warped) timesteps, decreasing from 1000."""
    x0: Tensor
    """(B, C, F, H, W) float32 end point of the ODE (the regression target)."""


def ode_sigmas(num_steps: int, shift: float = DEFAULT_SHIFT) -> Tensor:
    """Euler grid sigma_i = shift(1 - i / num_steps), i = 0 .. num_steps: (num_steps + 1,) float64 from 1 to 0."""
    if num_steps < 1:
        raise ValueError(f"num_steps must be positive, got {num_steps}")
    return shift_sigma(1.0 - torch.arange(num_steps + 1, dtype=torch.float64) / num_steps, shift)


def _grid_indices(num_steps: int, student_steps: Sequence[float]) -> list[int]:
    """Euler step index of each student step s: i = (1 - s / 1000) num_steps, which must be whole."""
    idx = []
    for s in student_steps:
        i = (1.0 - s / NUM_TRAIN_TIMESTEPS) * num_steps
        if abs(i - round(i)) > 1e-9:
            raise ValueError(f"student step {s} is not on a {num_steps}-step Euler grid; use a multiple of "
                             f"{len(student_steps)} steps")
        idx.append(round(i))
    return idx


@torch.no_grad()
def teacher_trajectory(
    teacher: WanModel,
    noise: Tensor,
    text: Tensor,
    uncond: Tensor,
    *,
    num_steps: int = 24,
    guidance: float = 3.0,
    student_steps: Sequence[float] = DEFAULT_STEPS,
    shift: float = DEFAULT_SHIFT,
) -> OdeTrajectory:
    """Solve the teacher's guided flow ODE dx/dsigma = v from noise and keep the states at the student's steps.

    v = v_uncond + guidance (v_cond - v_uncond) (both branches in one batched forward); Euler:
    x_{i+1} = x_i + (sigma_{i+1} - sigma_i) v(x_i, sigma_i).

    Args:
        teacher: bidirectional model.
        noise: (B, C, F, H, W) the ODE's start x at sigma = 1.
        text: (B, L, D) prompt states.
        uncond: (B, L, D) empty-prompt states.
        num_steps: Euler steps; a multiple of the student's step count so its timesteps lie on the grid.
        guidance: classifier-free guidance scale (1 = conditional only).
        student_steps: the student's step list before warping.
        shift: flow shift of the grid (and of the student's timesteps).

    Returns:
        The states at the warped student timesteps and the end point.

    """
    keep = _grid_indices(num_steps, student_steps)
    sigmas = ode_sigmas(num_steps, shift)
    b = noise.shape[0]
    both = torch.cat([text, uncond]).to(teacher.device)
    ctx = teacher.encode_text(both)
    x = noise.float().to(teacher.device)
    states: dict[int, Tensor] = {}
    for i in range(num_steps):
        if i in keep:
            states[i] = x.clone()
        t = torch.full((2 * b,), float(sigmas[i]) * NUM_TRAIN_TIMESTEPS, device=x.device)
        v_cond, v_uncond = teacher(torch.cat([x, x]), t, ctx).float().chunk(2)
        v = v_uncond + guidance * (v_cond - v_uncond)
        x = x + float(sigmas[i + 1] - sigmas[i]) * v
    timesteps = tuple(float(sigmas[i]) * NUM_TRAIN_TIMESTEPS for i in keep)
    return OdeTrajectory(states=torch.stack([states[i] for i in keep], dim=1), timesteps=timesteps, x0=x)


def ode_regression_loss(
    student: WanModel,
    trajectory: OdeTrajectory,
    text: Tensor | TextContext,
    memory: MemoryConfig,
    generator: torch.Generator,
) -> Tensor:
    """Teacher-forced chunk-wise regression x_tk -> x0 through the student's memory (mean squared error).

    Per chunk and sample a level k is drawn uniformly from the K student timesteps; the student predicts x0 from
    the chunk's ODE state at that level with gradient, then a t = 0 pass without gradient commits the chunk's clean
    ODE end point to the memory (cached K/V detached), as the clean commit pass does at inference.

    Args:
        student: causal student in training mode.
        trajectory: pairs from :func:`teacher_trajectory`, F a multiple of the chunk size.
        text: (B, L, D) prompt states or their :class:`TextContext`.
        memory: the student's inference memory configuration.
        generator: CPU generator of the level draws.

    Returns:
        Scalar loss, the mean over every frame.

    """
    states, x0 = trajectory.states, trajectory.x0  # (B, K, C, F, H, W), (B, C, F, H, W)
    b, k, _, f = states.shape[:4]
    chunk = memory.chunk_frames
    if f % chunk:
        raise ValueError(f"trajectory frames ({f}) must be whole chunks of {chunk}")
    ctx = text if isinstance(text, TextContext) else student.encode_text(text)  # with grad: the text layers learn too
    levels_t = torch.tensor(trajectory.timesteps, dtype=torch.float32)
    mem = SlowFastMemory(memory, student.config)
    losses = []
    for start in range(0, f, chunk):
        frames = range(start, start + chunk)
        mem.begin_chunk(frames)
        level = torch.randint(k, (b,), generator=generator)  # (B,)
        x_t = states[torch.arange(b), level][:, :, start : start + chunk]  # (B, C, chunk, H, W)
        t = levels_t[level][:, None].expand(b, chunk).to(student.device)  # (B, chunk)
        flow = student(x_t, t, ctx, attention=mem.attention()).float()
        target = x0[:, :, start : start + chunk]
        losses.append(F.mse_loss(x0_from_flow(x_t, flow, t / NUM_TRAIN_TIMESTEPS), target))
        with torch.no_grad():
            student(target, torch.zeros(b, chunk, device=target.device), ctx, attention=mem.attention(commit=True),
                    kv_only=True)
        mem.end_chunk()
    return torch.stack(losses).mean()
