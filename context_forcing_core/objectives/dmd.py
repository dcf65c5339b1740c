"""Distribution Matching Distillation (DMD) and Contextual DMD (CF Eq. 4-6), as implemented by Self-Forcing.

The student output x is noised at a DMD timestep (:func:`~context_forcing_core.objectives.flow.dmd_timesteps`);
the frozen teacher gives x0_real (with classifier-free guidance, :func:`guided_x0`), the critic ("fake score",
conditional only) gives x0_fake. The gradient on x is g = (x0_fake - x0_real) / mean|x - x0_real|, applied through the
surrogate loss 0.5 ||x - stopgrad(x - g)||^2 (docs/method.md section 5, docs/wan21.md section 10). The critic is trained with
flow matching on detached student samples (:func:`critic_loss`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..diffusion.schedule import NUM_TRAIN_TIMESTEPS, x0_from_flow
from ..models.wan import TextContext, WanModel
from .flow import Weighting, check_frame_mask, flow_matching_loss


@dataclass(frozen=True, slots=True)
class DMDLoss:
    """A DMD surrogate loss with its gradient and diagnostics."""

    loss: Tensor
    """Scalar float64; d loss / d x = grad / n on the selected elements (n = their count), 0 elsewhere."""
    grad: Tensor
    """(B, C, F, H, W) float64 g = (x0_fake - x0_real) / normaliser on the selected frames, 0 elsewhere; detached."""
    metrics: dict[str, Tensor]
    """Detached scalars: "grad_norm" (L2 norm of g), "normaliser" (batch mean of mean|x - x0_real|),
    "x0_gap" (mean |x0_real - x0_fake|), all over the selected frames."""


def guided_x0(x0_cond: Tensor, x0_uncond: Tensor, scale: float) -> Tensor:
    """Classifier-free guidance on x0: x0_cond + scale (x0_cond - x0_uncond) (DMD "real score").

    Self-Forcing's convention: scale 3 (Stage 1) equals Wan's guidance 4 (uncond + 4 (cond - uncond)); CF uses 3 in
    Stage 1 and 5 in Stage 2.

    Args:
        x0_cond: (B, C, F, H, W) teacher x0 with the prompt.
        x0_uncond: same shape, with the negative / empty prompt.
        scale: guidance scale s >= 0.

    Returns:
        (B, C, F, H, W) guided x0.

    """
    if x0_cond.shape != x0_uncond.shape:
        raise ValueError(f"x0_cond and x0_uncond shapes differ: {tuple(x0_cond.shape)} vs {tuple(x0_uncond.shape)}")
    if scale < 0:
        raise ValueError(f"guidance scale must be >= 0, got {scale}")
    return x0_cond + scale * (x0_cond - x0_uncond)


def dmd_loss(x: Tensor, x0_real: Tensor, x0_fake: Tensor, *, frame_mask: Tensor | None = None) -> DMDLoss:
    """DMD surrogate loss (CF Eq. 4; Self-Forcing ``model/dmd.py``), computed in float64.

    g = (x0_fake - x0_real) / mean|x - x0_real|, the normaliser taken per sample over (C, F, H, W) (over the selected
    frames only when ``frame_mask`` is given); loss = 0.5 mean((x - stopgrad(x - g))^2) over the selected elements, so
    d loss / d x = g / n with n the number of selected elements, and a descent step on x moves it along
    x0_real - x0_fake (away from what the critic models, towards the teacher). NaN / inf entries of g (a sample with
    x == x0_real, normaliser 0) are set to 0: such a sample gets no gradient (Self-Forcing's ``nan_to_num`` would map
    inf to the largest float).

    Args:
        x: (B, C, F, H, W) student output (carries autograd); the clean sample before DMD noising.
        x0_real: same shape, teacher (guided) x0 prediction from the noised x; treated as constant.
        x0_fake: same shape, critic x0 prediction from the same noised x; treated as constant.
        frame_mask: optional (F,) bool, the frames that receive gradient (Stage 2 target frames).

    Returns:
        :class:`DMDLoss`.

    """
    if x.ndim != 5 or x0_real.shape != x.shape or x0_fake.shape != x.shape:
        raise ValueError(
            f"x, x0_real and x0_fake must share one (B, C, F, H, W) shape, got "
            f"{tuple(x.shape)}, {tuple(x0_real.shape)}, {tuple(x0_fake.shape)}"
        )
    xd = x.double()
    real, fake = x0_real.detach().double(), x0_fake.detach().double()
    if frame_mask is not None:
        mask = check_frame_mask(frame_mask, x.shape[2]).to(x.device)
        xd, real, fake = xd[:, :, mask], real[:, :, mask], fake[:, :, mask]
    with torch.no_grad():
        normaliser = (xd - real).abs().mean(dim=(1, 2, 3, 4), keepdim=True)  # (B, 1, 1, 1, 1)
        g = torch.nan_to_num((fake - real) / normaliser, nan=0.0, posinf=0.0, neginf=0.0)
    loss = 0.5 * torch.mean((xd - (xd - g).detach()) ** 2)
    full = g
    if frame_mask is not None:
        full = g.new_zeros(x.shape)
        full[:, :, mask] = g
    metrics = {
        "grad_norm": g.norm(),
        "normaliser": normaliser.mean(),
        "x0_gap": (real - fake).abs().mean(),
    }
    return DMDLoss(loss=loss, grad=full, metrics=metrics)


def contextual_dmd_loss(x: Tensor, x0_real: Tensor, x0_fake: Tensor, *, target_frames: int) -> DMDLoss:
    """Contextual DMD (CF Eq. 5-6): :func:`dmd_loss` on the last ``target_frames`` latent frames only.

    Equals ``dmd_loss`` on full-length tensors with a frame mask selecting the last ``target_frames`` frames: the
    normaliser and the mean run over the target, the context frames get zero gradient. x0_real and x0_fake are the
    scores of the target given the *same* student-generated context (:func:`score_with_context`,
    :func:`contextual_scores`).

    Args:
        x: (B, C, F, H, W) student rollout, context then target.
        x0_real: (B, C, target_frames, H, W) teacher x0 of the target given the context.
        x0_fake: (B, C, target_frames, H, W) critic x0 of the target given the same context.
        target_frames: T, 1 <= T <= F.

    Returns:
        :class:`DMDLoss` whose ``grad`` covers the target frames only, (B, C, T, H, W).

    """
    if x.ndim != 5 or not 1 <= target_frames <= x.shape[2]:
        raise ValueError(f"need x (B, C, F, H, W) and 1 <= target_frames <= F, got {tuple(x.shape)}, {target_frames}")
    return dmd_loss(x[:, :, x.shape[2] - target_frames :], x0_real, x0_fake)


def flow_with_context(
    model: WanModel, context: Tensor, x_t_target: Tensor, t: Tensor, text: Tensor | TextContext
) -> tuple[Tensor, Tensor]:
    """Flow of noisy target frames given clean context frames; see :func:`score_with_context`.

    Returns:
        flow (B, C, T, H, W) of the target frames, and t expanded to (B, T) float32.

    """
    if context.ndim != 5 or x_t_target.ndim != 5:
        raise ValueError(f"context and x_t_target must be 5-D, got {tuple(context.shape)}, {tuple(x_t_target.shape)}")
    b, c, f_t, h, w = x_t_target.shape
    if (context.shape[0], context.shape[1], *context.shape[3:]) != (b, c, h, w):
        raise ValueError(f"context {tuple(context.shape)} does not match the target {tuple(x_t_target.shape)} in B, C, H, W")
    if t.shape == (b,):
        t = t[:, None].expand(b, f_t)
    if t.shape != (b, f_t):
        raise ValueError(f"t must be (B,) or (B, T) = {(b, f_t)}, got {tuple(t.shape)}")
    t = t.to(device=x_t_target.device, dtype=torch.float32)
    timesteps = torch.cat([t.new_zeros(b, context.shape[2]), t], dim=1)
    flow = model(torch.cat([context.to(x_t_target.dtype), x_t_target], dim=2), timesteps, text, attention="bidirectional")
    return flow[:, :, context.shape[2] :].to(x_t_target.dtype), t


def score_with_context(
    model: WanModel, context: Tensor, x_t_target: Tensor, t: Tensor, text: Tensor | TextContext
) -> Tensor:
    """x0 of noisy target frames given clean context frames, from a bidirectional model (teacher or critic).

    The model sees [context at t = 0 ; x_t_target at t] concatenated along frames, with per-frame timesteps, and
    x0 = x_t - sigma v is returned for the target frames only (CF Eq. 5-6). Runs with autograd as the caller set it
    (wrap in ``torch.no_grad()`` for the DMD scores).

    Args:
        model: bidirectional :class:`WanModel` (teacher / context teacher or critic).
        context: (B, C, Fc, H, W) clean student-generated context (Fc may be 0).
        x_t_target: (B, C, T, H, W) noised target, x_t = add_noise(x_target, eps, t / 1000).
        t: (B,) timestep per sample or (B, T) per target frame, in [0, 1000].
        text: (B, L, text_dim) text states or a prepared :class:`TextContext`.

    Returns:
        (B, C, T, H, W) x0 prediction of the target frames.

    """
    flow, t = flow_with_context(model, context, x_t_target, t, text)
    return x0_from_flow(x_t_target, flow, t / NUM_TRAIN_TIMESTEPS)


@torch.no_grad()
def contextual_scores(
    teacher: WanModel,
    critic: WanModel,
    context: Tensor,
    x_t_target: Tensor,
    t: Tensor,
    text: Tensor | TextContext,
    uncond_text: Tensor | TextContext,
    *,
    guidance_scale: float,
) -> tuple[Tensor, Tensor]:
    """(x0_real, x0_fake) of the target for Contextual DMD; both models see the SAME student context.

    x0_real = :func:`guided_x0` of the teacher's conditional and unconditional scores; x0_fake is the critic's
    conditional score (no guidance). Runs without autograd; the context is detached.

    Args:
        teacher: frozen bidirectional (context) teacher.
        critic: bidirectional critic (fake score).
        context: (B, C, Fc, H, W) clean student-generated context.
        x_t_target: (B, C, T, H, W) noised student target.
        t: (B,) or (B, T) timesteps.
        text: prompt states / :class:`TextContext`.
        uncond_text: negative / empty prompt states for guidance.
        guidance_scale: s (CF: 5 in Stage 2).

    Returns:
        x0_real and x0_fake, each (B, C, T, H, W).

    """
    context, x_t_target = context.detach(), x_t_target.detach()
    cond = score_with_context(teacher, context, x_t_target, t, text)
    uncond = score_with_context(teacher, context, x_t_target, t, uncond_text)
    fake = score_with_context(critic, context, x_t_target, t, text)
    return guided_x0(cond, uncond, guidance_scale), fake


def critic_loss(
    critic_flow: Tensor,
    x_gen_detached: Tensor,
    noise: Tensor,
    t: Tensor,
    *,
    weighting: Weighting = "none",
    frame_mask: Tensor | None = None,
) -> Tensor:
    """Critic ("fake score") loss: flow matching on detached student samples (DMD; Self-Forcing ``critic_loss``).

    The critic is run conditionally on x_t = add_noise(x_gen, noise, t / 1000) and regresses eps - x_gen; x_gen is
    detached here so no gradient reaches the generator. Stage 2: pass the target-frame mask (or score the target
    given the context with :func:`score_with_context`-style inputs) so only the target is regressed.

    Args:
        critic_flow: (B, C, F, H, W) critic flow prediction at x_t.
        x_gen_detached: (B, C, F, H, W) student samples.
        noise: (B, C, F, H, W) eps used for x_t.
        t: (B,) or (B, F) timesteps.
        weighting: :func:`~context_forcing_core.objectives.flow.timestep_weight` scheme.
        frame_mask: optional (F,) bool frames to regress.

    Returns:
        Scalar loss.

    """
    return flow_matching_loss(critic_flow, x_gen_detached.detach(), noise, t, weighting=weighting, frame_mask=frame_mask)
