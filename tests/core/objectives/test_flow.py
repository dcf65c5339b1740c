"""Flow-matching objective: timestep sampling, bell weighting, loss values and frame masks."""

from __future__ import annotations

import math

import pytest
import torch

from context_forcing_core.diffusion.schedule import add_noise
from context_forcing_core.objectives.flow import dmd_timesteps, flow_matching_loss, sample_timesteps, timestep_weight


def test_sample_timesteps_range_shift_determinism():
    t = sample_timesteps(20000, generator=torch.Generator().manual_seed(0), shift=1.0)
    assert t.shape == (20000,) and t.dtype == torch.float32
    assert 0 <= t.min() and t.max() < 1000
    assert abs(t.mean().item() - 500) < 10  # uniform
    ts = sample_timesteps(20000, generator=torch.Generator().manual_seed(0), shift=5.0)
    # same u, shifted: t' = 1000 * 5 u / (1 + 4 u), with u = t / 1000
    u = t.double() / 1000
    torch.testing.assert_close(ts.double(), 1000 * 5 * u / (1 + 4 * u), rtol=1e-6, atol=1e-3)
    # shift 5: P(t' < 500) = P(u < 1/6)
    assert abs((ts < 500).double().mean().item() - 1 / 6) < 0.01
    again = sample_timesteps(20000, generator=torch.Generator().manual_seed(0), shift=5.0)
    assert torch.equal(ts, again)
    other = sample_timesteps(20000, generator=torch.Generator().manual_seed(1), shift=5.0)
    assert not torch.equal(ts, other)


def test_sample_timesteps_clamp_and_dmd():
    t = sample_timesteps(5000, generator=torch.Generator().manual_seed(0), shift=1.0, t_min=100, t_max=200)
    assert t.min() == 100 and t.max() == 200
    d = dmd_timesteps(5000, torch.Generator().manual_seed(3))
    assert d.min() >= 20 and d.max() <= 980
    assert (d == 980).any()  # shift 5 puts > 2 % of the mass above 980
    ref = sample_timesteps(5000, generator=torch.Generator().manual_seed(3), shift=5.0, t_min=20, t_max=980)
    assert torch.equal(d, ref)


@pytest.mark.parametrize(
    "kw", [dict(shift=0.0), dict(t_min=-1.0), dict(t_max=1001.0), dict(t_min=600.0, t_max=500.0)]
)
def test_sample_timesteps_rejects_bad_input(kw):
    with pytest.raises(ValueError):
        sample_timesteps(2, generator=None, **kw)
    with pytest.raises(ValueError):
        sample_timesteps(0, generator=None)


def test_bell_weight_values_and_mean():
    floor = math.exp(-0.5)
    z = sum(math.exp(-2 * ((k - 500) / 1000) ** 2) - floor for k in range(1000)) / 1000

    def hand(t):
        return (math.exp(-2 * ((t - 500) / 1000) ** 2) - floor) / z

    ts = torch.tensor([0.0, 250.0, 500.0, 900.0, 1000.0])
    w = timestep_weight(ts, "bell")
    torch.testing.assert_close(w, torch.tensor([hand(float(t)) for t in ts]))
    assert w[0] == 0 and abs(w[2].item() - 1.5796) < 1e-3 and w[2] == w.max()
    assert abs(timestep_weight(torch.arange(1000.0), "bell").mean().item() - 1) < 1e-5
    assert torch.equal(timestep_weight(ts, "none"), torch.ones(5))
    with pytest.raises(ValueError):
        timestep_weight(ts, "cosine")


def test_flow_matching_loss_exact_hand_and_mask():
    g = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(2, 3, 4, 2, 2, generator=g), torch.randn(2, 3, 4, 2, 2, generator=g)
    t = torch.tensor([100.0, 700.0])
    assert flow_matching_loss(noise - x0, x0, noise, t) == 0
    assert flow_matching_loss(noise - x0, x0, noise, t, weighting="bell") == 0

    # hand computation on a tiny tensor: B=2, C=F=H=W=1 is too degenerate, use (2, 1, 2, 1, 1)
    x0 = torch.zeros(2, 1, 2, 1, 1)
    noise = torch.ones(2, 1, 2, 1, 1)  # target flow = 1 everywhere
    pred = torch.tensor([1.0, 3.0, 0.0, 1.5]).reshape(2, 1, 2, 1, 1)  # errors^2: 0, 4, 1, 0.25
    assert flow_matching_loss(pred, x0, noise, t).item() == pytest.approx((0 + 4 + 1 + 0.25) / 4)
    w = timestep_weight(t, "bell")
    want = (w[0] * 4 + w[1] * 1.25) / 4
    assert flow_matching_loss(pred, x0, noise, t, weighting="bell").item() == pytest.approx(want.item())
    # per-frame timesteps: frame weights differ
    tf = torch.tensor([[500.0, 0.0], [0.0, 500.0]])
    wf = timestep_weight(torch.tensor(500.0), "bell").item()
    assert flow_matching_loss(pred, x0, noise, tf, weighting="bell").item() == pytest.approx(wf * 0.25 / 4)
    # mask: only frame 1 -> errors 4 and 0.25
    mask = torch.tensor([False, True])
    assert flow_matching_loss(pred, x0, noise, t, frame_mask=mask).item() == pytest.approx((4 + 0.25) / 2)
    pred.requires_grad_(True)
    flow_matching_loss(pred, x0, noise, t, frame_mask=mask).backward()
    assert torch.all(pred.grad[:, :, 0] == 0) and torch.all(pred.grad[:, :, 1] != 0)


def test_flow_matching_loss_with_model_noising(model):
    g = torch.Generator().manual_seed(1)
    x0, noise = torch.randn(1, 4, 2, 4, 4, generator=g), torch.randn(1, 4, 2, 4, 4, generator=g)
    t = torch.tensor([600.0])
    x_t = add_noise(x0, noise, t / 1000)
    loss = flow_matching_loss(model(x_t, t, torch.randn(1, 3, 8, generator=g)), x0, noise, t)
    assert loss.ndim == 0 and torch.isfinite(loss) and loss > 0


def test_flow_matching_loss_rejects_bad_input():
    x = torch.zeros(2, 1, 3, 1, 1)
    with pytest.raises(ValueError):
        flow_matching_loss(x, x, torch.zeros(2, 1, 2, 1, 1), torch.zeros(2))
    with pytest.raises(ValueError):
        flow_matching_loss(x, x, x, torch.zeros(3))
    with pytest.raises(ValueError):
        flow_matching_loss(x, x, x, torch.zeros(2), frame_mask=torch.zeros(3, dtype=torch.bool))
    with pytest.raises(ValueError):
        flow_matching_loss(x, x, x, torch.zeros(2), frame_mask=torch.ones(2, dtype=torch.bool))
