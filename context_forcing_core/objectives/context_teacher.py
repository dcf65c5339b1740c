"""Input assembly of the context teacher (CF Sec. 5): selected context latents prepended to the target in time.

The long teacher lays its context out like the student's Slow-Fast Memory: 3 sink + 12 sparse (one latent per 1.5 s)
+ 6 recent latents, then the 21 target latents; context frames are clean (timestep 0), the loss is on the target only.
The contiguous variant keeps the last sink + slow + recent context frames instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from ..diffusion.schedule import NUM_TRAIN_TIMESTEPS, add_noise
from ..models.wan import WanModel
from .erft import ErftConfig, ErrorBank, Injection, errors_from_prediction, frames_of, inject, should_update_bank
from .flow import flow_matching_loss, sample_timesteps

LayoutMode = Literal["memory", "contiguous"]


@dataclass(kw_only=True, slots=True)
class ContextLayout:
    """Which context latents the teacher sees."""

    mode: LayoutMode = "memory"
    """"memory": sink + strided slow + recent (the student's layout); "contiguous": the last sink + slow + recent."""
    sink: int = 3
    """First frames of the video, always kept (memory mode)."""
    slow: int = 12
    """Most sparse frames taken every ``slow_stride_frames`` before the recent window (memory mode)."""
    slow_stride_frames: int = 6
    """Stride of the sparse frames (6 latents = 1.5 s at 4 latents per second)."""
    recent: int = 6
    """Last context frames, always kept."""
    target: int = 21
    """Target latent frames (the teacher's default ``target_frames``)."""

    def __post_init__(self) -> None:
        if self.mode not in ("memory", "contiguous"):
            raise ValueError(f"ContextLayout.mode must be 'memory' or 'contiguous', got {self.mode!r}")
        for name in ("sink", "slow", "recent"):
            if getattr(self, name) < 0:
                raise ValueError(f"ContextLayout.{name} must be non-negative, got {getattr(self, name)}")
        for name in ("slow_stride_frames", "target"):
            if getattr(self, name) < 1:
                raise ValueError(f"ContextLayout.{name} must be positive, got {getattr(self, name)}")

    @property
    def context_frames(self) -> int:
        """Most context frames the layout holds: sink + slow + recent."""
        return self.sink + self.slow + self.recent


def context_indices(num_context_frames: int, layout: ContextLayout) -> list[int]:
    """Source indices of the context frames the teacher sees, sorted, without duplicates.

    Memory mode: frames 0 .. sink-1, the last ``recent`` frames, and up to ``slow`` frames at r - stride, r - 2 stride,
    ... (r = first recent frame) that lie after the sink. A short context keeps only what this rule selects (frames
    between the stride points are dropped, as in the student's memory). Contiguous mode: the last sink + slow + recent.

    Args:
        num_context_frames: context latents available (frames 0 .. num_context_frames - 1).
        layout: the selection rule.

    """
    n = num_context_frames
    if n < 0:
        raise ValueError(f"num_context_frames must be non-negative, got {n}")
    if layout.mode == "contiguous":
        return list(range(max(n - layout.context_frames, 0), n))
    sink = min(layout.sink, n)
    recent_start = max(n - layout.recent, sink)
    slow = list(range(recent_start - layout.slow_stride_frames, sink - 1, -layout.slow_stride_frames))
    return sorted(set(range(sink)) | set(slow[: layout.slow]) | set(range(recent_start, n)))


@dataclass(kw_only=True, slots=True)
class TeacherInput:
    """Context-teacher input: selected clean context frames then the target frames along time."""

    x: Tensor
    """(B, C, Fc + Ft, H, W)."""
    context_frames: list[int]
    """Source indices (into the rollout) of the Fc context frames, in order."""
    frame_mask: Tensor
    """(Fc + Ft,) bool, True on target frames (where the loss / score applies)."""

    def timesteps_for(self, t: Tensor) -> Tensor:
        """Per-frame timesteps (B, Fc + Ft): 0 on context frames (clean), t (B,) on target frames."""
        mask = self.frame_mask.to(t.device)
        return torch.where(mask.unsqueeze(0), t.reshape(-1, 1), torch.zeros((), dtype=t.dtype, device=t.device))

    @property
    def target_slice(self) -> slice:
        """Slice of the target frames along time in ``x``."""
        return slice(len(self.context_frames), self.x.shape[2])


def assemble(latents: Tensor, target_frames: int, layout: ContextLayout) -> TeacherInput:
    """Build the teacher's input from a rollout (CF Sec. 5).

    Args:
        latents: (B, C, F, H, W); the last ``target_frames`` are the target, the frames before them the context.
        target_frames: Ft, at most F.
        layout: context selection.

    Returns:
        :class:`TeacherInput` with x (B, C, Fc + Ft, H, W).

    """
    f = latents.shape[2]
    if not 0 < target_frames <= f:
        raise ValueError(f"target_frames must lie in [1, {f}], got {target_frames}")
    idx = context_indices(f - target_frames, layout)
    sel = torch.tensor(idx + list(range(f - target_frames, f)), dtype=torch.long, device=latents.device)
    mask = torch.zeros(len(idx) + target_frames, dtype=torch.bool, device=latents.device)
    mask[len(idx) :] = True
    return TeacherInput(x=latents.index_select(2, sel), context_frames=idx, frame_mask=mask)


@dataclass(kw_only=True, slots=True)
class ErftStep:
    """One ERFT flow-matching step of the context teacher."""

    loss: Tensor
    """Scalar flow-matching loss on the target frames (autograd attached)."""
    injection: Injection
    """What was corrupted, per sample."""
    banked: int
    """Samples whose errors went into the banks."""


def erft_step(
    model: WanModel,
    latents: Tensor,
    text: Tensor,
    *,
    target_frames: int,
    layout: ContextLayout,
    bank: ErrorBank,
    erft: ErftConfig,
    generator: torch.Generator,
    shift: float = 5.0,
) -> ErftStep:
    """Context-teacher loss with Error-Recycling Fine-Tuning (CF Sec. 5, SVI), banking this step's errors.

    The clip's last ``target_frames`` are the target; :func:`assemble` selects the context. Banked errors corrupt
    the context, the target x0 and the noise (:func:`inject`); x_t is built from the corrupted target and noise, the
    regression target is the flow to the *clean* target, eps' - x0, so the teacher learns to correct drift. The
    model sees [context at t = 0 ; x_t at t] bidirectionally; the loss covers the target frames only.

    Args:
        model: the (context) teacher, bidirectional.
        latents: (B, C, F, H, W) clean clip latents, F > target_frames.
        text: (B, L, D) prompt states.
        target_frames: Ft.
        layout: context selection (the student's memory layout or contiguous).
        bank: error banks, updated in place.
        erft: injection probabilities (``clean_prob`` 1 turns ERFT off).
        generator: CPU generator of every draw.
        shift: timestep shift of the training distribution.

    """
    inp = assemble(latents, target_frames, layout)
    n_ctx = len(inp.context_frames)
    context, target = inp.x[:, :, :n_ctx], inp.x[:, :, n_ctx:]  # (B, C, Fc, H, W), (B, C, Ft, H, W)
    b = latents.shape[0]
    t = sample_timesteps(b, generator=generator, shift=shift).to(latents.device)  # (B,)
    noise = torch.randn(target.shape, generator=generator).to(target)
    inj = inject(context, target, noise, t, bank, erft, generator)
    sigma = t / NUM_TRAIN_TIMESTEPS
    x_t = add_noise(inj.target, inj.noise, sigma)
    x = torch.cat([inj.context, x_t], dim=2)
    flow = model(x, inp.timesteps_for(t), text)[:, :, n_ctx:]  # (B, C, Ft, H, W)
    loss = flow_matching_loss(flow, target, inj.noise, t)
    keep = should_update_bank(inj.clean, generator, erft)  # (B,) bool
    if bool(keep.any()):
        e_x0, e_noise = errors_from_prediction(flow.detach()[keep], (inj.noise - target)[keep], sigma[keep])
        bank.add(*frames_of(e_x0, t[keep]), kind="x0")
        bank.add(*frames_of(e_noise, t[keep]), kind="noise")
    return ErftStep(loss=loss, injection=inj, banked=int(keep.sum()))
