from __future__ import annotations

import math

import pytest
import torch

from context_forcing_core.diffusion.schedule import add_noise, flow_target, x0_from_flow
from context_forcing_core.objectives.erft import (
    ErftConfig,
    ErrorBank,
    bucket_timesteps,
    errors_from_prediction,
    frames_of,
    inject,
    should_update_bank,
)

C, H, W = 2, 3, 4


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_bucket_table_by_hand():
    assert bucket_timesteps(4, 1.0).tolist() == pytest.approx([1000.0, 750.0, 500.0, 250.0])
    assert bucket_timesteps(2, 5.0).tolist() == pytest.approx([1000.0, 2500.0 / 3.0])
    assert len(bucket_timesteps(50, 5.0)) == 50


def test_bucket_of_edges_and_nearest():
    bank = ErrorBank(ErftConfig(num_buckets=4, shift=1.0))
    assert bank.bucket_of(1000.0) == 0
    assert bank.bucket_of(0.0) == 3
    assert bank.bucket_of(624.0) == 2
    assert bank.bucket_of(626.0) == 1
    assert bank.bucket_of(torch.tensor([999.0, 260.0, 740.0])).tolist() == [0, 3, 1]
    bank5 = ErrorBank(ErftConfig())
    assert bank5.bucket_of(1000.0) == 0 and bank5.bucket_of(0.0) == 49


def test_capacity_never_exceeded_and_kinds_separate():
    cfg = ErftConfig(num_buckets=4, shift=1.0, capacity=5)
    bank = ErrorBank(cfg)
    g = gen()
    for _ in range(4):
        bank.add(torch.randn(3, C, H, W, generator=g), 1000.0, kind="x0")
        assert max(bank.counts("x0")) <= 5
    assert bank.counts("x0") == [5, 0, 0, 0]
    assert bank.counts("noise") == [0, 0, 0, 0]
    bank.add(torch.randn(2, C, H, W, generator=g), torch.tensor([0.0, 500.0]), kind="noise")
    assert bank.counts("noise") == [0, 0, 1, 1]
    assert len(bank) == 7


def test_full_bucket_replaces_most_similar_entry():
    bank = ErrorBank(ErftConfig(num_buckets=2, capacity=3))
    entries = torch.stack([torch.full((C, H, W), v) for v in (0.0, 10.0, 20.0)])
    bank.add(entries, 1000.0)
    bank.add(torch.full((1, C, H, W), 11.0), 1000.0)  # closest to 10
    store = bank.state_dict()["x0"][0]
    assert sorted(store[:, 0, 0, 0].tolist()) == [0.0, 11.0, 20.0]
    bank.add(torch.full((1, C, H, W), -3.0), 1000.0)  # closest to 0
    store = bank.state_dict()["x0"][0]
    assert sorted(store[:, 0, 0, 0].tolist()) == [-3.0, 11.0, 20.0]


def test_warmup_returns_none():
    bank = ErrorBank(ErftConfig(num_buckets=2, warmup_entries=3))
    assert bank.sample(1000.0, 2, gen()) is None
    bank.add(torch.randn(2, C, H, W), 1000.0)
    assert bank.sample(1000.0, 2, gen()) is None
    bank.add(torch.randn(1, C, H, W), 1000.0)
    out = bank.sample(1000.0, 5, gen())
    assert out is not None and out.shape == (5, C, H, W)
    assert bank.sample(0.0, 1, gen()) is None  # other bucket still cold


def test_sample_is_reproducible():
    bank = ErrorBank(ErftConfig(num_buckets=2))
    bank.add(torch.randn(10, C, H, W, generator=gen(1)), 1000.0)
    assert torch.equal(bank.sample(1000.0, 4, gen(7)), bank.sample(1000.0, 4, gen(7)))


def test_state_dict_round_trip():
    cfg = ErftConfig(num_buckets=4, shift=1.0)
    bank = ErrorBank(cfg)
    bank.add(torch.randn(3, C, H, W, generator=gen()), torch.tensor([1000.0, 500.0, 500.0]))
    bank.add(torch.randn(2, C, H, W, generator=gen(1)), 250.0, kind="noise")
    other = ErrorBank(cfg)
    other.load_state_dict(bank.state_dict())
    assert other.counts("x0") == [1, 0, 2, 0] and other.counts("noise") == [0, 0, 0, 2]
    assert torch.equal(other.sample(500.0, 6, gen(3)), bank.sample(500.0, 6, gen(3)))
    with pytest.raises(ValueError):
        ErrorBank(ErftConfig(num_buckets=5)).load_state_dict(bank.state_dict())


