"""The toy world's ODE init (first-visit regression): its batched loss against the level-by-level probe's, and the
stage through the CLI."""

import json

import torch

from context_forcing_core.models.config import toy
from context_forcing_core.models.wan import WanModel
from context_forcing_core.toyworld.exact_teacher import coupled_sample
from training import run
from training.probes.position_table import make_world, regression_loss
from training.worlds.scenes import first_visit_loss


def test_batched_first_visit_loss_equals_the_level_by_level_loss():
    torch.manual_seed(0)
    model, world = WanModel(toy()), make_world()
    text = world.texts[torch.tensor([0, 5, 11])]  # (3, L, D)
    z = torch.randn(3, *world.shape, generator=torch.Generator().manual_seed(1))
    target = coupled_sample(world.teacher, text, noise=z)
    ours = first_visit_loss(model, text, z, target, torch.Generator().manual_seed(2))
    ours.backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    ref = regression_loss(model, world, model.encode_text(text), z, target, torch.Generator().manual_seed(2))
    ref.backward()
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-6)
    for g, p in zip(grads, model.parameters(), strict=True):
        torch.testing.assert_close(g, p.grad, rtol=1e-4, atol=1e-6)


def test_first_visit_stage_trains_from_random_init_through_the_cli(tmp_path):
    assert run.main(["ode-init", "--config", "toy-scenes-first-visit", "--out", str(tmp_path), "--steps", "2",
                     "--batch_size", "4"]) == 0
    rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [0, 1] and all(r["regression_loss"] > 0 for r in rows)
    assert not (tmp_path / "ode_pairs").exists()  # regression onto the exact teacher needs no cached pairs
    assert (tmp_path / "latest").read_text().strip() == "step_000002"
