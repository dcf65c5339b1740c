"""Learned absolute positions (WanConfig.position_grid): what RoPE alone cannot do, and the grid check."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from conftest import random_model

from context_forcing_core.models.config import micro


def _spatial_spread(cfg) -> float:
    """Largest difference between the flows of two tokens (2 x 2 patches) of a spatially constant input."""
    model = random_model(cfg)
    latents = torch.randn(1, cfg.in_channels, 1, 1, 1).expand(-1, -1, 3, 4, 4)  # every place and frame the same
    with torch.no_grad():
        flow = model(latents, torch.tensor([900.0]), torch.randn(1, 2, cfg.text_dim))  # (1, C, 3, 4, 4)
    patches = flow.unfold(3, 2, 2).unfold(4, 2, 2)  # (1, C, 3, 2, 2, 2, 2): token grid, then the patch
    return float((patches - patches[:, :, :, :1, :1]).abs().max())


def test_rope_alone_cannot_tell_places_apart_learned_positions_can():
    # Every token has the same content, so every query, key and value is the same and attention returns that
    # value whatever the rotary phases: without a position table the output is the same at every place.
    assert _spatial_spread(micro()) < 1e-5
    assert _spatial_spread(dataclasses.replace(micro(), position_grid=(2, 2))) > 1e-2


def test_latents_of_another_grid_are_refused():
    model = random_model(dataclasses.replace(micro(), position_grid=(2, 2)))
    with pytest.raises(ValueError, match=r"cover a \(2, 2\) token grid"):
        model(torch.randn(1, 4, 3, 6, 6), torch.tensor([500.0]), torch.randn(1, 2, 8))
