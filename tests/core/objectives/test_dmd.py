"""DMD / Contextual DMD: guidance, gradient value and sign, normaliser, NaN safety, masks, context scoring."""

from __future__ import annotations

import pytest
import torch

from context_forcing_core.diffusion.schedule import x0_from_flow
from context_forcing_core.objectives.dmd import (
    contextual_dmd_loss,
    contextual_scores,
    critic_loss,
    dmd_loss,
    guided_x0,
    score_with_context,
)
from context_forcing_core.objectives.flow import flow_matching_loss

SHAPE = (2, 3, 4, 2, 2)


def _triple(seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(SHAPE, generator=g, dtype=dtype) for _ in range(3)]


def test_guided_x0_hand_values():
    cond, uncond = torch.tensor([1.0, 2.0, -1.0]), torch.tensor([0.0, 3.0, -1.0])
    torch.testing.assert_close(guided_x0(cond, uncond, 3.0), torch.tensor([4.0, -1.0, -1.0]))
    torch.testing.assert_close(guided_x0(cond, uncond, 0.0), cond)
    with pytest.raises(ValueError):
        guided_x0(cond, uncond[:2], 3.0)


def test_dmd_gradient_is_g_over_numel_and_points_to_real():
    x, real, fake = _triple()
    x.requires_grad_(True)
    out = dmd_loss(x, real, fake)
    out.loss.backward()
    norm = (x.detach() - real).abs().mean(dim=(1, 2, 3, 4), keepdim=True)
    g = (fake - real) / norm
    assert out.loss.dtype == torch.float64
    torch.testing.assert_close(x.grad, g / x.numel(), rtol=1e-12, atol=0)
    torch.testing.assert_close(out.grad, g, rtol=1e-12, atol=0)
    assert out.loss.item() == pytest.approx(0.5 * (g**2).mean().item())
    # a descent step on x moves along x0_real - x0_fake: -grad = c_b (x0_real - x0_fake), c_b > 0 per sample
    ratio = -x.grad / (real - fake)
    assert torch.all(ratio > 0)
    for b in range(SHAPE[0]):
        torch.testing.assert_close(ratio[b], torch.full_like(ratio[b], 1 / (norm[b].item() * x.numel())))
    torch.testing.assert_close(out.metrics["normaliser"], norm.mean())
    torch.testing.assert_close(out.metrics["x0_gap"], (real - fake).abs().mean())
    torch.testing.assert_close(out.metrics["grad_norm"], g.norm())


def test_dmd_normaliser_invariance():
    x, real, fake = _triple(1)
    scale = torch.tensor([1.0, 10.0], dtype=torch.float64).reshape(2, 1, 1, 1, 1)
    x2, fake2 = real + scale * (x - real), real + scale * (fake - real)
    a, b = x.clone().requires_grad_(True), x2.clone().requires_grad_(True)
    dmd_loss(a, real, fake).loss.backward()
    dmd_loss(b, real, fake2).loss.backward()
    torch.testing.assert_close(a.grad, b.grad, rtol=1e-12, atol=1e-18)
    # without the normaliser the second sample's gradient would be 10x larger
    assert not torch.allclose((fake2 - real)[1], (fake - real)[1])


def test_dmd_nan_safe_when_x_equals_real():
    x, real, fake = _triple(2)
    x = x.clone()
    x[0] = real[0]  # sample 0: normaliser 0
    x.requires_grad_(True)
    out = dmd_loss(x, real, fake)
    out.loss.backward()
    assert torch.isfinite(out.loss) and torch.all(torch.isfinite(x.grad))
    assert torch.all(x.grad[0] == 0)
    norm1 = (x.detach()[1] - real[1]).abs().mean()
    torch.testing.assert_close(x.grad[1], (fake[1] - real[1]) / norm1 / x.numel(), rtol=1e-12, atol=0)
    # all samples degenerate and fake == real: 0/0 everywhere
    y = real.clone().requires_grad_(True)
    out = dmd_loss(y, real, real.clone())
    out.loss.backward()
    assert out.loss.item() == 0 and torch.all(y.grad == 0)


def test_dmd_frame_mask_and_contextual_equivalence():
    x, real, fake = _triple(3)
    mask = torch.tensor([False, False, True, True])
    a = x.clone().requires_grad_(True)
    out = dmd_loss(a, real, fake, frame_mask=mask)
    out.loss.backward()
    assert torch.all(a.grad[:, :, ~mask] == 0) and torch.all(a.grad[:, :, mask] != 0)
    norm = (x - real)[:, :, mask].abs().mean(dim=(1, 2, 3, 4), keepdim=True)
    n = a.grad[:, :, mask].numel()
    torch.testing.assert_close(a.grad[:, :, mask], (fake - real)[:, :, mask] / norm / n, rtol=1e-12, atol=0)
    assert torch.all(out.grad[:, :, ~mask] == 0)
    # frames outside the mask do not enter the normaliser
    x_other = x.clone()
    x_other[:, :, 0] += 100
    b = x_other.clone().requires_grad_(True)
    dmd_loss(b, real, fake, frame_mask=mask).loss.backward()
    torch.testing.assert_close(a.grad, b.grad, rtol=0, atol=0)
    # contextual DMD on the last 2 frames == masked DMD
    c = x.clone().requires_grad_(True)
    cout = contextual_dmd_loss(c, real[:, :, 2:], fake[:, :, 2:], target_frames=2)
    cout.loss.backward()
    torch.testing.assert_close(cout.loss, out.loss, rtol=1e-12, atol=0)
    torch.testing.assert_close(c.grad, a.grad, rtol=1e-12, atol=0)
    with pytest.raises(ValueError):
        contextual_dmd_loss(x, real, fake, target_frames=5)
    with pytest.raises(ValueError):
        dmd_loss(x, real[:, :, :2], fake)


