"""Toy codec: shapes, bit-exact round trips, batching, shape errors, latent statistics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from context_forcing_core.toyworld.codec import ToyCodec
from context_forcing_core.toyworld.constants import PALETTES, STYLES
from context_forcing_core.toyworld.scenes import ScenePrompt, library

CODEC = ToyCodec()


def rendered(palette: str, frames: int = 9, seed: int = 0) -> torch.Tensor:
    """(frames, 3, 32, 32): the palette's library pictures (every style), cycled from picture ``seed``."""
    pictures = np.concatenate([library(ScenePrompt(palette=palette, style=s)) for s in STYLES])  # (12, 3, 32, 32)
    return torch.from_numpy(pictures[(seed + np.arange(frames)) % len(pictures)])


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
def test_round_trip_on_library_pictures_is_bit_exact(palette):
    video = rendered(palette)
    assert torch.equal(CODEC.snap(video), video)  # library colours lie on the 1/256 grid
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


def test_latents_of_library_pictures_are_roughly_standardised():
    z = torch.cat([CODEC.encode(rendered(p, seed=i)) for i, p in enumerate(sorted(PALETTES))], dim=2)
    assert abs(z.mean().item()) < 0.75
    assert 0.3 < z.std().item() < 1.5
    assert z.min() >= -2 and z.max() <= 2
