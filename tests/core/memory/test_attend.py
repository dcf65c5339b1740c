"""The per-pass attention core: eager against a plain reference, and compiled against eager through a rollout."""

from __future__ import annotations

import torch

from context_forcing_core.diffusion.sampler import generate
from context_forcing_core.memory.attend import attend_chunk
from context_forcing_core.models.attention import sdpa
from context_forcing_core.models.rope import apply_rope, rope_angles


def test_attend_chunk_writes_the_chunk_behind_the_history_and_attends_over_both():
    torch.manual_seed(0)
    b, hist, length, heads, dim = 2, 12, 6, 2, 8
    q, k, v = (torch.randn(b, length, heads, dim) for _ in range(3))
    cos, sin = rope_angles(torch.arange(4, 7), 1, 2, (4, 2, 2))  # 3 frames of 2 tokens
    hist_k, hist_v = torch.randn(b, hist, heads, dim), torch.randn(b, hist, heads, dim)
    keys, values = torch.cat([hist_k, torch.zeros(b, length, heads, dim)], 1), torch.cat([hist_v, torch.zeros_like(v)], 1)
    out = attend_chunk(q, k, v, cos, sin, keys, values)
    expected = sdpa(apply_rope(q, cos, sin), torch.cat([hist_k, apply_rope(k, cos, sin)], 1), torch.cat([hist_v, v], 1))
    assert torch.equal(out, expected)
    assert torch.equal(keys[:, :hist], hist_k) and torch.equal(values[:, hist:], v), "history untouched, chunk behind"


def test_compiled_attention_agrees_with_eager_through_a_rollout(model):
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    text = torch.randn(1, 3, model.config.text_dim)
    kw = dict(num_latent_frames=30, seed=1, latent_size=(4, 4), memory="context_forcing")
    eager = generate(model, text, **kw).latents
    compiled = generate(model, text, compile_attention=True, **kw).latents
    assert torch.allclose(compiled, eager, atol=1e-5), (compiled - eager).abs().max()
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] > 0, "the compiled core ran"
