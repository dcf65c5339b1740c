"""Wan's float32 parts (time embedding, modulation, head) ignore a bfloat16 autocast, as upstream."""

from __future__ import annotations

import torch

from context_forcing_core.models.layers import autocast_off


def test_autocast_off_suspends_a_cpu_autocast_and_is_a_no_op_otherwise():
    a = torch.randn(4, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert (a @ a).dtype == torch.bfloat16
        with autocast_off(a.device):
            assert (a @ a).dtype == torch.float32
    with autocast_off(torch.device("meta")):  # a device type autocast does not know
        assert (a @ a).dtype == torch.float32


def test_model_keeps_time_embedding_and_head_in_float32_under_autocast(model):
    x, t = torch.randn(1, model.config.in_channels, 3, 4, 4), torch.full((1, 3), 300.0)
    text = torch.randn(1, 3, model.config.text_dim)
    e_ref, e0_ref = model._time(t, 1, 3, 3)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # real autocast semantics, runnable on CPU
        e, e0 = model._time(t, 1, 3, 3)
        out = model(x, t, text)
        out_blocks = model.blocks[0].ffn(torch.randn(1, 2, model.config.dim))
    assert torch.equal(e, e_ref) and torch.equal(e0, e0_ref)
    assert out.dtype == torch.float32, "the head runs with autocast suspended"
    assert out_blocks.dtype == torch.bfloat16, "the blocks' matmuls do use the autocast"
    assert torch.allclose(out, model(x, t, text), rtol=0.05, atol=0.05)
