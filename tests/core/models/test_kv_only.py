"""A commit pass that stops at the last block's keys and values (``kv_only``) leaves the memory exactly as a full
commit pass does, gradients included; contexts that cannot write without attending run the whole pass."""

from __future__ import annotations

import pytest
import torch
from conftest import random_model

from context_forcing_core.memory.config import context_forcing
from context_forcing_core.memory.slow_fast import SlowFastMemory


def _commit_chunks(model, kv_only, keep_grad):
    """Three committed chunks and a re-cache, each commit with or without ``kv_only``; returns the memory."""
    gen = torch.Generator().manual_seed(0)
    text = model.encode_text(torch.randn(2, 3, model.config.text_dim, generator=gen))
    mem = SlowFastMemory(context_forcing(), model.config, keep_grad=keep_grad)
    with torch.set_grad_enabled(keep_grad):
        for c in range(3):
            mem.begin_chunk(range(3 * c, 3 * c + 3))
            x = torch.randn(2, model.config.in_channels, 3, 4, 4, generator=gen)
            out = model(x, torch.zeros(2, 3), text, attention=mem.attention(commit=True), kv_only=kv_only)
            assert (out is None) == kv_only
            mem.end_chunk()
        frames = mem.drop_fast()
        mem.begin_chunk(frames[:3], recache=True)
        x = torch.randn(2, model.config.in_channels, 3, 4, 4, generator=gen)
        model(x, torch.zeros(2, 3), text, attention=mem.attention(commit=True), kv_only=kv_only)
        mem.end_chunk()
    return mem


@pytest.mark.parametrize("keep_grad", [False, True], ids=["detached", "keep-grad"])
def test_a_kv_only_commit_writes_what_a_full_commit_writes(keep_grad):
    model = random_model().train()
    grads = {}
    mems = {}
    for kv_only in (False, True):
        model.zero_grad(set_to_none=True)
        mem = mems[kv_only] = _commit_chunks(model, kv_only, keep_grad)
        if keep_grad:
            sum(c.k.square().sum() + c.v.sum() for c in mem.layers).backward()
            grads[kv_only] = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    full, short = mems[False], mems[True]
    for a, b in zip(full.layers, short.layers, strict=True):
        assert torch.equal(a.k, b.k) and torch.equal(a.v, b.v) and a.slots == b.slots
        assert torch.equal(a.prev_summary, b.prev_summary)
    assert [[s.similarity for s in c.layers] for c in full.trace.chunks] == \
        [[s.similarity for s in c.layers] for c in short.trace.chunks]
    if keep_grad:
        assert grads[False].keys() == grads[True].keys() and grads[True]
        for name, g in grads[False].items():
            assert torch.equal(grads[True][name], g), name


def test_kv_only_runs_the_whole_pass_for_a_context_that_cannot_only_write(model):
    text = model.encode_text(torch.randn(1, 3, model.config.text_dim))
    x = torch.randn(1, model.config.in_channels, 3, 4, 4)
    full = model(x, torch.zeros(1, 3), text, attention="block_causal")
    torch.testing.assert_close(model(x, torch.zeros(1, 3), text, attention="block_causal", kv_only=True), full)
