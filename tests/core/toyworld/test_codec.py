"""Toy codec: shapes, bit-exact round trips, batching, shape errors, latent statistics; toy text encoder."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from context_forcing_core.toyworld.camera import CameraSpec, camera_path, render_video
from context_forcing_core.toyworld.codec import ToyCodec
from context_forcing_core.toyworld.prompts import all_prompts
from context_forcing_core.toyworld.text import ToyTextEncoder
from context_forcing_core.toyworld.world import PALETTES, SceneSpec, render_panorama

CODEC = ToyCodec()


def rendered(palette: str, frames: int = 9, seed: int = 0) -> torch.Tensor:
    pano = render_panorama(SceneSpec(palette=palette, seed=seed))
    return torch.from_numpy(render_video(pano, camera_path(CameraSpec(seed=seed), frames, pano.shape[-1])))


def test_attributes_and_shapes():
    assert (CODEC.latent_channels, CODEC.spatial_factor, CODEC.temporal_factor) == (48, 4, 1)
    z = CODEC.encode(rendered("desert", frames=7))
    assert z.shape == (1, 48, 7, 8, 8) and z.dtype == torch.float32
    assert CODEC.decode(z).shape == (1, 7, 3, 32, 32)


def test_layout_is_block_space_to_depth():
    x = torch.rand(1, 2, 3, 32, 32)
    raw = CODEC.space_to_depth(x)
    # channel c*16 + i*4 + j of cell (h, w) is pixel (4h + i, 4w + j) of colour c
    assert raw[0, 1 * 16 + 2 * 4 + 3, 1, 5, 6] == x[0, 1, 1, 4 * 5 + 2, 4 * 6 + 3]
    assert torch.equal(CODEC.encode(x), CODEC.normalize(raw))
    assert torch.equal(CODEC.depth_to_space(CODEC.denormalize(CODEC.encode(x))), CODEC.decode(CODEC.encode(x)))


@pytest.mark.parametrize("palette", sorted(PALETTES))
def test_round_trip_on_rendered_video_is_bit_exact(palette):
    video = rendered(palette)
    assert torch.equal(CODEC.snap(video), video)  # rendered colours lie on the 1/256 grid
    assert torch.equal(CODEC.decode(CODEC.encode(video))[0], video)


def test_round_trip_on_random_data():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(3, 4, 3, 32, 32, generator=gen)  # multiples of 2**-24: on the grid
    assert torch.equal(CODEC.decode(CODEC.encode(x)), x)
    fine = x * 1e-3  # off the grid: equals the snapped input
    assert not torch.equal(CODEC.snap(fine), fine)
    assert torch.equal(CODEC.decode(CODEC.encode(fine)), CODEC.snap(fine))
    z = CODEC.encode(fine)
    assert torch.equal(CODEC.encode(CODEC.decode(z)), z)


def test_batch_matches_single():
    x = torch.rand(2, 3, 3, 32, 32)
    z = CODEC.encode(x)
    assert z.shape == (2, 48, 3, 8, 8)
    assert torch.equal(z[1:], CODEC.encode(x[1]))


@pytest.mark.parametrize("shape", [(3, 32, 32), (2, 3, 32, 31), (1, 2, 4, 32, 32), (1, 1, 2, 3, 32, 32)])
def test_bad_frame_shapes(shape):
    with pytest.raises(ValueError, match=r"\(T, 3, 32, 32\)"):
        CODEC.encode(torch.zeros(shape))


@pytest.mark.parametrize("shape", [(48, 2, 8, 8), (1, 47, 2, 8, 8), (1, 48, 2, 8, 9)])
def test_bad_latent_shapes(shape):
    with pytest.raises(ValueError, match=r"\(B, 48, T, 8, 8\)"):
        CODEC.decode(torch.zeros(shape))


def test_latents_of_real_videos_are_roughly_standardised():
    z = torch.cat([CODEC.encode(rendered(p, seed=i)) for i, p in enumerate(sorted(PALETTES))], dim=2)
    assert abs(z.mean().item()) < 0.75
    assert 0.3 < z.std().item() < 1.5
    assert z.min() >= -2 and z.max() <= 2


ENCODER = ToyTextEncoder(width=64, max_tokens=8)


def test_encoder_shapes_padding_and_truncation():
    out = ENCODER.encode(["a desert panorama", "", "one two three four five six seven eight nine ten"])
    assert out.shape == (3, 8, 64) and out.dtype == torch.float32
    assert out[0, :3].abs().sum(dim=1).min() > 0 and torch.all(out[0, 3:] == 0)
    assert torch.all(out[1] == 0)
    assert torch.all(out[2].abs().sum(dim=1) > 0)  # truncated to max_tokens, no padding
    assert 0.5 < out[0, :3].std().item() < 2.0


def test_encoder_determinism_and_distinct_prompts():
    texts = [p.text for p in all_prompts()]
    a = ENCODER.encode(texts)
    assert torch.equal(a, ToyTextEncoder(width=64, max_tokens=8).encode(texts))
    flat = a.flatten(1)
    assert torch.cdist(flat, flat).add(torch.eye(len(texts)) * 1e9).min() > 1.0
    assert not torch.equal(a, ToyTextEncoder(width=64, max_tokens=8, seed=1).encode(texts))


def test_word_order_and_unknown_words():
    a, b, c, d = ENCODER.encode(["slow pan", "pan slow", "zyzzyva quux", "zyzzyva quux"])
    assert not torch.equal(a, b)
    assert torch.equal(c, d) and torch.all(c[:2].abs().sum(dim=1) > 0)
    assert not torch.equal(c[0], ENCODER.encode(["quux"])[0, 0])
    assert torch.equal(ENCODER.encode(["Slow, PAN!"]), ENCODER.encode(["slow pan"]))


def test_encoder_is_identical_across_processes():
    code = (
        "import sys, torch; from context_forcing_core.toyworld.text import ToyTextEncoder; "
        "x = ToyTextEncoder(width=64, max_tokens=8).encode(['neon circling zyzzyva']); "
        "sys.stdout.write(x.numpy().tobytes().hex())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONHASHSEED": "123", "PATH": ""}, cwd=None).stdout
    here = ENCODER.encode(["neon circling zyzzyva"]).numpy()
    assert np.array_equal(np.frombuffer(bytes.fromhex(out), dtype=np.float32).reshape(here.shape), here)
