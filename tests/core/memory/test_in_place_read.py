"""The in-place read path (history rotated once per chunk, compacted cache, views) against read-and-concatenate.

Read-and-concatenate is the path as it was before the in-place one (and the one autograd still uses): every pass
gathers the history, concatenates the chunk and rotates every key. Both memories see the same inputs; every pass of
every chunk must give the same output, for every preset, through prompt-switch re-caching and cache growth.
"""

from __future__ import annotations

import pytest
import torch

from context_forcing_core.memory.config import PRESETS, MemoryConfig
from context_forcing_core.memory.slow_fast import SlowFastMemory
from context_forcing_core.memory.state import Role


def run_both(model, cfg: MemoryConfig, num_chunks: int, *, recache_at: int | None = None, seed: int = 0):
    """Drive two memories through the same passes; return the max |difference| over every pass output and whether
    each in-place cache was a prefix in logical order at every chunk's start.
    """
    torch.manual_seed(seed)
    memories = {flag: SlowFastMemory(cfg, model.config) for flag in (True, False)}
    texts = [model.encode_text(torch.randn(1, 3, model.config.text_dim)) for _ in range(2)]
    shape = (1, model.config.in_channels, cfg.chunk_frames, 4, 4)
    worst, prefix = 0.0, True
    for c in range(num_chunks):
        text = texts[1] if recache_at is not None and c >= recache_at else texts[0]
        if c == recache_at:  # a prompt switch: drop the fast window and re-encode it under the new prompt
            for mem in memories.values():
                frames = mem.drop_fast()
                mem.begin_chunk(frames, recache=True)
                x = torch.randn(1, model.config.in_channels, len(frames), 4, 4, generator=torch.Generator().manual_seed(c))
                with torch.no_grad():
                    model(x, torch.zeros(1, len(frames)), text, attention=mem.attention(commit=True))
                mem.end_chunk()
        x = torch.randn(shape) if c % 3 else torch.zeros(shape) + c  # repeated inputs: low surprisal
        frames = range(c * cfg.chunk_frames, (c + 1) * cfg.chunk_frames)
        outs = {}
        for flag, mem in memories.items():
            mem.begin_chunk(frames)
            cache = mem.layers[0]
            prefix &= not flag or cache.k is None or cache.occupied() == list(range(len(cache.occupied())))
            passes = []
            with torch.no_grad():
                for t in (900.0, 500.0):  # denoising passes read; the clean pass writes
                    passes.append(model(x, torch.full((1, cfg.chunk_frames), t), text,
                                        attention=mem.attention(in_place=flag)))
                passes.append(model(x, torch.zeros(1, cfg.chunk_frames), text,
                                    attention=mem.attention(commit=True, in_place=flag)))
            mem.end_chunk()
            outs[flag] = torch.stack(passes)
        worst = max(worst, (outs[True] - outs[False]).abs().max().item())
    same_records = all(
        [(s.frame, s.role) for s in (a.slots[i] for i in a.occupied())]
        == [(s.frame, s.role) for s in (b.slots[i] for i in b.occupied())]
        for a, b in zip(memories[True].layers, memories[False].layers))
    return worst, prefix, same_records


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_in_place_reads_give_the_outputs_of_read_and_concatenate(model, preset):
    cfg = PRESETS[preset]()
    worst, prefix, same = run_both(model, cfg, 14, recache_at=9)
    assert worst <= 1e-6, f"{preset}: in-place and read-and-concatenate differ by {worst}"
    assert prefix and same


def test_compaction_moves_holes_out_of_the_slow_memory(model):
    cfg = PRESETS["context_forcing"]().replace(slow_frames=2)  # the slow FIFO evicts often: holes in the middle
    worst, prefix, same = run_both(model, cfg, 20)
    assert worst <= 1e-6 and prefix and same


def test_training_passes_read_and_concatenate(model):
    mem = SlowFastMemory(PRESETS["self_forcing"](), model.config)
    text = model.encode_text(torch.randn(1, 3, model.config.text_dim))
    x = torch.randn(1, model.config.in_channels, 3, 4, 4)
    for c in range(3):
        mem.begin_chunk(range(3 * c, 3 * c + 3))
        with torch.no_grad():
            model(x, torch.zeros(1, 3), text, attention=mem.attention(commit=True))
        mem.end_chunk()
    mem.begin_chunk(range(9, 12))
    ctx = mem.attention()
    model(x, torch.zeros(1, 3), text, attention=ctx).sum().backward()
    assert sorted(ctx.views) == [0, 1], "a gradient-recording pass keeps snapshots (the read-and-concatenate path)"
    assert all(cache.frames(Role.FAST) for cache in mem.layers)
