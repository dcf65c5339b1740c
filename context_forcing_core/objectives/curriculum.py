"""Long self-rollout curriculum, shared exit step and clean context policy (CF Sec. 5, Stage 2 / CDMD).

The rollout length k ~ U(k_min, N_max(step)) grows with training (authors: N_max from 84 to 105 latent frames over
600 steps). One exit step is drawn per iteration and shared by all chunks (Self-Forcing); under the clean context
policy only the target chunks (the last ``target_frames``) exit there, context chunks run every denoising step
(applied by ``objectives.rollout.self_rollout``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(kw_only=True, slots=True)
class RolloutCurriculum:
    """Schedule of the Stage-2 rollout length, in latent frames."""

    k_min: int = 21
    """Shortest rollout (whole chunks, at least ``target_frames``)."""
    n_start: int = 84
    """Longest rollout at step 0."""
    n_end: int = 105
    """Longest rollout from ``ramp_steps`` on."""
    ramp_steps: int = 600
    """Training steps of the linear ramp from ``n_start`` to ``n_end`` (0: ``n_end`` from the start)."""
    chunk_frames: int = 3
    """Latent frames per autoregressive chunk; every length is a whole number of chunks."""
    target_frames: int = 21
    """Trailing frames scored by the teacher and critic (the gradient-carrying target)."""

    def __post_init__(self) -> None:
        if self.chunk_frames < 1:
            raise ValueError(f"RolloutCurriculum.chunk_frames must be positive, got {self.chunk_frames}")
        if self.ramp_steps < 0:
            raise ValueError(f"RolloutCurriculum.ramp_steps must be non-negative, got {self.ramp_steps}")
        for name in ("k_min", "n_start", "n_end", "target_frames"):
            value = getattr(self, name)
            if value < 1 or value % self.chunk_frames:
                raise ValueError(
                    f"RolloutCurriculum.{name} must be a positive multiple of chunk_frames "
                    f"({self.chunk_frames}), got {value}"
                )
        if self.k_min < self.target_frames:
            raise ValueError(f"k_min ({self.k_min}) must be at least target_frames ({self.target_frames})")
        if not self.k_min <= self.n_start <= self.n_end:
            raise ValueError(f"need k_min <= n_start <= n_end, got {self.k_min}, {self.n_start}, {self.n_end}")


def max_rollout(step: int, cfg: RolloutCurriculum) -> int:
    """N_max(step): linear from ``n_start`` to ``n_end`` over ``ramp_steps``, then flat; rounded down to whole chunks."""
    if step < 0:
        raise ValueError(f"step must be non-negative, got {step}")
    frac = 1.0 if cfg.ramp_steps == 0 else min(step / cfg.ramp_steps, 1.0)
    n = cfg.n_start + frac * (cfg.n_end - cfg.n_start)
    return int(n // cfg.chunk_frames) * cfg.chunk_frames


def sample_rollout(step: int, cfg: RolloutCurriculum, generator: torch.Generator) -> int:
    """Rollout length k, uniform over the whole-chunk lengths in [k_min, max_rollout(step)]."""
    choices = range(cfg.k_min, max_rollout(step, cfg) + 1, cfg.chunk_frames)
    return choices[int(torch.randint(len(choices), (1,), generator=generator, device=generator.device))]


def exit_step(num_steps: int, generator: torch.Generator) -> int:
    """One random denoising-step index in [0, num_steps), shared by all chunks of an iteration (Self-Forcing)."""
    if num_steps < 1:
        raise ValueError(f"num_steps must be positive, got {num_steps}")
    return int(torch.randint(num_steps, (1,), generator=generator, device=generator.device))

