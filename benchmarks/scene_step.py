"""Per-step time of the scene world's Stage 2 regression (``objectives.scheduled_regression``), CPU, at 1 and 2 threads.

Prints, per thread count: the median seconds of one ``train_step`` after a warm-up step (wall clock, and the
process's CPU time: on a machine others share, a wall time well above CPU time / threads means it waited), the
student's forward passes per step (gradient-recording and not), and the exact teacher's work per step (posterior
evaluations ``x0``, context likelihoods ``context_logp``, prompt look-ups ``prompt_index``). Every measurement
builds a fresh run from the same preset, so the counts and the steps' work are the same at every thread count.

Run: python -m benchmarks.scene_step [--steps 5] [--threads 1 2] [--preset toy-scenes-stage2]

To compare with an earlier commit, run this file against that commit's packages:
``git worktree add /tmp/before <commit>; PYTHONPATH=/tmp/before python benchmarks/scene_step.py``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import Counter

import torch

from training.loop import build_run, train_step
from training.presets import PRESETS, preset

TEACHER_METHODS = ("x0", "context_logp", "prompt_index")


def stage2_preset() -> str:
    """The scene world's Stage 2 regression preset, whatever its current name."""
    for name in ("toy-scenes-stage2", "scenes-stage2"):
        if name in PRESETS:
            return name
    names = [n for n in PRESETS if n.endswith("scenes-stage2")]
    if not names:
        raise SystemExit(f"no scene Stage 2 preset among {sorted(PRESETS)}")
    return names[0]


def _count(run, counts: Counter) -> None:
    """Count the student's forwards and the teacher's calls into ``counts``."""

    def pre_hook(module, args):
        counts["forwards (grad)" if torch.is_grad_enabled() else "forwards (no grad)"] += 1

    run.state.student.register_forward_pre_hook(pre_hook)
    teacher = run.teacher
    for name in TEACHER_METHODS:
        method = getattr(teacher, name, None)
        if method is None:
            continue

        def counted(*args, _method=method, _name=name, **kwargs):
            counts[f"teacher {_name}"] += 1
            return _method(*args, **kwargs)

        setattr(teacher, name, counted)


def measure(name: str, threads: int, steps: int) -> tuple[list[float], list[float], Counter]:
    """Wall and process CPU seconds of each of ``steps`` steps after one warm-up step, and per-step counts."""
    torch.set_num_threads(threads)
    run = build_run(preset(name))
    counts: Counter = Counter()
    _count(run, counts)
    train_step(run)  # warm-up
    counts.clear()
    wall, cpu = [], []
    for _ in range(steps):
        t0, c0 = time.perf_counter(), time.process_time()
        train_step(run)
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    per_step = Counter({k: v // steps for k, v in counts.items()})
    return wall, cpu, per_step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--preset", default=None)
    args = parser.parse_args()
    name = args.preset or stage2_preset()
    import context_forcing_core

    print(f"{name}: context_forcing_core from {context_forcing_core.__file__}")
    for threads in args.threads:
        wall, cpu, counts = measure(name, threads, args.steps)
        shown = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
        spread = " ".join(f"{t:.2f}" for t in wall)
        print(f"{threads} thread(s): {statistics.median(wall):.2f} s per step (median of {args.steps}: {spread}; "
              f"process CPU {statistics.median(cpu):.2f} s); per step: {shown}", flush=True)


if __name__ == "__main__":
    main()
