"""Self-rollout: the inference path, one gradient-carrying exit step, gradient only on target chunks."""

from __future__ import annotations

import pytest
import torch

from context_forcing_core.diffusion.sampler import generate
from context_forcing_core.memory.config import context_forcing
from context_forcing_core.objectives.rollout import self_rollout

KW = dict(memory=context_forcing(), latent_size=(4, 4))


class Spy(torch.nn.Module):
    """Wraps the model and records, per call, the timesteps and whether autograd was recording."""

    def __init__(self, model):
        super().__init__()
        self.model, self.config, self.calls = model, model.config, []

    device = property(lambda self: self.model.device)

    def encode_text(self, text):
        return self.model.encode_text(text)

    def forward(self, x, t, text, **kw):
        self.calls.append((float(t.flatten()[0]), torch.is_grad_enabled()))
        return self.model(x, t, text, **kw)


def test_with_the_last_exit_step_the_rollout_is_exactly_inference(model):
    text = torch.randn(1, 3, model.config.text_dim)
    rollout = self_rollout(model, text, num_latent_frames=12, target_frames=6, exit_step=3,
                           generator=torch.Generator().manual_seed(5), **KW)
    reference = generate(model, text, num_latent_frames=12, seed=5, **KW)
    assert torch.equal(rollout.latents.detach(), reference.latents)


@pytest.mark.parametrize("clean_context", [True, False])
def test_only_the_exit_step_of_target_chunks_records_gradient(model, clean_context):
    spy = Spy(model)
    rollout = self_rollout(spy, torch.randn(1, 3, model.config.text_dim), num_latent_frames=12, target_frames=6,
                           exit_step=1, generator=torch.Generator().manual_seed(0), clean_context=clean_context, **KW)
    # per chunk: denoising passes up to the exit step, then the t = 0 commit pass
    per_chunk, i = [], 0
    while i < len(spy.calls):
        j = next(k for k in range(i, len(spy.calls)) if spy.calls[k][0] == 0.0)
        per_chunk.append(spy.calls[i:j + 1])
        i = j + 1
    assert len(per_chunk) == 4
    for c, calls in enumerate(per_chunk):
        target = c >= 2
        denoise = calls[:-1]
        assert len(denoise) == (2 if target or not clean_context else 4)
        assert [g for _, g in denoise] == [False] * (len(denoise) - 1) + [target]
        assert calls[-1][1] is False, "the commit pass never records gradient"
    assert rollout.latents.requires_grad


def test_gradient_reaches_parameters_only_through_target_frames(model):
    text = torch.randn(1, 3, model.config.text_dim)
    rollout = self_rollout(model, text, num_latent_frames=9, target_frames=3, exit_step=2,
                           generator=torch.Generator().manual_seed(1), **KW)
    params = list(model.parameters())
    from_context = torch.autograd.grad(rollout.latents[:, :, :6].square().sum(), params, retain_graph=True,
                                       allow_unused=True, materialize_grads=True)
    assert all(g.abs().sum() == 0 for g in from_context), "context frames carry no gradient"
    from_target = torch.autograd.grad(rollout.latents[:, :, 6:].square().sum(), params, allow_unused=True,
                                      materialize_grads=True)
    names = [n for n, _ in model.named_parameters()]
    untrained = [n for n, g in zip(names, from_target) if g.abs().sum() == 0]
    assert not untrained, f"target frames must train every parameter, text layers included: {untrained}"


def test_bad_rollout_arguments(model):
    text = torch.randn(1, 3, model.config.text_dim)
    g = torch.Generator()
    with pytest.raises(ValueError, match="exceeds"):
        self_rollout(model, text, num_latent_frames=6, target_frames=9, exit_step=0, generator=g, **KW)
    with pytest.raises(ValueError, match="multiple of the chunk size"):
        self_rollout(model, text, num_latent_frames=7, target_frames=3, exit_step=0, generator=g, **KW)
    with pytest.raises(ValueError, match="exit_step"):
        self_rollout(model, text, num_latent_frames=6, target_frames=3, exit_step=4, generator=g, **KW)