def test_dmd_float32_input_gets_float32_grad():
    x, real, fake = _triple(4, dtype=torch.float32)
    x.requires_grad_(True)
    dmd_loss(x, real, fake).loss.backward()
    assert x.grad.dtype == torch.float32 and torch.all(torch.isfinite(x.grad))


class Spy(torch.nn.Module):
    """Wraps a model and records the timesteps and latents of every call."""

    def __init__(self, model):
        super().__init__()
        self.model, self.calls = model, []

    def forward(self, x, t, text, **kw):
        self.calls.append((x.detach().clone(), t.detach().clone(), kw.get("attention")))
        return self.model(x, t, text, **kw)


def test_score_with_context(model):
    g = torch.Generator().manual_seed(5)
    context = torch.randn(1, 4, 3, 4, 4, generator=g)
    x_t = torch.randn(1, 4, 2, 4, 4, generator=g)
    text = torch.randn(1, 3, 8, generator=g)
    t = torch.tensor([700.0])
    spy = Spy(model)
    with torch.no_grad():
        x0 = score_with_context(spy, context, x_t, t, text)
        x0_other = score_with_context(spy, context + 1, x_t, t, text)
    assert x0.shape == x_t.shape
    assert not torch.allclose(x0, x0_other, atol=1e-4)
    latents, ts, attention = spy.calls[0]
    assert attention == "bidirectional"
    torch.testing.assert_close(latents, torch.cat([context, x_t], 2))
    assert torch.equal(ts, torch.tensor([[0.0, 0.0, 0.0, 700.0, 700.0]]))
    with torch.no_grad():
        flow = model(torch.cat([context, x_t], 2), ts, text)
    torch.testing.assert_close(x0, x0_from_flow(x_t, flow[:, :, 3:], 0.7))
    # per-frame target timesteps and an empty context
    with torch.no_grad():
        score_with_context(spy, context, x_t, torch.tensor([[500.0, 900.0]]), text)
        alone = score_with_context(spy, context[:, :, :0], x_t, t, text)
    assert torch.equal(spy.calls[2][1], torch.tensor([[0.0, 0.0, 0.0, 500.0, 900.0]]))
    assert alone.shape == x_t.shape
    with pytest.raises(ValueError):
        score_with_context(spy, context[:, :2], x_t, t, text)
    with pytest.raises(ValueError):
        score_with_context(spy, context, x_t, torch.tensor([1.0, 2.0]), text)


def test_contextual_scores_share_the_context(model):
    g = torch.Generator().manual_seed(6)
    context = torch.randn(1, 4, 2, 4, 4, generator=g, requires_grad=True)
    x_t = torch.randn(1, 4, 2, 4, 4, generator=g)
    text, uncond = torch.randn(1, 3, 8, generator=g), torch.zeros(1, 3, 8)
    teacher, critic = Spy(model), Spy(model)
    real, fake = contextual_scores(teacher, critic, context, x_t, torch.tensor([400.0]), text, uncond, guidance_scale=5.0)
    assert real.shape == fake.shape == x_t.shape and not real.requires_grad and not fake.requires_grad
    for latents, ts, _ in teacher.calls + critic.calls:
        torch.testing.assert_close(latents[:, :, :2], context.detach())
        assert torch.equal(ts[:, :2], torch.zeros(1, 2))
    # same model as teacher and critic: x0_fake is the conditional score, x0_real the guided one
    with torch.no_grad():
        cond = score_with_context(model, context, x_t, torch.tensor([400.0]), text)
        unc = score_with_context(model, context, x_t, torch.tensor([400.0]), uncond)
    torch.testing.assert_close(fake, cond)
    torch.testing.assert_close(real, cond + 5.0 * (cond - unc))


def test_critic_loss_is_flow_matching_on_detached_samples():
    g = torch.Generator().manual_seed(7)
    x_gen = torch.randn(2, 3, 2, 2, 2, generator=g, requires_grad=True)
    noise, pred = torch.randn(2, 3, 2, 2, 2, generator=g), torch.randn(2, 3, 2, 2, 2, generator=g, requires_grad=True)
    t = torch.tensor([300.0, 800.0])
    loss = critic_loss(pred, x_gen, noise, t)
    torch.testing.assert_close(loss, flow_matching_loss(pred, x_gen.detach(), noise, t))
    loss.backward()
    assert x_gen.grad is None and pred.grad is not None
    assert critic_loss(noise - x_gen, x_gen, noise, t) == 0
