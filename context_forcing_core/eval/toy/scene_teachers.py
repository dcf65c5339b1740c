"""Learned toy teachers beside the exact scene teacher: are their samples still, library pictures, in palette?

    python -m context_forcing_core.eval.toy.scene_teachers --teacher NAME=RUN/step_N/student_ema.safetensors [...]

Per teacher, one 21-frame sample (one visit: a still picture) of each of ``--clips`` held-out (prompt, noise)
pairs, the same noise for every teacher: the exact short teacher (closed form, 48-step probability-flow ODE, no
guidance: the world's own distribution) and each learned bidirectional teacher (48-step guided Euler ODE at
``--guidance``, as Stage 1 uses it). Scored by the scene oracle (``toyworld.visit_metrics``): within-visit change
(mean |RGB difference| of consecutive frames; 0 = still), library distance (mean |RGB difference| of each frame to
the nearest of the prompt's pictures; 0 = a library picture), palette distance, and the share of samples whose
frames all have the same nearest picture. Ground truth: the clip's picture held still.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from context_forcing_core.models.loading import load_model
from context_forcing_core.objectives.ode import teacher_trajectory
from context_forcing_core.toyworld.codec import ToyCodec
from context_forcing_core.toyworld.exact_teacher import ExactTeacher, exact_sample
from context_forcing_core.toyworld.scenes import (
    LIBRARY_SIZE,
    ScenePrompt,
    SceneSchedule,
    Visit,
    all_scene_prompts,
    library_latents,
)
from context_forcing_core.toyworld.text import ToyTextEncoder
from context_forcing_core.toyworld.visit_metrics import nearest_picture, scene_report

FRAMES = 21
ODE_STEPS = 48


def held_out(count: int, seed: int) -> tuple[list[ScenePrompt], list[int]]:
    """``count`` (prompt, picture) pairs drawn from a seed no training run uses (30,000 + ``seed``)."""
    rng = np.random.default_rng(30_000 + seed)
    prompts = all_scene_prompts()
    return ([prompts[int(i)] for i in rng.integers(len(prompts), size=count)],
            [int(i) for i in rng.integers(LIBRARY_SIZE, size=count)])


def score(frames: np.ndarray, prompts: list[ScenePrompt]) -> dict[str, float]:
    """Oracle figures of (N, 21, 3, 32, 32) one-visit samples, averaged over samples."""
    rows = []
    for video, p in zip(frames, prompts):
        r = scene_report(video, SceneSchedule(visits=(Visit(prompt=p, picture=0, start=0, stop=len(video)),)))
        picks = {nearest_picture(f, p) for f in video}
        rows.append((r.within_visit_change, r.library_distance, r.palette_distance, float(len(picks) == 1)))
    change, lib, pal, one = np.mean(rows, axis=0)
    return {"change": change, "library": lib, "palette": pal, "one_picture": one}


def main(argv: list[str] | None = None) -> int:
    """Command line: print the table; 0 on success."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", action="append", default=[], help="NAME=PATH of a learned teacher (repeat)")
    parser.add_argument("--clips", type=int, default=24)
    parser.add_argument("--guidance", type=float, default=3.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    enc, codec = ToyTextEncoder(), ToyCodec()
    prompts, pictures = held_out(args.clips, args.seed)
    text = enc.encode([p.text for p in prompts])  # (N, L, D)
    uncond = enc.encode([""]).expand_as(text)
    noise = torch.randn((args.clips, 48, FRAMES, 8, 8), generator=torch.Generator().manual_seed(args.seed))

    def decode(latents: torch.Tensor) -> np.ndarray:
        return codec.decode(latents.float()).clamp(0, 1).numpy()  # (N, 21, 3, 32, 32)

    truth = torch.stack([library_latents(p)[k] for p, k in zip(prompts, pictures)])[:, :, None]
    rows = {"ground truth": score(decode(truth.expand(-1, -1, FRAMES, -1, -1)), prompts)}
    with torch.no_grad():
        exact = exact_sample(ExactTeacher(encoder=enc, use_context=False), text, num_frames=FRAMES, steps=ODE_STEPS,
                             generator=torch.Generator().manual_seed(1), noise=noise)
        rows["exact short teacher"] = score(decode(exact), prompts)
        for item in args.teacher:
            name, _, path = item.partition("=")
            model = load_model(path).eval()
            x0 = teacher_trajectory(model, noise, text, uncond, num_steps=ODE_STEPS, guidance=args.guidance).x0
            rows[f"learned: {name}"] = score(decode(x0), prompts)
    print(f"{args.clips} held-out one-visit samples of {FRAMES} frames (guidance {args.guidance:g} for learned teachers)")
    print(f"{'teacher':32s} | within-visit change | library distance | palette distance | one picture")
    for name, r in rows.items():
        print(f"{name:32s} | {r['change']:19.3f} | {r['library']:16.3f} | {r['palette']:16.3f} | {r['one_picture']:11.0%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
