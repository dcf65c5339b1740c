"""Why are first visits blends? The same first-visit training with the stochastic few-step sampler and with a
deterministic one.

    python -m training.probes.first_visit_sampler --init STUDENT [--steps 200] [--every 100] [--rounds 16]
        [--variants stochastic,deterministic,stochastic+reading,deterministic+reading]

The student's sampler (Self-Forcing's, :func:`~context_forcing_core.diffusion.sampler.sample_chunk`) re-noises each
step's x0 with *fresh* noise, so after the first step the state no longer holds the chunk's noise z: only the x0
prediction carries information on. The regression that trains it targets the exact teacher's ODE end point x0*(z),
which depends on z in a way a blurred first prediction does not pass on, and trains the later levels on x0*
re-noised (a state that holds the picture) while sampling feeds them a blend re-noised. A deterministic few-step
sampler (Euler along the student's flow, the state keeps z) can instead follow the teacher's own probability-flow
trajectory, which decides the picture gradually: each level regresses the x0 whose Euler step lands on the
teacher's next state from the same z (the last one x0*), from the teacher's state at that level.

"+reading" adds the reading term of Stage 2's regression (weight :data:`READ_WEIGHT`): the student's own sample
from the chunk's noise, through its sampler with gradient in the last step, regresses onto the library picture the
exact teacher reads in it (:func:`~context_forcing_core.toyworld.exact_teacher.reading`).

"coupled" (the stochastic sampler, no reading term) regresses onto
:func:`~context_forcing_core.toyworld.exact_teacher.coupled_sample` instead of x0*(z): the teacher's distribution
over pictures, the picture chosen by the quantile of the chunk noise's sum (a map that needs one global sum).

Every variant starts from ``--init``, trains on one no-context chunk at a time (first visits, uniform prompts), the
same draws, and is scored on held-out noise with their own sampler by
:func:`~context_forcing_core.eval.toy.first_visits.score_first_visits`: library distance (latent units; 0 = a
library picture) and the chance recall of their inventions (0.25 uniform, 1 = always the same picture); the exact
posterior mean through each sampler is the reference row.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from context_forcing_core.diffusion.sampler import sample_chunk
from context_forcing_core.diffusion.schedule import x0_from_flow
from context_forcing_core.eval.toy.first_visits import score_first_visits
from context_forcing_core.models.loading import load_model, save_model
from context_forcing_core.models.wan import WanModel
from context_forcing_core.toyworld.exact_teacher import coupled_sample, exact_sample, reading
from training.presets import preset

from .position_table import ODE_STEPS, TRAIN_SEED, World, make_world, optimiser_step, regression_loss

READ_WEIGHT = preset("toy-scenes-stage2").scenes.read_weight
"""Weight of the reading term (Stage 2's, ``toy-scenes-stage2``)."""
VARIANTS = ("stochastic", "deterministic", "stochastic+reading", "deterministic+reading", "coupled")
FlowFn = Callable[[Tensor, Tensor], Tensor]
"""(x_t (B, C, f, H, W), timesteps (B, f)) -> flow, the text already bound."""


def sample_deterministic(flow: FlowFn, noise: Tensor, timesteps: Sequence[float], *, grad_last: bool = False) -> Tensor:
    """Few-step Euler along the flow from ``noise`` (B, C, f, H, W) over ``timesteps``; the last step's x0 (with
    autograd through that step alone when ``grad_last``).
    """
    b, f = noise.shape[0], noise.shape[2]
    x = noise
    for i, t in enumerate(timesteps):
        with torch.set_grad_enabled(grad_last and i == len(timesteps) - 1):
            v = flow(x, torch.full((b, f), float(t))).float()
        if i == len(timesteps) - 1:
            return x0_from_flow(x, v, t / 1000.0)
        x = x + (timesteps[i + 1] - t) / 1000.0 * v
    raise ValueError("timesteps must not be empty")


def _state_at(states: dict[float, Tensor], sigma: float) -> Tensor:
    """The teacher's ODE state at ``sigma`` (its grid holds every student level; float keys matched to 1e-9)."""
    for s, x in states.items():
        if abs(s - sigma) < 1e-9:
            return x
    raise ValueError(f"the teacher's {ODE_STEPS}-step grid has no state at sigma {sigma}")


def euler_goal(x: Tensor, x_next: Tensor, sigma: float, sigma_next: float) -> Tensor:
    """The x0 whose flow (x - x0) / sigma carries the Euler step from state ``x`` at ``sigma`` to ``x_next`` at
    ``sigma_next`` (both (B, C, f, H, W)).
    """
    return x - sigma * (x_next - x) / (sigma_next - sigma)


def trajectory_loss(model: WanModel, world: World, ctx, states: dict[float, Tensor], target: Tensor) -> Tensor:
    """Mean over the step levels of the x0 error onto the x0 whose Euler step from the teacher's state at that level
    lands on its state at the next (the last level: the end point ``target``).
    """
    levels = [t / 1000.0 for t in world.timesteps]
    loss = torch.zeros(())
    for i, s in enumerate(levels):
        x = _state_at(states, s)
        if i + 1 < len(levels):
            goal = euler_goal(x, _state_at(states, levels[i + 1]), s, levels[i + 1])
        else:
            goal = target
        tt = torch.full((x.shape[0], x.shape[2]), float(world.timesteps[i]))
        pred = x0_from_flow(x, model(x, tt, ctx, attention="block_causal").float(), s)
        loss = loss + F.mse_loss(pred, goal) / len(levels)
    return loss


def train_step(model: WanModel, opt: torch.optim.Optimizer, world: World, batch: int, gen: torch.Generator, *,
               deterministic: bool, read_weight: float, coupled: bool = False) -> float:
    """One step of a variant (module docstring); every variant makes the same prompt and noise draws."""
    idx = torch.randint(0, len(world.texts), (batch,), generator=gen)
    z = torch.randn((batch, *world.shape), generator=gen)
    text = world.texts[idx]
    if coupled:
        target = coupled_sample(world.teacher, text, noise=z)  # (B, C, f, H, W)
        return optimiser_step(model, opt, regression_loss(model, world, model.encode_text(text), z, target, gen))
    states: dict[float, Tensor] = {}
    target = exact_sample(world.teacher, text, num_frames=world.shape[1], steps=world.ode_steps, noise=z,
                          generator=gen, states=states)
    ctx = model.encode_text(text)
    loss = (trajectory_loss(model, world, ctx, states, target) if deterministic
            else regression_loss(model, world, ctx, z, target, gen))
    if read_weight > 0:
        def flow(x: Tensor, t: Tensor) -> Tensor:
            return model(x, t, ctx, attention="block_causal")

        own = (sample_deterministic(flow, z, world.timesteps, grad_last=True) if deterministic
               else sample_chunk(flow, z, world.timesteps, generator=gen, grad=True))
        loss = loss + read_weight * F.mse_loss(own, reading(world.teacher, own.detach(), text))
    return optimiser_step(model, opt, loss)


@torch.no_grad()
def first_visit_scores(flow: Callable[[Tensor, Tensor, Tensor], Tensor], world: World, *, deterministic: bool,
                       rounds: int) -> tuple[float, float]:
    """(library distance, chance recall) of every prompt's first visits, ``rounds`` held-out noises each."""
    def bound(x: Tensor, t: Tensor) -> Tensor:
        return flow(x, t, world.texts)

    def sample(z: Tensor, gen: torch.Generator) -> Tensor:
        return (sample_deterministic(bound, z, world.timesteps) if deterministic
                else sample_chunk(bound, z, world.timesteps, generator=gen))

    score = score_first_visits(sample, world.pictures, rounds=rounds, chunk_frames=world.shape[1])
    return score.library_distance, score.chance_recall


def main(argv: list[str] | None = None) -> None:
    """Train both variants from ``--init`` and print their first-visit scores every ``--every`` steps."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--init", required=True, help="student checkpoint both variants start from")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--every", type=int, default=100)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--rounds", type=int, default=16, help="held-out noises per prompt at each evaluation")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated among {', '.join(VARIANTS)}")
    parser.add_argument("--save", type=Path, default=None,
                        help="folder for each variant's checkpoint at every evaluation (VARIANT-STEP.safetensors)")
    args = parser.parse_args(argv)
    world = make_world()
    teacher = world.teacher
    names = args.variants.split(",")
    if any(n not in VARIANTS for n in names):
        parser.error(f"--variants: choose among {', '.join(VARIANTS)}, got {args.variants!r}")
    for det in (False, True):
        d, c = first_visit_scores(lambda x, t, txt: teacher(x, t, txt), world, deterministic=det, rounds=args.rounds)
        print(f"exact posterior mean, {'deterministic' if det else 'stochastic'} sampler: library distance {d:.3f}, "
              f"chance recall {c:.2f}", flush=True)
    rows: dict[str, list[tuple[int, float, float]]] = {}
    for name in names:
        det, read = name.startswith("deterministic"), READ_WEIGHT if name.endswith("+reading") else 0.0
        model = load_model(args.init, dtype=torch.float32)
        opt = torch.optim.AdamW(model.parameters(), lr=args.lr)
        gen, start = torch.Generator().manual_seed(TRAIN_SEED), time.perf_counter()
        rows[name] = []
        for step in range(args.steps + 1):
            if step % args.every == 0:
                model.eval()

                def flow(x: Tensor, t: Tensor, txt: Tensor, m: WanModel = model) -> Tensor:
                    return m(x, t, m.encode_text(txt), attention="block_causal")

                rows[name].append((step, *first_visit_scores(flow, world, deterministic=det, rounds=args.rounds)))
                if args.save is not None:
                    args.save.mkdir(parents=True, exist_ok=True)
                    save_model(model, args.save / f"{name}-{step}.safetensors")
                model.train()
                print(f"{name}: step {step}, library distance {rows[name][-1][1]:.3f}, chance recall "
                      f"{rows[name][-1][2]:.2f} ({time.perf_counter() - start:.0f} s)", flush=True)
            if step < args.steps:
                train_step(model, opt, world, args.batch, gen, deterministic=det, read_weight=read,
                           coupled=name == "coupled")
    print("\n| step | " + " | ".join(f"{n}: library distance / chance recall" for n in rows) + " |")
    print("|---|" + "---|" * len(rows))
    for i, (step, *_) in enumerate(next(iter(rows.values()))):
        print(f"| {step} | " + " | ".join(f"{r[i][1]:.3f} / {r[i][2]:.2f}" for r in rows.values()) + " |")


if __name__ == "__main__":
    main()
