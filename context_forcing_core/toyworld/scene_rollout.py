"""Scene schedules as prompt schedules, and a student's video of a schedule through its memory."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from ..diffusion.prompts import PromptSchedule
from ..diffusion.sampler import Generation, generate
from ..memory.config import MemoryConfig
from ..models.wan import WanModel
from .codec import ToyCodec
from .scenes import SceneSchedule
from .text import ToyTextEncoder


def prompt_schedule(schedules: Sequence[SceneSchedule], encoder: ToyTextEncoder) -> PromptSchedule:
    """One :class:`PromptSchedule` for a batch of scene schedules that switch on the same frames (batch = the
    schedules, one text per visit).
    """
    first = schedules[0]
    if any(s.switch_frames != first.switch_frames for s in schedules):
        raise ValueError("the schedules of one batch must switch on the same frames (see scenes.relabel_schedule)")
    texts = [encoder.encode([s.visits[i].prompt.text for s in schedules]) for i in range(len(first.visits))]
    return PromptSchedule(texts=texts, switch_frames=first.switch_frames)


def encoder_for(model: WanModel) -> ToyTextEncoder:
    """The toy text encoder at the model's text width and length."""
    return ToyTextEncoder(width=model.config.text_dim, max_tokens=model.config.text_len)


@torch.no_grad()
def video_of(model: WanModel, schedules: Sequence[SceneSchedule], *, memory: MemoryConfig | str,
             seed: int) -> tuple[Tensor, Generation]:
    """The student's video of a batch of schedules (same timing).

    Returns:
        (B, T, 3, 32, 32) float32 RGB in [0, 1] (clamped) and the generation (latents, memory trace).

    """
    gen = generate(model, prompt_schedule(schedules, encoder_for(model)), num_latent_frames=schedules[0].num_frames,
                   memory=memory, seed=seed, latent_size=(ToyCodec().latent_size,) * 2)
    return ToyCodec().decode(gen.latents.float().cpu()).clamp(0, 1), gen
