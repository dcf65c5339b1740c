"""The slot-map picture shows each chunk's attended frames in their role colours."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from context_forcing_core.diffusion.sampler import generate
from context_forcing_core.memory.plot import COLOURS, slot_map_image, surprisal_plot, trace_summary
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


def test_surprisal_plot_draws_occupancy_by_position_and_consolidated_chunks(model):
    trace = generate(model, torch.randn(1, 3, model.config.text_dim), num_latent_frames=60, seed=0,
                     latent_size=(4, 4)).trace
    img = np.asarray(surprisal_plot(trace, layer=1, width=720))
    steps = [c.layers[1] for c in trace.chunks]
    max_pos = max(max(s.slot_map.values()) for s in steps)
    cell = max(2, min(8, 160 // (max_pos + 1)))
    left, col_w, b0 = 48, (720 - 48 - 12) / 20, 16 + 150 + 28
    assert img.shape == (b0 + cell * (max_pos + 1) + 32, 720, 3)
    for i, s in enumerate(steps):  # bottom panel: the cell of every attended frame has its role's colour
        x = int(left + (i + 0.5) * col_w)
        for frame, pos in s.slot_map.items():
            y = b0 + cell * (max_pos + 1) - pos * cell - cell // 2 - 1
            assert tuple(img[y, x]) == COLOURS[s.roles.get(frame, "query")], (i, frame, pos)
    shaded = [i for i in range(20) if tuple(img[16 + 3, int(left + (i + 0.5) * col_w)]) == (255, 205, 205)]
    assert shaded == trace.consolidated_chunks(1) and shaded


def test_trace_summary_counts_what_the_trace_holds(model):
    trace = generate(model, torch.randn(1, 3, model.config.text_dim), num_latent_frames=60, seed=0,
                     latent_size=(4, 4)).trace
    text = trace_summary(trace, layer=1)
    last = trace.chunks[-1].layers[1]
    roles = [last.roles.get(f, "query") for f in last.slot_map]
    assert text.startswith("20 chunks, 60 latent frames; layer 1 of 2")
    assert f"consolidated: {len(trace.consolidated_chunks(1))} " in text
    assert f"attended at the end: {len(last.slot_map)} frames (sink {roles.count('sink')}, " in text
    assert f"slow {roles.count('slow')}, fast {roles.count('fast')}" in text
    assert trace_summary(MemoryTrace()) == "no chunks generated"
