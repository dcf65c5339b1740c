"""The first-visit sampler probe: its deterministic sampler, Euler goals and noise coupling against hand computations,
and the command end to end."""

from __future__ import annotations

import torch

from context_forcing_core.diffusion.schedule import DEFAULT_SHIFT, DEFAULT_STEPS, warp_timesteps
from context_forcing_core.eval.toy.first_visits import picture_distances
from context_forcing_core.student import BUNDLED_TOY_STUDENT
from context_forcing_core.toyworld.exact_teacher import exact_sample
from training.probes import first_visit_sampler as probe
from training.probes.position_table import make_world


def test_an_euler_step_onto_the_goal_lands_on_the_next_state():
    gen = torch.Generator().manual_seed(0)
    x, x_next = torch.randn(2, 3, 1, 2, 2, generator=gen), torch.randn(2, 3, 1, 2, 2, generator=gen)
    goal = probe.euler_goal(x, x_next, 0.9, 0.6)
    flow = (x - goal) / 0.9  # x_t = (1 - s) x0 + s eps, v = eps - x0 = (x_t - x0) / s
    torch.testing.assert_close(x + (0.6 - 0.9) * flow, x_next)


def test_deterministic_sampler_is_euler_along_the_flow():
    # A constant flow v: Euler from z over levels s_0 > ... > s_n ends at z + (s_n - s_0) v, whose x0 is that - s_n v.
    z, v = torch.randn(1, 2, 1, 2, 2), torch.randn(1, 2, 1, 2, 2)
    steps = [1000.0, 800.0, 500.0]
    out = probe.sample_deterministic(lambda x, t: v, z, steps)
    torch.testing.assert_close(out, z + (0.5 - 1.0) * v - 0.5 * v)


def test_exact_teacher_through_the_deterministic_sampler_places_library_pictures():
    world = make_world()
    gen = torch.Generator().manual_seed(3)
    text, pictures = world.texts[:4], world.pictures[:4]
    z = torch.randn((4, *world.shape), generator=gen)
    chunk = probe.sample_deterministic(lambda x, t: world.teacher(x, t, text), z,
                                                warp_timesteps(DEFAULT_STEPS, DEFAULT_SHIFT))
    assert picture_distances(chunk, pictures).min(-1).values.max() < 1e-3  # wrong pick: ~1.9


def test_the_teacher_states_hold_every_student_level():
    world = make_world()
    gen = torch.Generator().manual_seed(4)
    z = torch.randn((2, *world.shape), generator=gen)
    states: dict[float, torch.Tensor] = {}
    end = exact_sample(world.teacher, world.texts[:2], num_frames=world.shape[1], steps=world.ode_steps, noise=z,
                       generator=gen, states=states)
    for t in world.timesteps:
        assert probe._state_at(states, t / 1000.0).shape == z.shape
    torch.testing.assert_close(probe._state_at(states, 1.0), z)
    assert len(states) == world.ode_steps and list(states) == sorted(states, reverse=True)  # one per ODE step
    assert torch.isfinite(end).all()


def test_every_variant_trains_and_is_scored(capsys):
    probe.main(["--init", str(BUNDLED_TOY_STUDENT), "--steps", "1", "--every", "1", "--batch", "2",
                         "--rounds", "1"])
    out = capsys.readouterr().out
    assert "exact posterior mean, stochastic sampler: library distance 0.000" in out
    table = [line for line in out.splitlines() if line.startswith("| ")]
    assert table[0].count(": library distance / chance recall") == len(probe.VARIANTS)
    assert [row.split(" | ")[0] for row in table[1:]] == ["| 0", "| 1"]
