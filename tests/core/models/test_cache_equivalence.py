"""Chunk-by-chunk generation through the memory equals one block-causal forward over the whole sequence."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from conftest import random_model

from context_forcing_core.memory.config import full
from context_forcing_core.memory.slow_fast import SlowFastMemory
from context_forcing_core.models.config import micro


def _chunkwise(model, x, t, text, chunk):
    mem = SlowFastMemory(dataclasses.replace(full(), chunk_frames=chunk), model.config)
    ctx = model.encode_text(text)
    outs = []
    for start in range(0, x.shape[2], chunk):
        frames = range(start, start + chunk)
        mem.begin_chunk(frames)
        sl = slice(start, start + chunk)
        outs.append(model(x[:, :, sl], t[:, sl], ctx, attention=mem.attention(commit=True)))
        mem.end_chunk()
    return torch.cat(outs, dim=2), mem


@pytest.mark.parametrize("chunk", [3, 1], ids=["chunk-3", "frame-wise"])
@pytest.mark.parametrize("positions", [None, (2, 3)], ids=["rope", "learned-positions"])
def test_cached_full_policy_equals_block_causal_forward(positions, chunk):
    model = random_model(dataclasses.replace(micro(), position_grid=positions))
    torch.manual_seed(1)
    b, f = 2, 12
    x = torch.randn(b, model.config.in_channels, f, 4, 6)
    t = torch.rand(b, f) * 1000  # distinct per-frame timesteps
    text = torch.randn(b, 3, model.config.text_dim)
    with torch.no_grad():
        ref = model(x, t, text, attention="block_causal", chunk_frames=chunk)
        out, mem = _chunkwise(model, x, t, text, chunk)
    assert (out - ref).abs().max().item() < 1e-4
    assert ref.abs().mean().item() > 0.1  # a non-trivial output, so the comparison means something
    assert mem.layers[0].frames() == list(range(f))


def test_denoising_passes_do_not_write_the_cache(model):
    torch.manual_seed(2)
    x = torch.randn(1, model.config.in_channels, 6, 4, 4)
    t = torch.full((1, 6), 0.0)
    text = torch.randn(1, 3, model.config.text_dim)
    ctx = model.encode_text(text)
    mem = SlowFastMemory(full(), model.config)
    with torch.no_grad():
        mem.begin_chunk(range(0, 3))
        model(x[:, :, :3], torch.full((1, 3), 900.0), ctx, attention=mem.attention())  # read-only pass
        assert mem.nbytes() == 0
        model(x[:, :, :3], t[:, :3], ctx, attention=mem.attention(commit=True))
        mem.end_chunk()
        mem.begin_chunk(range(3, 6))
        first = model(x[:, :, 3:], torch.full((1, 3), 500.0), ctx, attention=mem.attention())
        again = model(x[:, :, 3:], torch.full((1, 3), 500.0), ctx, attention=mem.attention())
    assert torch.equal(first, again)
