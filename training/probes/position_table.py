"""Can a toy student place a library picture from pure noise? The same short training with and without learned
absolute positions (``WanConfig.position_grid``).

    python -m training.probes.position_table [--steps 400] [--batch 16] [--every 100] [--rounds 4]

Wan2.1 has no absolute position embedding: positions enter only through RoPE, which makes attention scores
depend on relative offsets. The scene world keeps every picture at fixed places, and at the first step of a first
visit the input is pure noise, so a RoPE-only model has no way to know which cell a token is (on a spatially
constant input its output is the same at every place, ``tests/core/models/test_positions.py``). Both variants
are trained here from the same seed on one no-context chunk at a time (the first visit), regressing the exact
short teacher's ODE end point from the chunk's noise and from that end point re-noised at each later step level,
as Stage 2 does; evaluated every ``--every`` steps on held-out noise: x0 error at the first level (t = 1000) and
the library distance of the student's few-step sample (mean squared latent distance of each frame to the nearest
of the prompt's pictures, :func:`~context_forcing_core.eval.toy.first_visits.score_first_visits`; ground truth 0).
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import torch
import torch.nn.functional as F
from torch import Tensor

from context_forcing_core.diffusion.sampler import sample_chunk
from context_forcing_core.diffusion.schedule import DEFAULT_SHIFT, DEFAULT_STEPS, add_noise, warp_timesteps, x0_from_flow
from context_forcing_core.eval.toy.first_visits import score_first_visits
from context_forcing_core.memory.config import MemoryConfig
from context_forcing_core.models.config import toy
from context_forcing_core.models.wan import WanModel
from context_forcing_core.toyworld.codec import ToyCodec
from context_forcing_core.toyworld.exact_teacher import ExactTeacher, exact_sample
from context_forcing_core.toyworld.scenes import all_scene_prompts, library_latents
from context_forcing_core.toyworld.text import ToyTextEncoder
from training.presets import preset

ODE_STEPS = preset("toy-scenes-stage2").ode.steps
"""Probability-flow steps of the exact teacher's targets (Stage 2's, ``toy-scenes-stage2``)."""
TRAIN_SEED, EVAL_SEED = 1, 99
"""Noise and prompt draws of training, and the held-out noise of evaluation."""


@dataclasses.dataclass(frozen=True)
class World:
    """What both variants share: prompts, their texts and pictures, the exact teacher, chunk shape and levels."""

    texts: Tensor  # (P, L, D)
    pictures: Tensor  # (P, K, C, H, W)
    teacher: ExactTeacher
    shape: tuple[int, ...]  # (C, chunk, H, W)
    timesteps: list[float]
    ode_steps: int


def make_world() -> World:
    """The scene world's 18 prompts with their pictures and the exact teacher, at the toy student's sizes."""
    prompts = all_scene_prompts()
    cfg = toy()
    enc = ToyTextEncoder(width=cfg.text_dim, max_tokens=cfg.text_len)
    side = ToyCodec().latent_size
    shape = (cfg.in_channels, MemoryConfig().chunk_frames, side, side)
    return World(texts=enc.encode([p.text for p in prompts]), pictures=torch.stack([library_latents(p) for p in prompts]),
                 teacher=ExactTeacher(prompts, encoder=enc), shape=shape,
                 timesteps=warp_timesteps(DEFAULT_STEPS, DEFAULT_SHIFT), ode_steps=ODE_STEPS)


def _x0(model: WanModel, x: Tensor, t: float, ctx) -> Tensor:
    tt = torch.full((x.shape[0], x.shape[2]), float(t))
    return x0_from_flow(x, model(x, tt, ctx, attention="block_causal").float(), t / 1000.0)


def regression_loss(model: WanModel, world: World, ctx, z: Tensor, target: Tensor, gen: torch.Generator) -> Tensor:
    """Mean over the step levels of the x0 error onto the end point ``target``, from the chunk's noise ``z`` at the
    first level and from ``target`` re-noised (fresh noise from ``gen``) at the others.
    """
    loss = torch.zeros(())
    for i, t in enumerate(world.timesteps):
        x = z if i == 0 else add_noise(target, torch.randn(z.shape, generator=gen), t / 1000.0)
        loss = loss + F.mse_loss(_x0(model, x, t, ctx), target) / len(world.timesteps)
    return loss


def train_step(model: WanModel, opt: torch.optim.Optimizer, world: World, batch: int, gen: torch.Generator) -> float:
    """One step of first-visit regression onto the exact short teacher; returns the loss."""
    idx = torch.randint(0, len(world.texts), (batch,), generator=gen)
    z = torch.randn((batch, *world.shape), generator=gen)
    text = world.texts[idx]
    target = exact_sample(world.teacher, text, num_frames=world.shape[1], steps=world.ode_steps, noise=z, generator=gen)
    return optimiser_step(model, opt, regression_loss(model, world, model.encode_text(text), z, target, gen))


def optimiser_step(model: WanModel, opt: torch.optim.Optimizer, loss: Tensor) -> float:
    """Backward ``loss``, clip the gradient norm to 1 and step; returns the loss (every probe's update)."""
    opt.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    return float(loss.detach())


@torch.no_grad()
def evaluate(model: WanModel, world: World, rounds: int = 4) -> tuple[float, float]:
    """(x0 error at t = 1000, library distance of the sample) on held-out noise, every prompt ``rounds`` times."""
    ctx = model.encode_text(world.texts)
    first: list[float] = []

    def sample(z: Tensor, gen: torch.Generator) -> Tensor:
        target = exact_sample(world.teacher, world.texts, num_frames=world.shape[1], steps=world.ode_steps, noise=z,
                              generator=gen)
        first.append(F.mse_loss(_x0(model, z, world.timesteps[0], ctx), target).item())
        return sample_chunk(lambda x, t: model(x, t, ctx, attention="block_causal"), z, world.timesteps,
                            generator=gen)

    score = score_first_visits(sample, world.pictures, rounds=rounds, chunk_frames=world.shape[1], seed=EVAL_SEED)
    return sum(first) / rounds, score.library_distance


def main(argv: list[str] | None = None) -> None:
    """Train and evaluate both variants; print their curves and the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--every", type=int, default=100)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--rounds", type=int, default=4, help="held-out noise draws per prompt at each evaluation")
    args = parser.parse_args(argv)
    world = make_world()
    rows: dict[str, list[tuple[int, float, float]]] = {}
    for name, grid in (("RoPE only (Wan2.1)", None), ("RoPE + learned positions", toy().position_grid)):
        torch.manual_seed(0)
        model = WanModel(dataclasses.replace(toy(), position_grid=grid))
        opt = torch.optim.AdamW(model.parameters(), lr=args.lr)
        gen, start = torch.Generator().manual_seed(TRAIN_SEED), time.perf_counter()
        rows[name] = []
        for step in range(args.steps + 1):
            if step % args.every == 0:
                model.eval()
                rows[name].append((step, *evaluate(model, world, args.rounds)))
                model.train()
                print(f"{name}: step {step}, x0 error at t=1000 {rows[name][-1][1]:.3f}, library distance "
                      f"{rows[name][-1][2]:.3f} ({time.perf_counter() - start:.0f} s)", flush=True)
            if step < args.steps:
                train_step(model, opt, world, args.batch, gen)
    print("\n| step | " + " | ".join(f"{n}: x0 error t=1000 / library distance" for n in rows) + " |")
    print("|---|" + "---|" * len(rows))
    for i, (step, *_) in enumerate(next(iter(rows.values()))):
        print(f"| {step} | " + " | ".join(f"{r[i][1]:.3f} / {r[i][2]:.3f}" for r in rows.values()) + " |")


if __name__ == "__main__":
    main()
