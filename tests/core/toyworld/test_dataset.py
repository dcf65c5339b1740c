"""Toy datasets: determinism in (seed, index), ground truth consistency, DataLoader batching."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from context_forcing_core.toyworld.camera import render_video
from context_forcing_core.toyworld.codec import ToyCodec
from context_forcing_core.toyworld.dataset import ToyClip, ToyClipDataset, ToyPromptDataset
from context_forcing_core.toyworld.prompts import parse_prompt
from context_forcing_core.toyworld.text import ToyTextEncoder
from context_forcing_core.toyworld.world import render_panorama

ENCODER = ToyTextEncoder(width=32, max_tokens=16)


def clips_equal(a: ToyClip, b: ToyClip) -> bool:
    return (torch.equal(a.latents, b.latents) and torch.equal(a.text, b.text) and a.prompt == b.prompt
            and a.scene == b.scene and a.camera == b.camera and np.array_equal(a.offsets, b.offsets))


def test_clip_fields_and_ground_truth():
    ds = ToyClipDataset(6, num_latent_frames=9, seed=1, encoder=ENCODER)
    assert len(ds) == 6
    for i in range(len(ds)):
        clip = ds[i]
        assert clip.latents.shape == (48, 9, 8, 8) and clip.latents.dtype == torch.float32
        assert clip.text.shape == (16, 32) and clip.text.dtype == torch.float32
        assert clip.offsets.shape == (9,) and clip.offsets.dtype == np.int64
        p = parse_prompt(clip.prompt)
        assert (p.palette, p.style, p.motion) == (clip.scene.palette, clip.scene.style, clip.camera.motion)
        assert torch.equal(clip.text, ENCODER.encode([clip.prompt])[0])
        video = torch.from_numpy(render_video(render_panorama(clip.scene), clip.offsets))
        decoded = ToyCodec().decode(clip.latents[None])[0]
        assert torch.equal(decoded, video)


def test_determinism_by_index_and_seed():
    a = ToyClipDataset(5, num_latent_frames=5, seed=3, encoder=ENCODER)
    b = ToyClipDataset(5, num_latent_frames=5, seed=3, encoder=ENCODER)
    other = ToyClipDataset(5, num_latent_frames=5, seed=4, encoder=ENCODER)
    assert clips_equal(a[2], a[2]) and clips_equal(a[2], b[2]) and clips_equal(a[-1], a[4])
    assert not clips_equal(a[2], a[3])
    assert not any(clips_equal(a[i], other[i]) for i in range(5))
    with pytest.raises(IndexError):
        a[5]


def test_clip_dataloader_batch():
    ds = ToyClipDataset(4, num_latent_frames=6, encoder=ENCODER)
    batch = next(iter(DataLoader(ds, batch_size=3, collate_fn=ToyClip.collate)))
    assert batch["latents"].shape == (3, 48, 6, 8, 8)
    assert batch["text"].shape == (3, 16, 32)
    assert batch["offsets"].shape == (3, 6) and batch["offsets"].dtype == torch.int64
    assert len(batch["prompt"]) == len(batch["scene"]) == len(batch["camera"]) == 3
    assert torch.equal(batch["latents"][1], ds[1].latents)


def test_prompt_dataset():
    ds = ToyPromptDataset(50, seed=2, encoder=ENCODER)
    prompt, text = ds[7]
    assert (prompt, ds[7][0]) == (ds[7][0], prompt) and torch.equal(text, ds[7][1])
    assert torch.equal(text, ENCODER.encode([prompt])[0])
    assert [ds[i][0] for i in range(50)] != [ToyPromptDataset(50, seed=3, encoder=ENCODER)[i][0] for i in range(50)]
    assert len({ds[i][0] for i in range(50)}) > 10
    prompts, texts = next(iter(DataLoader(ds, batch_size=4)))
    assert list(prompts) == [ds[i][0] for i in range(4)] and texts.shape == (4, 16, 32)
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
