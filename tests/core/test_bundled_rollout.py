"""The bundled toy student's output is pinned: a rollout of the demo story through the ``context_forcing`` memory,
recorded before the toy world was reshaped (``bundled_rollout.safetensors``), must come out again.

Regenerate only when the bundled student itself is replaced: ``python -m tests.core.test_bundled_rollout``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from context_forcing_core.diffusion.sampler import generate
from context_forcing_core.student import BUNDLED_TOY_STUDENT, load_student
from context_forcing_core.toyworld.scene_rollout import encoder_for, prompt_schedule
from context_forcing_core.toyworld.story import story_schedule

FIXTURE = Path(__file__).parent / "fixtures" / "bundled_rollout.safetensors"
FRAMES = 60
"""Latent frames of the pinned rollout (15 toy seconds: first visits, cuts and two returns)."""


def bundled_rollout() -> dict[str, torch.Tensor]:
    """Latents (1, C, FRAMES, h, w) and text states of the story's first prompt, from the bundled student."""
    student = load_student(BUNDLED_TOY_STUDENT, dtype=torch.float32)
    schedule = story_schedule()
    text = student.encode_prompt(schedule.visits[0].prompt.text)  # (1, L, D)
    prompts = prompt_schedule([schedule], encoder_for(student.model))
    gen = generate(student.model, prompts, num_latent_frames=FRAMES, memory="context_forcing", seed=0,
                   latent_size=student.latent_size(0, 0))
    return {"latents": gen.latents.float().contiguous(), "text": text.contiguous()}


def test_bundled_student_rollout_is_unchanged():
    expected = load_file(FIXTURE)
    got = bundled_rollout()
    torch.testing.assert_close(got["text"], expected["text"], rtol=0, atol=0)
    torch.testing.assert_close(got["latents"], expected["latents"], rtol=1e-5, atol=1e-5)


if __name__ == "__main__":
    save_file(bundled_rollout(), FIXTURE)
    print(f"wrote {FIXTURE}")
