"""The slot-map picture shows each chunk's attended frames in their role colours."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from context_forcing_core.diffusion.sampler import generate
from context_forcing_core.memory.plot import COLOURS, slot_map_image
from context_forcing_core.memory.trace import MemoryTrace


def test_slot_map_pixels_follow_the_trace(model):
    text = torch.randn(1, 3, model.config.text_dim)
    trace = generate(model, text, num_latent_frames=60, seed=0, latent_size=(4, 4)).trace
    cell, tick = 3, 6
    img = np.asarray(slot_map_image(trace, layer=1, cell=cell))
    frames, chunks = 60, 20
    assert img.shape == (tick + frames * cell, chunks * cell, 3)

    def pixel(chunk, frame):
        return tuple(img[tick + (frames - 1 - frame) * cell + 1, chunk * cell + 1])

    last = trace.chunks[-1].layers[1]
    for f in range(60):
        expected = COLOURS[last.roles.get(f, "query")] if f in last.slot_map else (0, 0, 0)
        assert pixel(chunks - 1, f) == expected
    consolidated = trace.consolidated_chunks(1)
    assert consolidated, "random keys are surprising: some chunk is consolidated"
    assert all((tuple(img[0, c * cell]) == (229, 57, 53)) == (c in consolidated) for c in range(chunks))


def test_empty_trace_and_bad_layer_are_reported(model):
    with pytest.raises(ValueError, match="empty"):
        slot_map_image(MemoryTrace())
    trace = generate(model, torch.randn(1, 3, model.config.text_dim), num_latent_frames=3, latent_size=(4, 4)).trace
    with pytest.raises(ValueError, match="out of range"):
        slot_map_image(trace, layer=5)