def test_errors_from_prediction_matches_model_estimates():
    g = gen()
    x0, eps = torch.randn(2, C, 3, H, W, generator=g), torch.randn(2, C, 3, H, W, generator=g)
    sigma = torch.tensor([0.3, 0.8])
    x_t = add_noise(x0, eps, sigma)
    v = flow_target(x0, eps)
    v_hat = v + 0.5 * torch.randn(v.shape, generator=g)
    e_x0, e_noise = errors_from_prediction(v_hat, v, sigma)
    assert torch.allclose(x0 + e_x0, x0_from_flow(x_t, v_hat, sigma), atol=1e-6)
    s = sigma.reshape(-1, 1, 1, 1, 1)
    assert torch.allclose(eps + e_noise, x_t + (1 - s) * v_hat, atol=1e-6)
    frames, ts = frames_of(e_x0, torch.tensor([100.0, 900.0]))
    assert frames.shape == (6, C, H, W) and ts.tolist() == [100.0] * 3 + [900.0] * 3
    assert torch.equal(frames[4], e_x0[1, :, 1])


def warm_bank(cfg: ErftConfig) -> ErrorBank:
    bank = ErrorBank(cfg)
    for t in bucket_timesteps(cfg.num_buckets, cfg.shift).tolist():
        bank.add(torch.ones(2, C, H, W), t, kind="x0")
        bank.add(torch.ones(2, C, H, W), t, kind="noise")
    return bank


def within(count: int, n: int, p: float) -> bool:
    return abs(count - n * p) <= 3 * math.sqrt(n * p * (1 - p)) + 1


def test_injection_rates_and_no_in_place_mutation():
    cfg = ErftConfig(num_buckets=4, p_noise=0.2)
    bank = warm_bank(cfg)
    n = 2000
    ctx, tgt, noise = torch.zeros(n, C, 8, H, W), torch.zeros(n, C, 3, H, W), torch.zeros(n, C, 3, H, W)
    t = torch.rand(n, generator=gen(5)) * 1000
    inj = inject(ctx, tgt, noise, t, bank, cfg, gen(1))
    assert ctx.abs().sum() == 0 and tgt.abs().sum() == 0 and noise.abs().sum() == 0
    assert within(int(inj.clean.sum()), n, 0.5)
    assert within(int(inj.context_injected.sum()), n, 0.5 * 0.9)
    assert within(int(inj.target_injected.sum()), n, 0.5 * 0.9)
    assert within(int(inj.noise_injected.sum()), n, 0.5 * 0.2)
    assert not (inj.clean & (inj.context_injected | inj.target_injected | inj.noise_injected)).any()
    # flags match the tensors: a run of exactly context_run latents, every target frame, every noise frame
    per_frame = (inj.context != 0).flatten(3).any(-1).any(1)  # (B, Fc)
    assert torch.equal(per_frame.sum(1), inj.context_injected.long() * 3)
    s = inj.context_start[inj.context_injected]
    assert ((s >= 0) & (s <= 5)).all() and (inj.context_start[~inj.context_injected] == -1).all()
    rows = torch.nonzero(inj.context_injected).flatten()[:20]
    for r in rows.tolist():
        st = int(inj.context_start[r])
        assert per_frame[r, st : st + 3].all()
    assert torch.equal((inj.target != 0).flatten(1).all(1), inj.target_injected)
    assert torch.equal((inj.noise != 0).flatten(1).all(1), inj.noise_injected)
    # same seed, same result
    again = inject(ctx, tgt, noise, t, bank, cfg, gen(1))
    assert torch.equal(again.context, inj.context) and torch.equal(again.noise, inj.noise)


def test_clean_prob_one_and_cold_bank_inject_nothing():
    n = 200
    tgt, noise = torch.randn(n, C, 3, H, W), torch.randn(n, C, 3, H, W)
    t = torch.full((n,), 500.0)
    cfg = ErftConfig(num_buckets=4, clean_prob=1.0)
    inj = inject(None, tgt, noise, t, warm_bank(cfg), cfg, gen())
    assert inj.clean.all() and inj.context is None
    assert torch.equal(inj.target, tgt) and torch.equal(inj.noise, noise)
    assert inj.target is not tgt
    cfg0 = ErftConfig(num_buckets=4, clean_prob=0.0, p_target=1.0, p_noise=1.0)
    cold = inject(None, tgt, noise, t, ErrorBank(cfg0), cfg0, gen())
    assert not cold.clean.any() and not cold.target_injected.any() and not cold.noise_injected.any()
    assert torch.equal(cold.target, tgt)


def test_should_update_bank():
    cfg = ErftConfig(update_prob_after_clean=0.1)
    n = 4000
    keep_clean = should_update_bank(torch.ones(n, dtype=torch.bool), gen(), cfg)
    assert within(int(keep_clean.sum()), n, 0.1)
    assert should_update_bank(torch.zeros(n, dtype=torch.bool), gen(), cfg).all()
    assert should_update_bank(False, gen(), cfg) is True
    assert isinstance(should_update_bank(True, gen(), cfg), bool)


def test_config_validation():
    with pytest.raises(ValueError):
        ErftConfig(p_context=1.5)
    with pytest.raises(ValueError):
        ErftConfig(num_buckets=0)
    with pytest.raises(ValueError):
        ErftConfig(capacity=2, warmup_entries=3)
