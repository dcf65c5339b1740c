"""Long continuation by the context teacher: window after window, each conditioned on what came before (CF Sec. 5).

The context teacher is trained to denoise ``layout.target`` frames after a clean context laid out like the student's
memory (:func:`~.context_teacher.context_indices`). Run window by window from a given context (e.g. what a student
generated), it shows how far the teacher itself keeps a scene consistent: the evaluation's "context teacher, with and
without error recycling, continuing student-generated context".
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from ..diffusion.schedule import DEFAULT_SHIFT, NUM_TRAIN_TIMESTEPS
from ..models.wan import WanModel
from .context_teacher import ContextLayout, assemble
from .ode import ode_sigmas


@torch.no_grad()
def continue_with_teacher(
    teacher: WanModel,
    context: Tensor,
    text: Tensor,
    uncond: Tensor,
    *,
    num_frames: int,
    layout: ContextLayout | None = None,
    num_steps: int = 24,
    guidance: float = 3.0,
    shift: float = DEFAULT_SHIFT,
    generator: torch.Generator | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Tensor:
    """Generate ``num_frames`` latent frames after ``context`` with the context teacher's guided flow ODE.

    Window w holds the next ``layout.target`` frames (the last one may be shorter). Its context is chosen as in
    training (:func:`~.context_teacher.assemble`: ``context_indices`` of the given context plus the windows already
    generated), clean at t = 0; the window starts from Gaussian noise and takes Euler steps
    x <- x + (sigma_{i+1} - sigma_i) v on the same shifted grid as :func:`~.ode.teacher_trajectory`,
    v = v_uncond + guidance (v_cond - v_uncond). With an empty
    context one window equals ``teacher_trajectory(noise).x0``.

    Args:
        teacher: the (context) teacher, bidirectional.
        context: (B, C, Fc, H, W) clean latents to continue (Fc may be 0).
        text: (B, L, D) prompt states.
        uncond: (B, L, D) empty-prompt states.
        num_frames: latent frames to generate.
        layout: context selection and window length (default: the student's memory layout, 21-frame windows).
        num_steps: Euler steps per window.
        guidance: classifier-free guidance scale.
        shift: flow shift of the sigma grid.
        generator: CPU generator of the noise (same generator state, same output).
        progress: called with (frames done, num_frames) after every window.

    Returns:
        (B, C, num_frames, H, W) float32 latents (the continuation only).

    """
    layout = layout or ContextLayout()
    if context.ndim != 5:
        raise ValueError(f"context must be (B, C, F, H, W), got shape {tuple(context.shape)}")
    if num_frames < 1:
        raise ValueError(f"num_frames must be positive, got {num_frames}")
    b, c, _, h, w = context.shape
    sigmas = ode_sigmas(num_steps, shift)
    ctx_text = teacher.encode_text(torch.cat([text, uncond]).to(teacher.device))
    video = context.float().to(teacher.device)  # (B, C, F so far, H, W)
    done = 0
    while done < num_frames:
        n = min(layout.target, num_frames - done)
        x = torch.randn((b, c, n, h, w), generator=generator).to(video.device)
        inp = assemble(torch.cat([video, x], dim=2), n, layout)  # the training layout: context then target
        ctx = inp.x[:, :, : len(inp.context_frames)]  # (B, C, Fc, H, W)
        for i in range(num_steps):
            t = inp.timesteps_for(torch.full((2 * b,), float(sigmas[i]) * NUM_TRAIN_TIMESTEPS, device=x.device))
            both = torch.cat([ctx, x], dim=2).repeat(2, 1, 1, 1, 1)  # (2B, C, Fc + n, H, W): cond, uncond
            v_cond, v_uncond = teacher(both, t, ctx_text).float()[:, :, inp.target_slice].chunk(2)
            x = x + float(sigmas[i + 1] - sigmas[i]) * (v_uncond + guidance * (v_cond - v_uncond))
        video = torch.cat([video, x], dim=2)
        done += n
        if progress is not None:
            progress(done, num_frames)
    return video[:, :, -num_frames:]
