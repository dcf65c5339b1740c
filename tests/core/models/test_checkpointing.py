"""Gradient checkpointing of the Wan blocks: same gradients as storing activations, only when training with grad."""

from __future__ import annotations

import pytest
import torch
from conftest import random_model


def block_calls(model) -> list[int]:
    """A one-element counter of block forward calls (recomputations included; a pre-hook, as recomputation stops early)."""
    count = [0]
    for block in model.blocks:
        block.register_forward_pre_hook(lambda *_: count.__setitem__(0, count[0] + 1))
    return count


def grads(model, checkpointing: bool, attention: str) -> tuple[list[torch.Tensor], int]:
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, model.config.in_channels, 6, 4, 4, generator=g)
    t = torch.rand(2, 6, generator=g) * 1000
    text = torch.randn(2, 3, model.config.text_dim, generator=g)
    model.train().enable_gradient_checkpointing(checkpointing)
    model.zero_grad(set_to_none=True)
    calls = block_calls(model)
    model(x, t, text, attention=attention, chunk_frames=3).square().sum().backward()
    return [p.grad.clone() for p in model.parameters()], calls[0]


@pytest.mark.parametrize("attention", ["bidirectional", "block_causal"])
def test_checkpointed_forward_has_the_same_parameter_gradients(attention):
    reference, plain_calls = grads(random_model(), False, attention)
    checkpointed, ckpt_calls = grads(random_model(), True, attention)
    layers = len(random_model().blocks)
    assert plain_calls == layers and ckpt_calls == 2 * layers, "every block is recomputed once in backward"
    for g_ref, g in zip(reference, checkpointed, strict=True):
        torch.testing.assert_close(g, g_ref, rtol=1e-6, atol=1e-7)


def test_checkpointing_is_inactive_without_grad_or_in_eval_mode():
    model = random_model().enable_gradient_checkpointing()
    calls = block_calls(model)
    x, t = torch.randn(1, model.config.in_channels, 3, 4, 4), torch.full((1,), 500.0)
    text = torch.randn(1, 3, model.config.text_dim)
    model.train()
    with torch.no_grad():
        out_no_grad = model(x, t, text)
    model.eval()
    model(x, t, text).sum().backward()
    assert calls[0] == 2 * len(model.blocks), "no recomputation: eval mode and no_grad run each block once"
    assert model.gradient_checkpointing
    assert torch.equal(model(x, t, text).detach(), out_no_grad)
