"""Checkpoints: atomic, loadable by the core loader, and a resume continues exactly."""

from __future__ import annotations

import math

import torch
from conftest import random_model

from context_forcing_core import load_model
from training.rng import micro_generator
from training.state import TrainState, ema_decay_at, ema_update, latest_checkpoint, load_checkpoint, new_ema, save_checkpoint


def make_state(seed: int = 0) -> TrainState:
    student, critic = random_model(seed=seed), random_model(seed=seed + 1)
    return TrainState(student=student, critic=critic, ema=new_ema(student),
                      student_optim=torch.optim.AdamW(student.parameters(), lr=1e-3, betas=(0.9, 0.999)),
                      critic_optim=torch.optim.AdamW(critic.parameters(), lr=1e-3, betas=(0.5, 0.95)))


def toy_step(state: TrainState) -> None:
    """A stand-in update that uses every part of the state (random draws, both optimisers, EMA, cursor)."""
    cfg, gen = state.student.config, micro_generator(0, state.step, 0, "toy")  # draws as in the loop: f(step)
    x = torch.randn(1, cfg.in_channels, 3, 4, 4, generator=gen)
    text = torch.randn(1, 2, cfg.text_dim, generator=gen)
    for model, opt in ((state.critic, state.critic_optim), (state.student, state.student_optim)):
        opt.zero_grad()
        model(x, torch.full((1,), 500.0), text).square().mean().backward()
        opt.step()
    ema_update(state.ema, state.student, 0.9)
    state.step += 1
    state.data_cursor += 1


def params(state: TrainState) -> list[torch.Tensor]:
    return [p.detach().clone() for m in (state.student, state.critic, state.ema) for p in m.parameters()]


def test_kill_and_resume_equals_an_uninterrupted_run(tmp_path):
    straight = make_state()
    for _ in range(4):
        toy_step(straight)

    first = make_state()
    for _ in range(2):
        toy_step(first)
    save_checkpoint(first, tmp_path)
    del first  # "killed"

    resumed = make_state(seed=7)  # fresh process: different initial weights, all overwritten by the load
    load_checkpoint(resumed, latest_checkpoint(tmp_path))
    assert (resumed.step, resumed.data_cursor) == (2, 2)
    for _ in range(2):
        toy_step(resumed)
    assert all(torch.equal(a, b) for a, b in zip(params(straight), params(resumed)))


def test_checkpoint_layout_is_atomic_and_loadable_by_the_core(tmp_path):
    state = make_state()
    toy_step(state)
    folder = save_checkpoint(state, tmp_path)
    assert folder.name == "step_000001" and latest_checkpoint(tmp_path) == folder
    assert sorted(p.name for p in folder.iterdir()) == [
        "critic.safetensors", "state.pt", "student.safetensors", "student_ema.safetensors"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "no temporary leftovers"
    ema = load_model(folder / "student_ema.safetensors")
    assert all(torch.equal(a, b) for a, b in zip(ema.parameters(), state.ema.parameters()))


def test_ema_update_is_the_stated_average():
    a, b = random_model(seed=0), random_model(seed=1)
    expected = [0.75 * p + 0.25 * q for p, q in zip(a.parameters(), b.parameters())]
    ema_update(a, b, 0.75)
    assert all(torch.allclose(p, e, atol=1e-7) for p, e in zip(a.parameters(), expected))


def test_ema_decay_warms_up_from_its_start():
    assert ema_decay_at(4, decay=0.999, start=5, warmup=True) == 0.0  # a copy before the start
    assert ema_decay_at(5, decay=0.999, start=5, warmup=True) == 0.1  # (1 + 0) / (10 + 0)
    assert ema_decay_at(15, decay=0.999, start=5, warmup=True) == 11 / 20
    assert ema_decay_at(100_000, decay=0.999, start=5, warmup=True) == 0.999
    assert ema_decay_at(5, decay=0.999, start=5, warmup=False) == 0.999


def test_warmed_up_ema_of_a_short_run_is_mostly_the_trained_weights():
    """After 100 updates towards a fixed target at 0.999 from step 0, a plain EMA keeps ~90 % of the initialisation
    (0.999^100); the warmed-up one keeps the product of (1 + n) / (10 + n) over n < 100 of it, 9! 100! / 109!."""
    init, target = random_model(seed=0), random_model(seed=1)
    shares = {}
    for warmup in (False, True):
        ema = new_ema(init)
        for step in range(100):
            ema_update(ema, target, ema_decay_at(step, decay=0.999, start=0, warmup=warmup))
        p0, p1, pe = (next(m.parameters()) for m in (init, target, ema))
        shares[warmup] = float((pe - p1).norm() / (p0 - p1).norm())
    assert abs(shares[False] - 0.999 ** 100) < 1e-3
    assert abs(shares[True] - math.factorial(9) * math.factorial(100) / math.factorial(109)) < 1e-6  # float32 lerp
