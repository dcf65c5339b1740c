"""Does a teacher pool over time? x0 error from 21 noised copies of a still clip vs from one frame, per sigma.

    python -m context_forcing_core.eval.toy.pooling [--learned FILE] [--clips 12]

A still clip is one picture repeated 21 times; each copy gets its own noise at one sigma. A teacher that pools
uses all 21 observations (its x0 error falls well below the one-frame error) and predicts the same x0 for every
frame (cross-frame spread 0). Rows: the exact scene teacher (closed form, ``toyworld.exact_teacher``) on scene
pictures, and with ``--learned`` a learned bidirectional toy teacher (e.g. ``toy-scenes-teacher``'s) on the same
pictures; ground truth (x0 itself) has error and spread 0. Errors are mean |x0_hat - x0| in latent units.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from context_forcing_core.diffusion.schedule import x0_from_flow
from context_forcing_core.models.loading import load_model
from context_forcing_core.models.wan import WanModel
from context_forcing_core.toyworld.exact_teacher import ExactTeacher
from context_forcing_core.toyworld.scenes import all_scene_prompts, library_latents
from context_forcing_core.toyworld.text import ToyTextEncoder

SIGMAS = (0.1, 0.3, 0.5, 0.7, 0.95)
FRAMES = 21

Denoiser = Callable[[Tensor, Tensor, Tensor], Tensor]
"""(x_t (B, C, F, H, W), sigma (B, F), text (B, L, D)) -> x0 (B, C, F, H, W)."""


def learned(model: WanModel) -> Denoiser:
    """A bidirectional WanModel as a denoiser."""
    def fn(x_t: Tensor, sigma: Tensor, text: Tensor) -> Tensor:
        return x0_from_flow(x_t, model(x_t, sigma * 1000, text, attention="bidirectional"), sigma)
    return fn


def exact(teacher: ExactTeacher) -> Denoiser:
    """The closed-form teacher as a denoiser."""
    return lambda x_t, sigma, text: teacher.x0(x_t, sigma, text)


@torch.no_grad()
def pooling_row(fn: Denoiser, frames: Tensor, text: Tensor, sigma: float, gen: torch.Generator) -> dict[str, float]:
    """x0 errors of one still picture per clip, (N, C, H, W) ``frames``, at one sigma."""
    n = frames.shape[0]
    clip = frames[:, :, None].expand(-1, -1, FRAMES, -1, -1)  # (N, C, 21, H, W)
    noisy = (1 - sigma) * clip + sigma * torch.randn(clip.shape, generator=gen)
    many = fn(noisy, torch.full((n, FRAMES), sigma), text)  # (N, C, 21, H, W)
    one = fn(noisy[:, :, :1], torch.full((n, 1), sigma), text)  # the first copy alone
    return {"pooled": float((many - clip).abs().mean()), "single": float((one[:, :, 0] - frames).abs().mean()),
            "spread": float((many - many.mean(2, keepdim=True)).abs().mean())}


def scene_clips(count: int, encoder: ToyTextEncoder) -> tuple[Tensor, Tensor]:
    """(count, 48, 8, 8) scene pictures and their prompts' (count, L, D) text states, cycling over prompts."""
    prompts = all_scene_prompts()
    picks = [(prompts[i % len(prompts)], (i // len(prompts)) % 4) for i in range(count)]
    return (torch.stack([library_latents(p)[k] for p, k in picks]), encoder.encode([p.text for p, _ in picks]))


def main(argv: list[str] | None = None) -> int:
    """Command line: print the table; 0 on success."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--learned", type=Path, default=None, help="a learned bidirectional toy teacher")
    parser.add_argument("--clips", type=int, default=12)
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    enc = ToyTextEncoder()
    rows: list[tuple[str, Denoiser, tuple[Tensor, Tensor]]] = [
        ("exact teacher, scene pictures", exact(ExactTeacher(encoder=enc)), scene_clips(args.clips, enc))]
    if args.learned is not None:
        if not args.learned.is_file():
            parser.error(f"checkpoint not found: {args.learned}")
        rows.append(("learned teacher, scene pictures", learned(load_model(args.learned).eval()),
                     scene_clips(args.clips, enc)))
    print(f"x0 error |x0_hat - x0| (latent units), {FRAMES} noised copies vs one, and cross-frame spread; "
          f"{args.clips} clips; ground truth: 0 / 0 / 0 at every sigma")
    print(f"{'teacher':36s} " + " ".join(f"{'sigma ' + str(s):>22s}" for s in SIGMAS))
    print(f"{'':36s} " + " ".join(f"{'21 / 1 / spread':>22s}" for _ in SIGMAS))
    for name, fn, (frames, text) in rows:
        gen = torch.Generator().manual_seed(0)
        cells = []
        for sigma in SIGMAS:
            r = pooling_row(fn, frames, text, sigma, gen)
            cells.append(f"{r['pooled']:.3f} / {r['single']:.3f} / {r['spread']:.3f}")
        print(f"{name:36s} " + " ".join(f"{c:>22s}" for c in cells))
    print(f"(codec scale: pictures differ by ~{float(_library_spread()):.2f} latent units where they differ)")
    return 0


def _library_spread() -> float:
    lat = library_latents(all_scene_prompts()[0])
    d = (lat[:, None] - lat[None]).abs()
    return float(d[d > 0].mean()) if bool((d > 0).any()) else float(np.nan)


if __name__ == "__main__":
    raise SystemExit(main())
