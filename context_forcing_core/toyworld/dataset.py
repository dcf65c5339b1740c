"""Datasets of the scene world (clips of visits, and prompts alone) with their text embeddings, deterministic in
(seed, index).

Batching: :class:`SceneClip` is a dataclass, which ``torch.utils.data.default_collate`` cannot batch, so pass
``collate_fn=SceneClip.collate`` to the ``DataLoader``; it returns a dict. :class:`ScenePromptDataset` items are
``(prompt, text)`` tuples, which the default collate turns into ``[list of B str, (B, max_tokens, width) tensor]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from .scenes import LIBRARY_SIZE, all_scene_prompts, library_latents, return_schedule, schedule_latents
from .text import ToyTextEncoder


def _item_rng(seed: int, index: int, length: int) -> np.random.Generator:
    if not -length <= index < length:
        raise IndexError(f"index {index} out of range for a dataset of {length}")
    return np.random.default_rng(np.random.SeedSequence([seed, index % length]))


class _TextCache:
    """Text embeddings cached per distinct prompt text (returned as copies)."""

    def __init__(self, encoder: ToyTextEncoder | None) -> None:
        self.encoder = encoder if encoder is not None else ToyTextEncoder()
        self._cache: dict[str, Tensor] = {}

    def __call__(self, text: str) -> Tensor:
        if text not in self._cache:
            self._cache[text] = self.encoder.encode([text])[0]
        return self._cache[text].clone()


class ScenePromptDataset(Dataset):
    """Random scene-world prompts (``scenes.ScenePrompt``, uniformly) with their text embeddings, for the data-free
    stages; item i is ``(prompt text, (max_tokens, width) float32 embedding)``, drawn from ``SeedSequence([seed, i])``.

    Args:
        num_prompts: Dataset length.
        seed: Dataset seed.
        encoder: Text encoder (default ``ToyTextEncoder()``).

    """

    def __init__(self, num_prompts: int, seed: int = 0, encoder: ToyTextEncoder | None = None) -> None:
        if num_prompts < 0:
            raise ValueError(f"num_prompts must be >= 0, got {num_prompts}")
        self.num_prompts, self.seed = num_prompts, seed
        self._text = _TextCache(encoder)
        self._prompts = all_scene_prompts()

    def __len__(self) -> int:
        return self.num_prompts

    def __getitem__(self, index: int) -> tuple[str, Tensor]:
        rng = _item_rng(self.seed, index, self.num_prompts)
        text = self._prompts[int(rng.integers(len(self._prompts)))].text
        return text, self._text(text)


@dataclass(frozen=True)
class SceneClip:
    """One scene-world training clip: a single visit whose every frame is the same library picture,
    or (context teacher) visits ending in that visit.
    """

    latents: Tensor
    """(48, F, 8, 8) float32 normalised latents; the last visit's frames are ``library_latents(prompt)[picture]``."""
    text: Tensor
    """(max_tokens, width) float32 text embedding of :attr:`prompt`."""
    prompt: str
    """Canonical prompt text of the (last) visit."""
    picture: int
    """Index into that prompt's library."""

    @staticmethod
    def collate(clips: list[SceneClip]) -> dict[str, Any]:
        """Batch clips: ``latents`` (B, 48, F, 8, 8), ``text`` (B, max_tokens, width), ``prompt`` and ``picture``
        lists of length B.
        """
        return {"latents": torch.stack([c.latents for c in clips]), "text": torch.stack([c.text for c in clips]),
                "prompt": [c.prompt for c in clips], "picture": [c.picture for c in clips]}


class SceneClipDataset(Dataset):
    """Random single-visit scene clips for the learned teacher: item i draws a prompt and one of its
    ``LIBRARY_SIZE`` pictures (uniformly) from ``SeedSequence([seed, i])``.
    """

    def __init__(self, num_clips: int, num_latent_frames: int = 21, seed: int = 0,
                 encoder: ToyTextEncoder | None = None) -> None:
        if num_clips < 0 or num_latent_frames < 1:
            raise ValueError(f"need num_clips >= 0 and num_latent_frames >= 1, got {num_clips}, {num_latent_frames}")
        self.num_clips, self.num_latent_frames, self.seed = num_clips, num_latent_frames, seed
        self._text = _TextCache(encoder)
        self._prompts = all_scene_prompts()

    def __len__(self) -> int:
        return self.num_clips

    def __getitem__(self, index: int) -> SceneClip:
        rng = _item_rng(self.seed, index, self.num_clips)
        prompt = self._prompts[int(rng.integers(len(self._prompts)))]
        picture = int(rng.integers(LIBRARY_SIZE))
        frame = library_latents(prompt)[picture]  # (48, 8, 8)
        return SceneClip(latents=frame[:, None].expand(-1, self.num_latent_frames, -1, -1).clone(),
                         text=self._text(prompt.text), prompt=prompt.text, picture=picture)


class SceneContextClipDataset(Dataset):
    """Context-teacher clips of the scene world: ``context_frames`` of visits, then a ``target_frames`` visit that
    returns to an earlier scene half of the time (:func:`~.scenes.return_schedule`; item i seeded by
    ``SeedSequence([seed, i])``). The text is the target visit's prompt.
    """

    def __init__(self, num_clips: int, *, context_frames: int, target_frames: int, seed: int = 0,
                 encoder: ToyTextEncoder | None = None) -> None:
        if num_clips < 0 or context_frames < 1 or target_frames < 1:
            raise ValueError(f"need num_clips >= 0 and positive frame counts, got {num_clips}, {context_frames}, "
                             f"{target_frames}")
        self.num_clips, self.context_frames, self.target_frames, self.seed = num_clips, context_frames, target_frames, seed
        self._text = _TextCache(encoder)

    def __len__(self) -> int:
        return self.num_clips

    def __getitem__(self, index: int) -> SceneClip:
        rng = _item_rng(self.seed, index, self.num_clips)
        schedule = return_schedule(rng, context_frames=self.context_frames, target_frames=self.target_frames)
        target = schedule.visits[-1]
        return SceneClip(latents=schedule_latents(schedule), text=self._text(target.prompt.text),
                         prompt=target.prompt.text, picture=target.picture)
