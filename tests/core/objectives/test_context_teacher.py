from __future__ import annotations

import pytest
import torch

from context_forcing_core.objectives.context_teacher import ContextLayout, assemble, context_indices


def test_memory_layout_100_frames_by_hand():
    idx = context_indices(100, ContextLayout())
    slow = [22, 28, 34, 40, 46, 52, 58, 64, 70, 76, 82, 88]
    assert idx == [0, 1, 2] + slow + list(range(94, 100))
    assert len(idx) == 21


def test_memory_layout_fewer_slow_frames_than_capacity():
    idx = context_indices(40, ContextLayout())
    assert idx == [0, 1, 2, 4, 10, 16, 22, 28] + list(range(34, 40))


def test_contiguous_layout():
    assert context_indices(100, ContextLayout(mode="contiguous")) == list(range(79, 100))
    assert context_indices(5, ContextLayout(mode="contiguous")) == list(range(5))


@pytest.mark.parametrize("n", [0, 1, 2, 3, 5, 8, 9, 10, 15, 21, 22])
@pytest.mark.parametrize("mode", ["memory", "contiguous"])
def test_short_contexts_sorted_without_duplicates(n, mode):
    idx = context_indices(n, ContextLayout(mode=mode))
    assert idx == sorted(set(idx))
    assert all(0 <= i < n for i in idx)
    assert len(idx) <= 21
    if mode == "memory" and n:
        assert idx[: min(3, n)] == list(range(min(3, n)))
        assert idx[-min(6, n) :] == list(range(n - min(6, n), n))


def test_assemble_shapes_mask_timesteps():
    b, c, f, h, w = 2, 3, 40, 2, 2
    latents = torch.arange(f, dtype=torch.float32).reshape(1, 1, f, 1, 1).expand(b, c, f, h, w).clone()
    layout = ContextLayout(slow=2, recent=4, sink=1, slow_stride_frames=5)
    inp = assemble(latents, 10, layout)
    # context = frames 0..29: sink 0, slow 21, 16, recent 26..29
    assert inp.context_frames == [0, 16, 21, 26, 27, 28, 29]
    assert inp.x.shape == (b, c, 7 + 10, h, w)
    assert inp.x[0, 0, :, 0, 0].tolist() == [0, 16, 21, 26, 27, 28, 29] + list(range(30, 40))
    assert inp.frame_mask.tolist() == [False] * 7 + [True] * 10
    ts = inp.timesteps_for(torch.tensor([250.0, 900.0]))
    assert ts.shape == (b, 17)
    assert ts[:, :7].eq(0).all() and ts[0, 7:].eq(250).all() and ts[1, 7:].eq(900).all()
    assert inp.target_slice == slice(7, 17)


def test_assemble_without_context_and_validation():
    latents = torch.randn(1, 2, 21, 2, 2)
    inp = assemble(latents, 21, ContextLayout())
    assert inp.context_frames == [] and torch.equal(inp.x, latents) and inp.frame_mask.all()
    with pytest.raises(ValueError):
        assemble(latents, 22, ContextLayout())
    with pytest.raises(ValueError):
        ContextLayout(mode="dense")
