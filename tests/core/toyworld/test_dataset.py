"""Scene-world datasets: determinism in (seed, index), library pictures as ground truth, DataLoader batching."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from context_forcing_core.toyworld.dataset import ScenePromptDataset
from context_forcing_core.toyworld.scenes import all_scene_prompts
from context_forcing_core.toyworld.text import ToyTextEncoder

ENCODER = ToyTextEncoder(width=32, max_tokens=16)


def test_prompt_dataset():
    ds = ScenePromptDataset(50, seed=2, encoder=ENCODER)
    prompt, text = ds[7]
    assert (prompt, ds[7][0]) == (ds[7][0], prompt) and torch.equal(text, ds[7][1])
    assert torch.equal(text, ENCODER.encode([prompt])[0])
    assert prompt in {p.text for p in all_scene_prompts()}
    assert [ds[i][0] for i in range(50)] != [ScenePromptDataset(50, seed=3, encoder=ENCODER)[i][0] for i in range(50)]
    assert len({ds[i][0] for i in range(50)}) > 10
    prompts, texts = next(iter(DataLoader(ds, batch_size=4)))
    assert list(prompts) == [ds[i][0] for i in range(4)] and texts.shape == (4, 16, 32)
    assert ds[-1][0] == ds[49][0]
    with pytest.raises(IndexError):
        ds[50]


def test_scene_clips_are_still_library_pictures_drawn_uniformly():
    from context_forcing_core.toyworld.dataset import SceneClip, SceneClipDataset
    from context_forcing_core.toyworld.scenes import LIBRARY_SIZE, all_scene_prompts, library_latents

    ds = SceneClipDataset(400, num_latent_frames=5, seed=3)
    by_text = {p.text: p for p in all_scene_prompts()}
    clip = ds[7]
    assert torch.equal(clip.latents, library_latents(by_text[clip.prompt])[clip.picture][:, None].expand(-1, 5, -1, -1))
    assert torch.equal(ds[7].latents, clip.latents)  # the same item every time
    counts = np.bincount([ds[i].picture for i in range(400)], minlength=LIBRARY_SIZE)
    assert counts.min() > 70  # ~100 each
    batch = SceneClip.collate([ds[0], ds[1]])
    assert batch["latents"].shape == (2, 48, 5, 8, 8) and len(batch["picture"]) == 2


def test_scene_context_clips_end_in_their_prompts_visit():
    from context_forcing_core.toyworld.dataset import SceneContextClipDataset
    from context_forcing_core.toyworld.scenes import all_scene_prompts, library_latents

    ds = SceneContextClipDataset(50, context_frames=24, target_frames=6, seed=2)
    by_text = {p.text: p for p in all_scene_prompts()}
    for i in range(10):
        clip = ds[i]
        assert clip.latents.shape == (48, 30, 8, 8) and torch.equal(ds[i].latents, clip.latents)
        picture = library_latents(by_text[clip.prompt])[clip.picture][:, None]
        assert torch.equal(clip.latents[:, -6:], picture.expand(-1, 6, -1, -1))
        assert not torch.equal(clip.latents[:, -7], clip.latents[:, -6])  # a cut before the target visit
