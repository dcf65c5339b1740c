"""Periodic sample videos of the toy student, with oracle metrics for the log.

The student generates chunk by chunk through its memory exactly as at inference
(:func:`~context_forcing_core.diffusion.sampler.generate`), the toy codec decodes, and each prompt's video is written
as a GIF plus a PNG strip of frames. The metrics are those of :mod:`context_forcing_core.toyworld.metrics` on the
decoded frames clamped to [0, 1] (what the GIF shows), averaged over the prompts.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torch import Tensor

from context_forcing_core.diffusion.sampler import generate
from context_forcing_core.memory.config import MemoryConfig, memory_preset
from context_forcing_core.models.wan import WanModel
from context_forcing_core.toyworld.codec import ToyCodec
from context_forcing_core.toyworld.metrics import drift, estimate_shifts, revisit_curve
from context_forcing_core.toyworld.prompts import parse_prompt
from context_forcing_core.toyworld.text import ToyTextEncoder
from context_forcing_core.toyworld.viewer import save_video, strip_image
from context_forcing_core.toyworld.world import FRAMES_PER_SECOND, SceneSpec

LONG_GAP_S = 10.0
"""Revisits at least this long after a column left the view count towards ``revisit_error_long``."""
MAX_STRIP_FRAMES = 16
"""At most this many frames in a strip image."""


@dataclass(kw_only=True, slots=True)
class ToySamples:
    """Sample videos written for one training step."""

    paths: list[Path]
    """Files written: per prompt a GIF and a strip PNG, then ``samples.json``."""
    frames: Tensor
    """(B, T, 3, 32, 32) float32 RGB in [0, 1], one video per prompt (for TensorBoard)."""
    metrics: dict[str, float]
    """Oracle metrics averaged over the prompts (NaN where no prompt has a value); see :func:`video_metrics`."""


def video_metrics(frames: Tensor, prompt: str) -> dict[str, float]:
    """Oracle metrics of one toy video.

    Args:
        frames: (T, 3, 32, 32) RGB in [0, 1].
        prompt: its prompt, parsed for the palette and the motion (a ``loop`` video wraps around the toy panorama
            width, so its canvas columns are taken modulo that width).

    Returns:
        ``revisit_error_long``: mean abs RGB error (0..1) of revisits after gaps >= :data:`LONG_GAP_S` toy seconds
        (NaN when the video has none); ``travel_px_per_s``: estimated camera travel, sum |shift| in pixels per toy
        second; ``sharpness_change``: late - early sharpness (negative = blurs over time);
        ``palette_distance_change``: late - early distance to the prompt's palette (positive = colours drift).

    """
    parsed = parse_prompt(prompt)
    shifts = estimate_shifts(frames)
    curve = revisit_curve(frames, shifts=shifts, period=SceneSpec().width if parsed.motion == "loop" else None)
    long = curve.errors[curve.gaps_s >= LONG_GAP_S]
    d = drift(frames, parsed.palette)
    return {
        "revisit_error_long": float(long.mean()) if len(long) else float("nan"),
        "travel_px_per_s": float(np.abs(shifts).sum()) * FRAMES_PER_SECOND / len(frames),
        "sharpness_change": d.sharpness_change,
        "palette_distance_change": d.palette_distance_change,
    }


def sample_frames(seconds: float, chunk_frames: int) -> int:
    """Latent frames of a ``seconds``-long toy video, rounded up to whole chunks."""
    if seconds <= 0:
        raise ValueError(f"seconds must be positive, got {seconds}")
    return math.ceil(seconds * FRAMES_PER_SECOND / chunk_frames) * chunk_frames


def toy_samples(
    model: WanModel,
    *,
    prompts: list[str],
    seconds: float,
    memory: str | MemoryConfig,
    seed: int,
    out_dir: str | Path,
    step: int,
) -> ToySamples:
    """Generate, decode and write one video per prompt; returns the files, the frames and their oracle metrics.

    Args:
        model: a toy student (48 latent channels, toy text encoder width); its train/eval mode is restored after.
        prompts: toy prompts, one video each (generated as one batch).
        seconds: toy seconds per video (4 frames each), rounded up to whole chunks.
        memory: memory preset name or configuration, as at inference.
        seed: noise seed (the same seed gives the same videos for the same weights).
        out_dir: folder receiving ``step_<step>/``.
        step: training step, used in the folder name and ``samples.json``.

    """
    codec = ToyCodec()
    cfg = model.config
    if cfg.in_channels != codec.latent_channels or cfg.out_channels != codec.latent_channels:
        raise ValueError(f"toy samples need a toy-codec model ({codec.latent_channels} latent channels), "
                         f"got in/out channels {cfg.in_channels}/{cfg.out_channels}")
    if not prompts:
        raise ValueError("toy_samples needs at least one prompt")
    mem = memory_preset(memory) if isinstance(memory, str) else memory
    num_frames = sample_frames(seconds, mem.chunk_frames)
    text = ToyTextEncoder(width=cfg.text_dim, max_tokens=cfg.text_len).encode(prompts)  # (B, L, text_dim)
    was_training = model.training
    model.eval()
    try:
        latents = generate(model, text, num_latent_frames=num_frames, memory=mem, seed=seed,
                           latent_size=(codec.latent_size, codec.latent_size)).latents  # (B, 48, T, 8, 8)
    finally:
        model.train(was_training)
    frames = codec.decode(latents.float().cpu()).clamp(0.0, 1.0)  # (B, T, 3, 32, 32)

    folder = Path(out_dir) / f"step_{step:07d}"
    paths, per_prompt = [], []
    for i, (prompt, video) in enumerate(zip(prompts, frames, strict=True)):
        paths.append(save_video(video, folder / f"sample_{i}.gif", fps=FRAMES_PER_SECOND))
        strip = folder / f"sample_{i}_strip.png"
        strip_image(video, every=math.ceil(num_frames / MAX_STRIP_FRAMES)).save(strip)
        paths.append(strip)
        per_prompt.append(video_metrics(video, prompt))
    metrics = {k: _nanmean([m[k] for m in per_prompt]) for k in per_prompt[0]}
    summary = folder / "samples.json"
    summary.write_text(json.dumps({"step": step, "seed": seed, "seconds": num_frames / FRAMES_PER_SECOND,
                                   "memory": memory if isinstance(memory, str) else "custom",
                                   "prompts": prompts, "per_prompt": per_prompt, "mean": metrics}, indent=1))
    paths.append(summary)
    return ToySamples(paths=paths, frames=frames, metrics=metrics)


def _nanmean(values: list[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return sum(finite) / len(finite) if finite else float("nan")
