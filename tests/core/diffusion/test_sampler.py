"""The few-step chunk sampler and the rollout: analytic exactness, determinism, streaming, prompt switches."""

from __future__ import annotations

import math

import pytest
import torch

from context_forcing_core.budget import MemoryBudgetError, available_bytes, rollout_need
from context_forcing_core.diffusion.prompts import PromptSchedule
from context_forcing_core.diffusion.sampler import draw_chunk_noise, generate, sample_chunk, stream
from context_forcing_core.diffusion.schedule import warp_timesteps
from context_forcing_core.memory.config import memory_preset

KW = dict(latent_size=(4, 4), memory="context_forcing")


def test_sample_chunk_is_exact_for_the_true_flow_of_a_point_mass():
    # data = a single point x*: the exact flow is v = eps - x* = (x_t - x*) / sigma at every step
    torch.manual_seed(0)
    target = torch.randn(2, 4, 3, 5, 5)
    calls = []

    def flow(x, t):
        calls.append(t.clone())
        return (x - target) / (t[:, None, :, None, None] / 1000)

    out = sample_chunk(flow, torch.randn(2, 4, 3, 5, 5), warp_timesteps(), generator=torch.Generator().manual_seed(0))
    assert torch.allclose(out, target, atol=1e-5)
    assert [c[0, 0].item() for c in calls] == pytest.approx([1000, 937.5, 833.333, 625], rel=1e-5)
    assert all(c.shape == (2, 3) for c in calls)  # per-frame timesteps


def test_chunk_noise_drawn_at_once_equals_drawing_step_by_step():
    shape = (2, 4, 3, 5, 5)
    step_by_step = torch.Generator().manual_seed(7)
    expected = [torch.randn(shape, generator=step_by_step) for _ in range(4)]
    draws = draw_chunk_noise(shape, 4, torch.Generator().manual_seed(7), torch.device("cpu"))
    assert draws.shape == (4, *shape) and all(torch.equal(d, e) for d, e in zip(draws, expected))

    def flow(x, t):
        return torch.tanh(x) * t[:, None, :, None, None] / 1000

    gen = torch.Generator().manual_seed(7)
    by_generator = sample_chunk(flow, torch.randn(shape, generator=gen), warp_timesteps(), generator=gen)
    assert torch.equal(sample_chunk(flow, draws[0], warp_timesteps(), renoise=draws[1:]), by_generator)
    with pytest.raises(ValueError, match="either as a generator or as renoise"):
        sample_chunk(flow, draws[0], warp_timesteps(), generator=gen, renoise=draws[1:])
    with pytest.raises(ValueError, match="4 steps need 3 re-noising draws, got 2"):
        sample_chunk(flow, draws[0], warp_timesteps(), renoise=draws[2:])


def test_same_seed_same_output_and_seeds_differ(model):
    text = torch.randn(1, 3, model.config.text_dim)
    a = generate(model, text, num_latent_frames=12, seed=3, **KW).latents
    b = generate(model, text, num_latent_frames=12, seed=3, **KW).latents
    c = generate(model, text, num_latent_frames=12, seed=4, **KW).latents
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)
    assert a.shape == (1, model.config.in_channels, 12, 4, 4)


def test_stream_yields_the_chunks_of_generate_with_progress(model):
    text = torch.randn(2, 3, model.config.text_dim)
    ticks = []
    chunks = list(stream(model, text, num_latent_frames=9, seed=1, progress=lambda d, n: ticks.append((d, n)), **KW))
    full = generate(model, text, num_latent_frames=9, seed=1, **KW)
    assert torch.equal(torch.cat([c.latents for c in chunks], dim=2), full.latents)
    assert [c.frames for c in chunks] == [range(0, 3), range(3, 6), range(6, 9)]
    assert ticks == [(1, 3), (2, 3), (3, 3)]
    assert len(full.trace.chunks) == 3


def test_interrupt_stops_between_chunks(model):
    text = torch.randn(1, 3, model.config.text_dim)
    seen = []

    class Stop(Exception):
        pass

    def interrupt():
        if len(seen) == 2:
            raise Stop

    with pytest.raises(Stop):
        for out in stream(model, text, num_latent_frames=30, interrupt=interrupt, **KW):
            seen.append(out.index)
    assert seen == [0, 1]


