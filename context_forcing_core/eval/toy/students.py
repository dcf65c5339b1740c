"""Toy students side by side: revisit consistency, motion fidelity and drift of 60-s rollouts (toy-world oracle).

Run: python -m context_forcing_core.eval.toy.students --student stage1=RUN1.safetensors --student stage2=RUN2.safetensors
     [--memory context_forcing] [--tau 0.95] [--videos 8] [--seconds 60] [--seed 0] [--json out.json]

Every student generates the same prompts with the same seeds through the same memory, one video at a time (so each
video makes its own consolidation decisions, as it does for an artist). ``--tau`` overrides the memory's surprisal
threshold; the table reports the 5th and 95th percentiles of the checked chunks' key similarities, how many of them
were consolidated and how far back (toy seconds) the oldest slow-memory frame reached on average over the second
half of each video. Revisit errors are mean
absolute RGB differences (0..1) between what a video shows when the camera comes back to a place and what it showed
there before, per gap bin; ``relative`` divides by the video's own column contrast (the mean difference between
random pairs of its columns), so that a flat, blurry video cannot look consistent just by having no detail.
Revisits are found on a canvas stitched from the shifts estimated between consecutive frames; ``shift res`` is the
mean cost of those shifts (0 when each frame is its predecessor moved rigidly) and ``res rel`` the same over the
column contrast: near 1, frames hardly follow each other and the revisit errors say little about memory.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from dataclasses import dataclass

import numpy as np
import torch

from context_forcing_core.diffusion.sampler import generate
from context_forcing_core.memory.config import MemoryConfig, memory_preset
from context_forcing_core.memory.trace import MemoryTrace
from context_forcing_core.models.loading import load_model
from context_forcing_core.toyworld.camera import camera_path
from context_forcing_core.toyworld.dataset import ToyClipDataset
from context_forcing_core.toyworld.metrics import column_contrast, drift, motion_fidelity, revisit_curve
from context_forcing_core.toyworld.world import FRAMES_PER_SECOND

BINS_S = (0.5, 2.0, 10.0, 20.0, 80.0)
"""Gap bins reported: short, medium, 10-20 s and above 20 s."""


@dataclass(kw_only=True, slots=True)
class StudentScore:
    """Means over videos (each video weighs once; NaN bins are skipped)."""

    revisit: list[float]
    """Mean revisit error per bin of :data:`BINS_S`."""
    relative: list[float]
    """Revisit error / column contrast per bin."""
    long_gap: float
    """Revisit error over every revisit after more than 10 s (all videos pooled)."""
    long_gap_relative: float
    """The same divided by the contrast, per video, then averaged."""
    continuous: float
    """Error of columns that stay in view (frame-to-frame coherence)."""
    motion_ok: float
    """Fraction of videos whose motion passes :func:`motion_fidelity`."""
    travel_ratio: float
    """Median generated / reference camera travel."""
    shift_residual: float
    """Mean cost of the estimated shifts (:attr:`MotionFidelity.shift_residual`): 0 when frames follow each other by
    rigid shifts. Revisits are found on a canvas stitched from those shifts, so they mean little when it is large."""
    shift_residual_relative: float
    """The same divided by the column contrast, per video, then averaged (near 1: frames hardly follow each other)."""
    sharpness_change: float
    """Mean late - early sharpness (negative: blurs over time)."""
    palette_change: float
    """Mean late - early distance to the prompt's palette."""
    similarity_range: tuple[float, float]
    """5th and 95th percentiles of the key similarities of every checked chunk (all layers and videos pooled)."""
    consolidated: float
    """Fraction of the checked chunks consolidated (mean over layers and videos)."""
    slow_reach_s: float
    """Mean age (toy seconds) of the oldest slow-memory frame over the second half of each video (0: empty)."""
    seconds: float
    """Generation wall time of all videos."""


