"""ODE-regression init: teacher trajectories against a closed-form ODE, the student loss against a block-causal forward."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from context_forcing_core.diffusion.schedule import add_noise, warp_timesteps, x0_from_flow
from context_forcing_core.memory.config import memory_preset
from context_forcing_core.objectives.ode import OdeTrajectory, ode_regression_loss, ode_sigmas, teacher_trajectory


class PointTeacher(torch.nn.Module):
    """Exact flow of a data distribution concentrated on one point: v = (x - a) / sigma, a = a_cond or a_uncond.

    The text rows pick the point: a row of ones is the prompt, zeros the empty prompt.
    """

    def __init__(self, a_cond: torch.Tensor, a_uncond: torch.Tensor):
        super().__init__()
        self.a_cond, self.a_uncond = a_cond, a_uncond

    device = torch.device("cpu")

    def encode_text(self, text):
        return text

    def forward(self, x, t, text):
        cond = text[:, 0, 0].reshape(-1, 1, 1, 1, 1) > 0.5
        a = torch.where(cond, self.a_cond, self.a_uncond)
        return (x - a) / (t / 1000).reshape(-1, 1, 1, 1, 1)


def test_grid_starts_at_one_ends_at_zero_and_contains_the_student_timesteps():
    sigmas = ode_sigmas(24)
    assert sigmas[0] == 1 and sigmas[-1] == 0 and torch.all(sigmas[1:] < sigmas[:-1])
    on_grid = [float(sigmas[i]) * 1000 for i in (0, 6, 12, 18)]
    assert on_grid == pytest.approx(warp_timesteps())


def test_euler_on_the_exact_flow_of_a_point_follows_the_straight_path():
    g = torch.Generator().manual_seed(0)
    a_cond, a_uncond = torch.randn(1, 2, 3, 2, 2, generator=g), torch.randn(1, 2, 3, 2, 2, generator=g)
    noise = torch.randn(2, 2, 3, 2, 2, generator=g)
    text, uncond = torch.ones(2, 1, 1), torch.zeros(2, 1, 1)
    traj = teacher_trajectory(PointTeacher(a_cond, a_uncond), noise, text, uncond, num_steps=12, guidance=3.0)
    # The guided flow is the exact flow of the point b + s (a - b); Euler on a straight path is exact.
    point = a_uncond + 3.0 * (a_cond - a_uncond)
    assert traj.timesteps == pytest.approx(tuple(warp_timesteps()))
    torch.testing.assert_close(traj.x0, point.expand_as(noise), atol=1e-5, rtol=0)
    for k, t in enumerate(traj.timesteps):
        torch.testing.assert_close(traj.states[:, k], add_noise(point, noise, t / 1000), atol=1e-5, rtol=0)


def test_a_grid_that_misses_the_student_steps_is_refused():
    teacher = PointTeacher(torch.zeros(1), torch.zeros(1))
    with pytest.raises(ValueError, match="multiple of 4"):
        teacher_trajectory(teacher, torch.zeros(1, 1, 3, 1, 1), torch.ones(1, 1, 1), torch.zeros(1, 1, 1), num_steps=10)


def test_student_loss_equals_teacher_forced_block_causal_forwards(model):
    """Reference: for chunk c, one block-causal forward over [clean x0 of chunks < c ; x_t of chunk c]."""
    g = torch.Generator().manual_seed(1)
    b, c, f = 2, model.config.in_channels, 9
    states = torch.randn(b, 4, c, f, 4, 4, generator=g)
    x0 = torch.randn(b, c, f, 4, 4, generator=g)
    traj = OdeTrajectory(states=states, timesteps=tuple(warp_timesteps()), x0=x0)
    text = torch.randn(b, 3, model.config.text_dim, generator=g)
    loss = ode_regression_loss(model, traj, text, memory_preset("full"), torch.Generator().manual_seed(7))

    levels = torch.Generator().manual_seed(7)
    expected = []
    for start in range(0, f, 3):
        level = torch.randint(4, (b,), generator=levels)
        x_t = states[torch.arange(b), level][:, :, start : start + 3]
        t_chunk = torch.tensor(traj.timesteps, dtype=torch.float32)[level][:, None].expand(b, 3)
        seq = torch.cat([x0[:, :, :start], x_t], dim=2)
        t = torch.cat([torch.zeros(b, start), t_chunk], dim=1)
        with torch.no_grad():
            flow = model(seq, t, text, attention="block_causal")[:, :, start:]
        expected.append(F.mse_loss(x0_from_flow(x_t, flow, t_chunk / 1000), x0[:, :, start : start + 3]))
    torch.testing.assert_close(loss.detach(), torch.stack(expected).mean(), atol=1e-5, rtol=1e-5)


def test_gradient_reaches_the_student_only_through_the_noisy_chunks(model):
    g = torch.Generator().manual_seed(2)
    traj = OdeTrajectory(states=torch.randn(1, 4, 4, 6, 4, 4, generator=g), timesteps=tuple(warp_timesteps()),
                         x0=torch.randn(1, 4, 6, 4, 4, generator=g))
    model.train()
    loss = ode_regression_loss(model, traj, torch.randn(1, 3, model.config.text_dim), memory_preset("full"),
                               torch.Generator().manual_seed(0))
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(gr is not None and torch.isfinite(gr).all() for gr in grads)
    assert sum(float(gr.abs().sum()) for gr in grads) > 0
