"""Slow-Fast Memory invariants, checked against a brute-force model written declaratively from the method.

The brute force recomputes, from the chunks' raw keys alone, which chunks are consolidated (CF Eq. 7) and which
frames must be attended at which positions (CF Eq. 8) at every chunk, with no cache simulation.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from context_forcing_core.memory.config import (
    MemoryConfig,
    context_forcing,
    infinity_rope,
    longlive,
    self_forcing,
    uniform,
)
from context_forcing_core.memory.slow_fast import SlowFastMemory
from context_forcing_core.memory.state import Role


def drive(model, cfg: MemoryConfig, num_chunks: int, *, repeat_every: int = 3, seed: int = 0):
    """Commit ``num_chunks`` chunks; every ``repeat_every``-th chunk repeats the previous input (low surprisal).

    Returns the memory, the per-layer raw keys of each committed chunk, and the attended sets seen per chunk.
    """
    torch.manual_seed(seed)
    mem = SlowFastMemory(cfg, model.config)
    ctx = model.encode_text(torch.randn(1, 3, model.config.text_dim))
    keys: list[list[torch.Tensor]] = []
    x = torch.randn(1, model.config.in_channels, cfg.chunk_frames, 4, 4)
    for c in range(num_chunks):
        if c % repeat_every:
            x = torch.randn_like(x)
        frames = range(c * cfg.chunk_frames, (c + 1) * cfg.chunk_frames)
        mem.begin_chunk(frames)
        with torch.no_grad():
            model(x, torch.zeros(1, cfg.chunk_frames), ctx, attention=mem.attention(commit=True))
        chunk_keys = []
        for cache in mem.layers:  # raw keys of the chunk, read back before end_chunk evicts anything
            rows = [cache.slot_of(f) for f in frames]
            chunk_keys.append(cache.k[:, rows].flatten(1, 2).clone())  # (B, f*N, H, D)
        keys.append(chunk_keys)
        mem.end_chunk()
    return mem, keys


def brute_force_consolidated(cfg: MemoryConfig, keys, layer: int) -> list[int]:
    """Chunks consolidated by ``layer`` per CF Eq. 7, from the raw keys."""
    summary = [k[layer].float().mean(1).flatten(1) for k in keys]
    chosen: list[int] = []
    for c in range(len(keys)):
        if cfg.slow_select == "none" or c * cfg.chunk_frames < cfg.sink_frames + cfg.fast_frames:
            continue
        if c % cfg.consolidate_every:
            continue
        if cfg.slow_select == "uniform":
            chosen.append(c)
            continue
        ref = chosen[-1] if cfg.similarity_reference == "last_consolidated" and chosen else c - 1
        if F.cosine_similarity(summary[c], summary[ref], dim=-1).mean() < cfg.tau:
            chosen.append(c)
    return chosen


def brute_force_attended(cfg: MemoryConfig, chunk: int, consolidated: list[int]) -> dict[int, int]:
    """Frame -> position attended while generating ``chunk``, from the definitions alone."""
    b = cfg.chunk_frames
    generated = range(chunk * b)
    query = list(range(chunk * b, (chunk + 1) * b))
    sink = [f for f in generated if f < cfg.sink_frames]
    nonsink = [f for f in generated if f >= cfg.sink_frames]
    fast = nonsink[max(0, len(nonsink) - cfg.fast_history):] if cfg.fast_history else []
    kept = sorted(c * b + j for c in consolidated for j in range(cfg.keep_frames))
    older = [f for f in kept if f < chunk * b and f not in fast and f >= cfg.sink_frames]
    slow = older[max(0, len(older) - cfg.slow_frames):] if cfg.slow_frames else []
    if cfg.positions == "absolute":
        return {f: f for f in sink + slow + fast + query}
    if cfg.positions == "slot":
        return {f: i for i, f in enumerate(sink + slow + fast + query)}
    top = min(cfg.capacity, query[-1] + 1)
    tail = fast + query
    return {**{f: f for f in sink}, **{f: cfg.sink_frames + j for j, f in enumerate(slow)},
            **{f: top - len(tail) + j for j, f in enumerate(tail)}}


PRESETS = {
    "context_forcing": context_forcing(),
    "context_forcing_last_consolidated": context_forcing().replace(similarity_reference="last_consolidated", tau=0.8),
    "small_slow_keep2": MemoryConfig(sink_frames=3, slow_frames=4, fast_frames=6, keep_frames=2, tau=0.9),
    "uniform": uniform(),
    "self_forcing": self_forcing(),
    "longlive": longlive(),
    "infinity_rope": infinity_rope(),
}


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_memory_matches_brute_force(model, name):
    cfg = PRESETS[name]
    num_chunks = 40
    mem, keys = drive(model, cfg, num_chunks)
    for layer in range(model.config.num_layers):
        consolidated = brute_force_consolidated(cfg, keys, layer)
        assert mem.trace.consolidated_chunks(layer) == consolidated
        for step in mem.trace.chunks:
            expected = brute_force_attended(cfg, step.chunk, consolidated)
            assert step.layers[layer].slot_map == expected, f"{name}: layer {layer}, chunk {step.chunk}"
    if cfg.slow_select == "surprisal":  # the inputs make both outcomes happen, so the check has teeth
        checked = [c for c in range(num_chunks) if mem.trace.chunks[c].layers[0].checked]
        assert 0 < len(mem.trace.consolidated_chunks(0)) < len(checked)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_invariants_hold_at_every_chunk(model, name):
    cfg = PRESETS[name]
    mem, _ = drive(model, cfg, 40)
    sink = set(range(cfg.sink_frames))
    for step in mem.trace.chunks:
        for ls in step.layers:
            attended = set(ls.slot_map)
            generated = set(range(step.frames[0]))
            assert sink & generated <= attended, "the sink is never evicted"
            slow = [f for f, r in ls.roles.items() if r == "slow"]
            assert len(slow) <= cfg.slow_frames
            assert len(ls.slot_map) <= cfg.capacity
            positions = list(ls.slot_map.values())
            assert len(set(positions)) == len(positions), "positions are distinct"
            if cfg.positions == "bounded":
                assert 0 <= min(positions) and max(positions) <= cfg.capacity - 1
            fast = sorted(f for f, r in ls.roles.items() if r == "fast")
            recent = [f for f in range(step.frames[0]) if f >= cfg.sink_frames][-cfg.fast_history:]
            assert fast == (recent if cfg.fast_history else []), "the fast window holds the most recent frames"
    # slow memory is FIFO: once full, each promotion evicts the oldest entry
    for layer in range(model.config.num_layers):
        history = [sorted(f for f, r in s.layers[layer].roles.items() if r == "slow") for s in mem.trace.chunks]
        for before, after in zip(history, history[1:]):
            gone = set(before) - set(after)
            assert all(g < min(after) for g in gone), "evicted slow entries are the oldest ones"


def test_cache_size_is_constant_after_warm_up(model):
    cfg = context_forcing()
    mem, _ = drive(model, cfg, 60)
    sizes = [s.cache_bytes for s in mem.trace.chunks]
    assert max(sizes) == sizes[-1]
    per_frame = sizes[0] // cfg.chunk_frames  # K and V of one frame, all layers
    assert mem.allocated_bytes() == per_frame * cfg.capacity * 3 // 2  # fixed buffers of 21 frames: K, V, rotated K


def test_cached_kv_carry_no_autograd_history(model):
    torch.manual_seed(0)
    text = torch.randn(1, 3, model.config.text_dim)
    for keep_grad in (False, True):
        ctx = model.encode_text(text)
        mem = SlowFastMemory(context_forcing(), model.config, keep_grad=keep_grad)
        x0 = torch.randn(1, model.config.in_channels, 3, 4, 4, requires_grad=True)
        mem.begin_chunk(range(0, 3))
        model(x0, torch.zeros(1, 3), ctx, attention=mem.attention(commit=True))
        mem.end_chunk()
        assert mem.layers[1].k.requires_grad == keep_grad
        mem.begin_chunk(range(3, 6))
        out = model(torch.randn(1, model.config.in_channels, 3, 4, 4), torch.full((1, 3), 500.0), ctx,
                    attention=mem.attention())
        out.square().mean().backward()
        if keep_grad:
            assert x0.grad is not None and x0.grad.abs().sum() > 0
        else:
            assert x0.grad is None, "no gradient reaches an earlier chunk through the cache"


def test_role_records_agree_with_trace(model):
    cfg = context_forcing()
    mem, _ = drive(model, cfg, 20)
    cache = mem.layers[0]
    assert cache.frames(Role.SINK) == [0, 1, 2]
    assert cache.frames(Role.FAST) == [57, 58, 59]
    assert all(s.clean for s in cache.slots if s is not None)


def test_protocol_misuse_is_reported(model):
    mem = SlowFastMemory(context_forcing(), model.config)
    with pytest.raises(ValueError, match="expected the chunk"):
        mem.begin_chunk(range(3, 6))
    with pytest.raises(RuntimeError, match="begin_chunk"):
        mem.attention()
    mem.begin_chunk(range(0, 3))
    with pytest.raises(RuntimeError, match="commit"):
        mem.end_chunk()