def test_bad_inputs_raise_value_errors(model):
    text = torch.randn(1, 3, model.config.text_dim)
    with pytest.raises(ValueError, match="multiple of the chunk size 3"):
        generate(model, text, num_latent_frames=10, **KW)
    with pytest.raises(ValueError, match=f"\\(batch, tokens, {model.config.text_dim}\\)"):
        generate(model, torch.randn(1, 3, model.config.text_dim + 1), num_latent_frames=3, **KW)
    with pytest.raises(ValueError, match="unknown memory preset"):
        generate(model, text, num_latent_frames=3, latent_size=(4, 4), memory="nope")
    with pytest.raises(ValueError, match="switch frames"):
        PromptSchedule(texts=[text, text], switch_frames=[])


def test_prompt_switch_keeps_the_past_and_changes_the_future(model):
    torch.manual_seed(0)
    a, b = torch.randn(1, 3, model.config.text_dim), torch.randn(1, 3, model.config.text_dim)
    base = generate(model, a, num_latent_frames=18, seed=0, **KW)
    switched = generate(model, PromptSchedule(texts=[a, b], switch_frames=[8]), num_latent_frames=18, seed=0, **KW)
    # the switch applies from the first chunk starting at or after frame 8: chunk 3 (frames 9..11)
    assert torch.equal(base.latents[:, :, :9], switched.latents[:, :, :9])
    assert not torch.allclose(base.latents[:, :, 9:], switched.latents[:, :, 9:])
    assert [c.recached for c in switched.trace.chunks] == [False, False, False, True, False, False]


def test_recache_under_the_same_prompt_with_full_memory_changes_nothing(model):
    # with no eviction, re-encoding the cached frames chunk by chunk under the same text recomputes identical K/V
    text = torch.randn(1, 3, model.config.text_dim)
    kw = dict(num_latent_frames=12, seed=2, latent_size=(4, 4), memory="full")
    base = generate(model, text, **kw).latents
    same = generate(model, PromptSchedule(texts=[text, text.clone()], switch_frames=[6]), **kw).latents
    assert (base - same).abs().max().item() < 1e-5


def test_stream_does_not_disable_grad_in_the_caller(model):
    text = torch.randn(1, 3, model.config.text_dim)
    modes = [torch.is_grad_enabled() for _ in stream(model, text, num_latent_frames=6, **KW)]
    assert modes == [True, True]


def test_non_finite_and_out_of_range_settings_are_refused_before_any_work(model):
    text = torch.randn(1, 3, model.config.text_dim)
    for kwargs, message in [({"shift": float("nan")}, r"shift must lie in \[0.1, 20.0\], got nan"),
                            ({"shift": float("inf")}, "shift must lie"),
                            ({"seed": -1}, r"seed must lie in \[0, 9223372036854775807\]"),
                            ({"seed": 2**64}, "seed must lie"),
                            ({"steps": [1000.0, float("nan")]}, "denoising steps must lie in"),
                            ({"steps": [1000.0 - i for i in range(51)]}, r"number of steps must lie in \[1, 50\]"),
                            ({"latent_size": (4, 10**6)}, r"latent_size must lie in \[1, 512\]"),
                            ({"num_latent_frames": 3 * 10**9}, r"num_latent_frames must lie in \[1, 14400\]")]:
        with pytest.raises(ValueError, match=message):
            next(stream(model, text, **({"num_latent_frames": 3} | KW | kwargs)))


def test_budget_refuses_before_allocation_and_can_be_overridden(model):
    text = torch.randn(1, 3, model.config.text_dim)
    with pytest.raises(MemoryBudgetError, match=r"needs .* GB \(K/V cache .* GB \+ latents .* GB.* but the model's "
                                                r"device \(cpu\) has 0.00 GB available; lower"):
        next(stream(model, text, num_latent_frames=3, budget_bytes=1000, **KW))
    need = rollout_need(model.config, memory_preset("context_forcing"), (4, 4), 3, model.dtype, keep_latents=False)
    assert len(list(stream(model, text, num_latent_frames=3, budget_bytes=need.total, **KW))) == 1
    # generate keeps the whole video: its budget counts the latents, a stream's does not
    with pytest.raises(MemoryBudgetError, match="latents 0.00 GB"):
        generate(model, text, num_latent_frames=3, budget_bytes=need.total, **KW)
    assert generate(model, text, num_latent_frames=3, budget_bytes=math.inf, **KW).latents.shape[2] == 3
    # the default budget is what the device has: an hour of the largest latents does not fit (~240 GB)
    assert rollout_need(model.config, memory_preset("context_forcing"), (512, 512), 14_400, model.dtype
                        ).total > available_bytes("cpu")
    with pytest.raises(MemoryBudgetError, match="lower the video length, the resolution or the memory sizes"):
        generate(model, text, num_latent_frames=14_400, latent_size=(512, 512))
