"""What a memory context reads: views of the cache at inference, snapshots that outlive the chunk under autograd."""

from __future__ import annotations

import torch

from context_forcing_core.memory.config import longlive
from context_forcing_core.memory.slow_fast import SlowFastMemory
from context_forcing_core.memory.state import LayerCache, Role, allocate, evict, gather, write_frames


def filled_cache() -> LayerCache:
    cache = LayerCache()
    kv = torch.randn(1, 3, 2, 1, 4)  # (B, f, N, H, D)
    allocate(cache, 4, kv, growable=False)
    write_frames(cache, [0, 1, 2], kv, kv + 1, [Role.FAST] * 3, keep_grad=False)
    return cache


def test_gather_copy_is_a_snapshot_that_later_writes_do_not_change():
    cache = filled_cache()
    view_k, _, _ = gather(cache)
    snap_k, snap_v, slots = gather(cache, copy=True)
    before = snap_k.clone()
    assert [s.frame for s in slots] == [0, 1, 2]
    evict(cache, 1)
    write_frames(cache, [3], torch.full((1, 1, 2, 1, 4), 9.0), torch.zeros(1, 1, 2, 1, 4), [Role.FAST],
                 keep_grad=False)  # reuses slot 1 in place
    assert torch.equal(snap_k, before), "the snapshot owns its storage"
    assert torch.equal(view_k[:, 2:4], torch.full((1, 2, 1, 4), 9.0)), "the default gather is a view of the cache"


def test_memory_context_keeps_snapshots_only_when_autograd_records(model):
    mem = SlowFastMemory(longlive(), model.config)
    text = model.encode_text(torch.randn(1, 3, model.config.text_dim))
    x, t = torch.randn(1, model.config.in_channels, 3, 4, 4), torch.zeros(1, 3)
    mem.begin_chunk(range(3))
    with torch.no_grad():
        model(x, t, text, attention=mem.attention(commit=True))
    mem.end_chunk()
    mem.begin_chunk(range(3, 6))
    inference = mem.attention()
    with torch.no_grad():
        out = model(x, t, text, attention=inference)
    training = mem.attention()
    out_grad = model(x, t, text, attention=training)
    assert inference.views == {}, "inference reads the cache layer by layer and keeps nothing"
    assert sorted(training.views) == [0, 1]
    assert torch.equal(out_grad.detach(), out)
    for layer, view in training.views.items():
        k, v, _ = gather(mem.layers[layer])
        assert torch.equal(view.k, k) and torch.equal(view.v, v)
        assert view.k.untyped_storage().data_ptr() != mem.layers[layer].k.untyped_storage().data_ptr()


def test_a_recomputed_commit_pass_writes_once(model):
    mem = SlowFastMemory(longlive(), model.config, keep_grad=True)
    text = model.encode_text(torch.randn(1, 3, model.config.text_dim))
    x, t = torch.randn(1, model.config.in_channels, 3, 4, 4), torch.zeros(1, 3)
    mem.begin_chunk(range(3))
    ctx = mem.attention(commit=True)
    first = model(x, t, text, attention=ctx)
    again = model(x, t, text, attention=ctx)  # what a checkpointed block's recomputation does
    assert torch.equal(first, again) and ctx.committed == {0, 1}
    assert [cache.frames() for cache in mem.layers] == [[0, 1, 2], [0, 1, 2]]
    mem.end_chunk()
