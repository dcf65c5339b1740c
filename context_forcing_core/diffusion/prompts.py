"""Prompt schedules: several prompts in one rollout, switched at chunk boundaries."""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor


@dataclass(kw_only=True, slots=True)
class PromptSchedule:
    """Prompts and the latent frames where each next one takes over.

    A switch at frame index s applies from the first chunk starting at or after s (LongLive's rule).
    """

    texts: list[Tensor]
    """Text-encoder states (B, L, text_dim), one tensor per prompt."""
    switch_frames: list[int] = field(default_factory=list)
    """Ascending positive latent frame indices; len(texts) - 1 of them."""

    def __post_init__(self) -> None:
        if not self.texts:
            raise ValueError("a prompt schedule needs at least one prompt")
        if len(self.switch_frames) != len(self.texts) - 1:
            raise ValueError(
                f"{len(self.texts)} prompts need {len(self.texts) - 1} switch frames, got {len(self.switch_frames)}"
            )
        if any(b <= a for a, b in zip(self.switch_frames, self.switch_frames[1:])) or any(
            s <= 0 for s in self.switch_frames
        ):
            raise ValueError(f"switch frames must be positive and strictly increasing, got {self.switch_frames}")
        shapes = {(t.ndim, t.shape[0], t.shape[-1]) for t in self.texts}
        if len(shapes) != 1 or next(iter(shapes))[0] != 3:
            got = [tuple(t.shape) for t in self.texts]
            raise ValueError(f"all prompts must be (B, L, D) with the same B and D, got {got}")

    def prompt_at(self, frame: int) -> int:
        """Index of the prompt in force for a chunk starting at ``frame``."""
        return sum(frame >= s for s in self.switch_frames)
