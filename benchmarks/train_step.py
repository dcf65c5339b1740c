"""Per-step time and peak memory of the toy training stages (CPU).

Run: python -m benchmarks.train_step [--steps 5]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time

import torch

from training.config import apply_overrides
from training.loop import build_run
from training.presets import preset
from training.updates import critic_update, generator_update


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()
    for name in ("toy-scenes-stage1", "toy-scenes-stage2-dmd"):
        run = build_run(apply_overrides(preset(name), {}))
        gen, crit = [], []
        for _ in range(args.steps):
            frames = run.cfg.rollout.frames if run.curriculum is None else run.curriculum.n_start
            t0 = time.perf_counter()
            generator_update(run, frames)
            t1 = time.perf_counter()
            critic_update(run, frames)
            crit.append(time.perf_counter() - t1)
            gen.append(t1 - t0)
            run.state.step += 1
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"{name} ({frames} rollout frames, {torch.get_num_threads()} threads): student step "
              f"{statistics.median(gen):.2f} s, critic step {statistics.median(crit):.2f} s (median of {args.steps}); "
              f"process peak RSS {peak:.0f} MiB")


if __name__ == "__main__":
    main()
