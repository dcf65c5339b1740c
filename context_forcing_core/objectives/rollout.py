"""Student self-rollout for DMD training: exactly the inference path, with one gradient-carrying exit step.

Self-Forcing / CF Sec. 5: the student generates its own context chunk by chunk through the Slow-Fast Memory, as at
inference. One random exit step, shared by the chunks that carry gradient, decides how many denoising steps run;
only that step records autograd, and only for the target chunks (the last ``target_frames`` frames). Under the clean
context policy (Stage 2) the context chunks run every step, fully denoised, without gradient. Cached K/V are always
detached (docs/method.md section 7), so no gradient reaches an earlier chunk through the memory.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ..diffusion.sampler import generate_chunk
from ..diffusion.schedule import DEFAULT_SHIFT, DEFAULT_STEPS, warp_timesteps
from ..memory.config import MemoryConfig
from ..memory.slow_fast import SlowFastMemory
from ..memory.trace import MemoryTrace
from ..models.wan import TextContext, WanModel


@dataclass(kw_only=True, slots=True)
class Rollout:
    """A student rollout ready for a distillation loss."""

    latents: Tensor
    """(B, C, F, H, W) float32; frames from ``target_start`` on carry autograd history, the others do not."""
    target_start: int
    """First latent frame of the target (gradient-carrying) chunks."""
    exit_step: int
    """Denoising step whose x0 is the output of every target chunk."""
    trace: MemoryTrace
    """The memory's decisions, as at inference."""


def self_rollout(
    model: WanModel,
    text: Tensor | TextContext,
    *,
    num_latent_frames: int,
    target_frames: int,
    exit_step: int,
    generator: torch.Generator,
    memory: MemoryConfig,
    clean_context: bool = True,
    requires_grad: bool = True,
    steps: Sequence[float] = DEFAULT_STEPS,
    shift: float = DEFAULT_SHIFT,
    latent_size: tuple[int, int] = (60, 104),
) -> Rollout:
    """Roll the student out through its memory; gradient flows only through the exit step of target chunks.

    Args:
        model: the causal student (its parameters may require grad).
        text: (B, L, text_dim) states or a prepared :class:`TextContext`.
        num_latent_frames: rollout length k, whole chunks (Stage 1: 21; Stage 2: the curriculum's sample).
        target_frames: trailing frames that carry gradient (21 in both stages), whole chunks.
        exit_step: index into the step list, shared by the target chunks (drawn once per iteration).
        generator: CPU generator of all noise draws; the same seed with ``exit_step = len(steps) - 1`` reproduces
            :func:`~context_forcing_core.diffusion.sampler.generate` exactly.
        memory: the student's memory configuration (Stage 1 and 2 use the inference memory).
        clean_context: context chunks fully denoised (CF Stage 2); False applies the exit step to every chunk
            (Self-Forcing Stage 1).
        requires_grad: record autograd at the exit step of target chunks; False for the critic's samples.
        steps: denoising step list before warping.
        shift: flow shift.
        latent_size: latent (H, W).

    """
    chunk = memory.chunk_frames
    for name, value in (("num_latent_frames", num_latent_frames), ("target_frames", target_frames)):
        if value <= 0 or value % chunk:
            raise ValueError(f"{name} must be a positive multiple of the chunk size {chunk}, got {value}")
    if target_frames > num_latent_frames:
        raise ValueError(f"target_frames ({target_frames}) exceeds the rollout ({num_latent_frames} frames)")
    timesteps = warp_timesteps(steps, shift)
    if not 0 <= exit_step < len(timesteps):
        raise ValueError(f"exit_step must lie in [0, {len(timesteps) - 1}], got {exit_step}")
    with torch.set_grad_enabled(requires_grad):  # the text embedding and cross-attention K/V layers learn too
        ctx = text if isinstance(text, TextContext) else model.encode_text(text)
    mem = SlowFastMemory(memory, model.config)
    target_start = num_latent_frames - target_frames
    chunks, trace = [], MemoryTrace()
    for start in range(0, num_latent_frames, chunk):
        is_target = start >= target_start
        exit_here = exit_step if is_target or not clean_context else len(timesteps) - 1
        x0, step = generate_chunk(model, mem, ctx, range(start, start + chunk), timesteps, latent_size=latent_size,
                                  generator=generator, exit_step=exit_here, grad=is_target and requires_grad)
        chunks.append(x0)
        trace.chunks.append(step)
    return Rollout(latents=torch.cat(chunks, dim=2), target_start=target_start, exit_step=exit_step, trace=trace)