def memory_use(trace: MemoryTrace) -> tuple[float, float, list[float]]:
    """(fraction of checked chunks consolidated, mean age in toy seconds of the oldest slow frame over the second
    half of the video), both averaged over layers, and the key similarities of the checked chunks of every layer.
    """
    rates, reach, sims = [], [], []
    for layer in range(len(trace.chunks[0].layers)):
        checked = [c.layers[layer] for c in trace.chunks if c.layers[layer].checked]
        rates.append(np.mean([s.consolidated for s in checked]) if checked else 0.0)
        sims += [s.similarity for s in checked if s.similarity is not None]
        for c in trace.chunks[len(trace.chunks) // 2:]:
            slow = [f for f, role in c.layers[layer].roles.items() if role == "slow"]
            reach.append((c.frames[0] - min(slow)) / FRAMES_PER_SECOND if slow else 0.0)
    return float(np.mean(rates)), float(np.mean(reach)), sims


def score(path: str, memory: MemoryConfig, videos: int, seconds: float, seed: int) -> StudentScore:
    """Generate ``videos`` toy videos of ``seconds`` with the student at ``path``, one at a time, and score them."""
    frames_n = int(round(seconds * FRAMES_PER_SECOND / 3)) * 3
    data = ToyClipDataset(videos, num_latent_frames=frames_n, seed=10_000 + seed)
    specs = [data.spec(i) for i in range(videos)]
    model = load_model(path).eval()
    start = time.perf_counter()
    latents, use = [], []
    for i, (prompt, _, _) in enumerate(specs):
        out = generate(model, data.encoder.encode([prompt.text]), num_latent_frames=frames_n, memory=memory,
                       seed=seed + i, latent_size=(8, 8))
        latents.append(out.latents)
        use.append(memory_use(out.trace))
    elapsed = time.perf_counter() - start
    video = data.codec.decode(torch.cat(latents)).clamp(0, 1).numpy()  # (B, T, 3, 32, 32)
    rng = np.random.default_rng(seed)
    per_bin, rel_bin, long_err, long_rel, cont, ok, ratio, resid, sharp, pal = [], [], [], [], [], [], [], [], [], []
    for i, (prompt, scene, camera) in enumerate(specs):
        frames = video[i]
        curve = revisit_curve(frames, bin_edges_s=BINS_S)
        contrast = max(column_contrast(frames, rng), 1e-6)
        per_bin.append(curve.error)
        rel_bin.append(curve.error / contrast)
        far = curve.gaps_s > 10.0
        long_err.append(curve.errors[far])
        if far.any():
            long_rel.append(float(curve.errors[far].mean()) / contrast)
        cont.append(curve.continuous_error)
        motion = motion_fidelity(frames, camera_path(camera, frames_n, scene.width))
        ok.append(motion.ok)
        ratio.append(motion.travel_ratio)
        resid.append((motion.shift_residual, motion.shift_residual / contrast))
        d = drift(frames, prompt.palette)
        sharp.append(d.sharpness_change)
        pal.append(d.palette_distance_change)
    pooled = np.concatenate(long_err)
    warnings.filterwarnings("ignore", "Mean of empty slice", RuntimeWarning)  # a gap bin no video populates: NaN
    return StudentScore(
        revisit=[float(v) for v in np.nanmean(np.stack(per_bin), axis=0)],
        relative=[float(v) for v in np.nanmean(np.stack(rel_bin), axis=0)],
        long_gap=float(pooled.mean()) if len(pooled) else float("nan"),
        long_gap_relative=float(np.mean(long_rel)) if long_rel else float("nan"),
        continuous=float(np.nanmean(cont)),
        motion_ok=float(np.mean(ok)),
        travel_ratio=float(np.median(ratio)),
        shift_residual=float(np.mean([r[0] for r in resid])),
        shift_residual_relative=float(np.mean([r[1] for r in resid])),
        sharpness_change=float(np.mean(sharp)),
        palette_change=float(np.mean(pal)),
        similarity_range=tuple(float(v) for v in np.percentile([s for u in use for s in u[2]] or [np.nan], [5, 95])),
        consolidated=float(np.mean([u[0] for u in use])),
        slow_reach_s=float(np.mean([u[1] for u in use])),
        seconds=elapsed,
    )


def main() -> None:
    """Parse arguments, score every student, print a table (and write JSON)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--student", action="append", required=True, help="NAME=checkpoint (repeat)")
    parser.add_argument("--memory", default="context_forcing")
    parser.add_argument("--tau", type=float, default=None, help="surprisal threshold (default: the memory's)")
    parser.add_argument("--videos", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, help="also write the scores here")
    args = parser.parse_args()
    torch.set_num_threads(2)
    memory = memory_preset(args.memory) if args.tau is None else memory_preset(args.memory).replace(tau=args.tau)
    scores = {}
    for item in args.student:
        name, _, path = item.partition("=")
        scores[name] = score(path, memory, args.videos, args.seconds, args.seed)
    bins = [f"{a:g}-{b:g}s" for a, b in zip(BINS_S[:-1], BINS_S[1:])]
    print(f"memory {args.memory} (tau {memory.tau:g}), {args.videos} videos x {args.seconds:g} s, seed {args.seed}")
    print(f"{'student':<12}" + "".join(f"{b:>10}" for b in bins) + f"{'>10s':>8}{'>10s rel':>10}{'cont':>8}"
          f"{'motion ok':>11}{'travel':>8}{'shift res':>10}{'res rel':>9}{'sharp d':>9}{'palette d':>11}{'sim p5':>8}"
          f"{'sim p95':>8}{'consol':>8}{'slow s':>8}{'gen s':>7}")
    for name, s in scores.items():
        print(f"{name:<12}" + "".join(f"{v:>10.4f}" for v in s.revisit) + f"{s.long_gap:>8.4f}"
              f"{s.long_gap_relative:>10.3f}{s.continuous:>8.4f}{s.motion_ok:>11.2f}{s.travel_ratio:>8.2f}"
              f"{s.shift_residual:>10.4f}{s.shift_residual_relative:>9.3f}"
              f"{s.sharpness_change:>9.4f}{s.palette_change:>11.4f}{s.similarity_range[0]:>8.4f}"
              f"{s.similarity_range[1]:>8.4f}{s.consolidated:>8.2f}{s.slow_reach_s:>8.1f}"
              f"{s.seconds:>7.1f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({k: vars(v) if hasattr(v, "__dict__") else {f: getattr(v, f) for f in v.__slots__}
                       for k, v in scores.items()}, f, indent=2)


if __name__ == "__main__":
    main()
