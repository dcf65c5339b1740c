"""Where a scene-world student fails: its regression error per step level and per kind of chunk.

    python -m context_forcing_core.eval.toy.regression_levels --student FILE [--rollouts 8] [--frames 48]

Held-out training-like rollouts (visit schedules from seeds 50,000 + i, 4 scenes, one-unit visits, batch 4) through
the ``context_forcing`` memory, scored like ``objectives.scheduled_regression`` (no update is made): the mean squared
error of the student's x0 against the exact long teacher's ODE end point at each of the student's step levels, for
three kinds of chunk: the first chunk of a first visit (nothing to remember: the scene is the student's choice), a
later chunk of a visit (the scene is in the fast window: copy it) and the first chunk of a return (the scene is in
slow memory or the sink: recall it). ``--teacher-forced`` commits the teacher's chunks (clean contexts), otherwise
the student's own. A student that reads its memory has ~0 error on continuations and returns at every level,
however large the error of first visits at the first level (from pure noise) is.
"""

from __future__ import annotations

import argparse
from collections import defaultdict

import numpy as np
import torch

from context_forcing_core.diffusion.schedule import DEFAULT_SHIFT, DEFAULT_STEPS, warp_timesteps
from context_forcing_core.memory.config import memory_preset
from context_forcing_core.models.loading import load_model
from context_forcing_core.objectives.scheduled_regression import scheduled_regression
from context_forcing_core.toyworld.exact_teacher import ExactTeacher, exact_sample
from context_forcing_core.toyworld.scene_rollout import encoder_for, prompt_schedule
from context_forcing_core.toyworld.scenes import SceneSchedule, random_schedule, relabel_schedule

KINDS = ("first visit", "continuation", "return")


def chunk_kinds(schedule: SceneSchedule, chunk_frames: int) -> list[str]:
    """The kind of every chunk of ``schedule`` (see the module docstring)."""
    returning = {v.start for v, _ in schedule.returns()}
    kinds = []
    for start in range(0, schedule.num_frames, chunk_frames):
        v = next(v for v in schedule.visits if v.start <= start < v.stop)
        kinds.append(KINDS[1] if start > v.start else KINDS[2] if v.start in returning else KINDS[0])
    return kinds


def level_errors(student_path: str, *, rollouts: int, frames: int, teacher_forced: bool,
                 ode_steps: int = 16) -> dict[tuple[str, int], float]:
    """Mean squared error per (kind, step level) over ``rollouts`` held-out rollouts."""
    model = load_model(student_path).train()  # train mode as in training; no optimiser step is taken
    enc = encoder_for(model)
    teacher = ExactTeacher(encoder=enc)
    mem = memory_preset("context_forcing")
    sums: dict[tuple[str, int], list[float]] = defaultdict(list)
    for i in range(rollouts):
        rng = np.random.default_rng(50_000 + i)
        base = random_schedule(rng, num_frames=frames, num_scenes=4, visit_units=(1, 1))
        schedules = [base] + [relabel_schedule(base, rng) for _ in range(3)]
        gen = torch.Generator().manual_seed(i)

        def fn(z, text, context, _frames, gen=gen):
            return exact_sample(teacher, text, num_frames=z.shape[2], context=context, steps=ode_steps, noise=z,
                                generator=gen)

        levels: list[list[float]] = []
        scheduled_regression(model, fn, prompt_schedule(schedules, enc), num_latent_frames=frames, memory=mem,
                             generator=gen, teacher_forced=teacher_forced, level_losses=levels)
        model.zero_grad(set_to_none=True)
        for kind, per_level in zip(chunk_kinds(base, mem.chunk_frames), levels):
            for lvl, err in enumerate(per_level):
                sums[(kind, lvl)].append(err)
    return {k: float(np.mean(v)) for k, v in sums.items()}


def main(argv: list[str] | None = None) -> int:
    """Command line: print the table; 0 on success."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--student", required=True)
    parser.add_argument("--rollouts", type=int, default=8)
    parser.add_argument("--frames", type=int, default=48)
    parser.add_argument("--teacher-forced", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    errors = level_errors(args.student, rollouts=args.rollouts, frames=args.frames,
                          teacher_forced=args.teacher_forced)
    ts = warp_timesteps(DEFAULT_STEPS, DEFAULT_SHIFT)
    print(f"x0 MSE vs the exact teacher's end point ({args.rollouts} held-out rollouts of {args.frames} frames, "
          f"{'teacher-forced' if args.teacher_forced else 'on-policy'} contexts)")
    print(f"{'chunk kind':14s} " + " ".join(f"{'t=' + format(t, 'g'):>9s}" for t in ts))
    for kind in KINDS:
        print(f"{kind:14s} " + " ".join(f"{errors.get((kind, lvl), float('nan')):9.3f}" for lvl in range(len(ts))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
